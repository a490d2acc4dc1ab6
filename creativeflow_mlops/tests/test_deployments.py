# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Approve, pipeline, serving endpoint, on the embedded local target: real
model servers and a real router, jobs run by trap_jobs (the system tests
run them concurrently)."""

import io
import json
import os
import signal
import time
from unittest.mock import patch

import requests

from odoo.exceptions import AccessError

from odoo.addons.queue_job.tests.common import trap_jobs

from ..adapters.processes import ProcessSpec, free_port
from ..adapters.router import HAProxyRouter, RouterFailed
from ..exceptions import Conflict, InvalidInput, NotFound, TransitionNotAllowed
from ..services import artifacts as artifact_service
from ..services import endpoint_registry, serving
from . import artifacts
from .common import LocalTargetCleanup, MlopsCase, invoke_headers

BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


class TestDeployments(LocalTargetCleanup, MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        cls.auth = invoke_headers(cls.env, cls.manager, "tests")

    def _validated(self, data=None, version="1.0.0", model_format="onnx"):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {
                    "model": "deploy-me",
                    "version": version,
                    "model_format": model_format,
                },
                io.BytesIO(data or artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(
            record.state, "validated", record.validation_result_ids.mapped("summary")
        )
        return record.with_user(self.approver)

    def _approve(self, version, **kwargs):
        with trap_jobs() as trap:
            version.action_approve_staging(reason="benchmarks fine", **kwargs)
            self.assertEqual(version.state, "staging_pending")
            deployment = version.deployment_ids
            self.assertEqual(deployment.state, "requested")
            self.assertEqual(deployment.run_ids.state, "queued")
            trap.assert_jobs_count(6)
            self.assertEqual(
                {job.channel for job in trap.enqueued_jobs}, {"root.mlops.deploy"}
            )
            trap.perform_enqueued_jobs()
        return deployment

    def test_approval_brings_up_a_staging_endpoint(self):
        version = self._validated()
        deployment = self._approve(version)
        self.assertEqual(version.state, "staging")
        self.assertEqual(deployment.state, "active")
        self.assertEqual(deployment.traffic_percent, 100)
        run = deployment.run_ids
        self.assertEqual(run.state, "succeeded")
        stages = {s.name: s.state for s in run.stage_ids}
        self.assertEqual(
            stages,
            {
                "fetch_artifact": "succeeded",
                "build_image": "skipped",
                "push_image": "skipped",
                "apply": "succeeded",
                "verify": "succeeded",
                "switch_traffic": "succeeded",
            },
        )
        self.assertIn(
            "no image", run.stage_ids.filtered(lambda s: s.name == "build_image").log
        )
        self.assertEqual(version.approval_ids.deployment_id, deployment)
        self.assertEqual(version.approval_ids.strategy, "rolling")
        # the endpoint answers through the router, naming its version
        url = deployment.endpoint_url
        self.assertIn(f"/m/c{version.company_id.id}-deploy-me-staging/", url)
        answer = requests.post(url, json=BODY, headers=self.auth, timeout=10)
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertEqual(answer.headers["X-MLOps-Version"], "1.0.0")
        self.assertIn("serving deploy-me 1.0.0", deployment.log_tail)
        # uploaded without a signature: it took the model's own at
        # validation, and the registry's example is a call that works
        self.assertEqual(
            (version.input_schema, version.output_schema),
            (
                {"x": {"datatype": "FP32", "shape": [-1, 64]}},
                {"y": {"datatype": "FP32", "shape": [-1, 10]}},
            ),
        )
        (entry,) = endpoint_registry.entries(self.env, "staging", "deploy-me")
        example = json.loads(entry["curl_example"].split("-d '", 1)[1].rstrip("'"))
        self.assertEqual(
            [(t["name"], t["shape"], len(t["data"])) for t in example["inputs"]],
            [("x", [1, 64], 64)],
        )
        tried = requests.post(url, json=example, headers=self.auth, timeout=10)
        self.assertEqual(tried.status_code, 200, tried.text)

        # a second version replaces it in staging, at the same URL
        second = self._validated(version="1.1.0")
        replacement = self._approve(second)
        self.assertEqual(replacement.endpoint_url, url)
        self.assertEqual(
            requests.post(url, json=BODY, headers=self.auth, timeout=10).headers[
                "X-MLOps-Version"
            ],
            "1.1.0",
        )
        self.assertEqual(deployment.state, "deleted")
        self.assertFalse(self.target._get_client().runtime.find(f"d{deployment.id}"))

        # archiving takes it down
        second.with_user(self.manager).action_archive_version()
        self.assertEqual(replacement.state, "deleted")
        self.assertEqual(
            requests.post(url, json=BODY, headers=self.auth, timeout=10).status_code,
            404,
        )

    def _promote(self, version):
        with trap_jobs() as trap:
            version.action_promote(reason="soak clean", strategy="blue_green")
            trap.perform_enqueued_jobs()
        return version.deployment_ids.filtered(
            lambda d: d.environment == "production"
        ).sorted("id")[-1:]

    def test_blue_green_promotions_and_a_rollback_in_the_ledger(self):
        first = self._validated()
        self._approve(first)
        blue = self._promote(first)
        self.assertEqual((first.state, blue.state), ("production", "active"))
        url = blue.endpoint_url
        second = self._validated(version="2.0.0")
        self._approve(second)
        green = self._promote(second)
        self.assertEqual(green.endpoint_url, url)
        self.assertEqual((second.state, green.state), ("production", "active"))
        self.assertEqual(
            (first.state, blue.state), ("deprecated", "inactive_bluegreen")
        )
        served = requests.post(url, json=BODY, headers=self.auth, timeout=10)
        self.assertEqual(served.headers["X-MLOps-Version"], "2.0.0")
        ledger = self.env["mlops.promotion"].search(
            [("model_id", "=", first.model_id.id), ("environment", "=", "production")]
        )
        self.assertEqual(len(ledger), 2)
        self.assertEqual(ledger[0].version_before_id, first)
        self.assertEqual(ledger[0].version_after_id, second)
        self.assertEqual(ledger[0].approved_by_id, self.approver)
        self.assertEqual(ledger[0].reason, "soak clean")
        self.assertTrue(ledger[1].live_until)

        # one action: the idle colour takes the traffic back at once
        with self.assertRaisesRegex(Exception, "Say why"):
            green.with_user(self.approver).action_rollback(reason="")
        # from the form: the wizard asks why
        self.env["mlops.deployment.rollback.wizard"].with_user(self.approver).create(
            {"deployment_id": green.id, "reason": "p95 doubled"}
        ).action_confirm()
        self.assertEqual((blue.state, green.state), ("active", "rolled_back"))
        self.assertEqual((first.state, second.state), ("production", "deprecated"))
        served = requests.post(url, json=BODY, headers=self.auth, timeout=10)
        self.assertEqual(served.headers["X-MLOps-Version"], "1.0.0")
        line = self.env["mlops.promotion"]._current(first.model_id, "production")
        self.assertEqual(
            (line.kind, line.version_before_id, line.version_after_id, line.reason),
            ("rollback", second, first, "p95 doubled"),
        )
        self.assertEqual(first.approval_ids.sorted("id")[-1].stage, "rollback")
        self.assertIn("Rolled back to", second.message_ids[0].body)
        # only the serving production deployment rolls back
        staging = first.deployment_ids.filtered(lambda d: d.environment == "staging")
        with self.assertRaisesRegex(TransitionNotAllowed, "Only the active production"):
            staging.with_user(self.approver).action_rollback(reason="again")
        with self.assertRaises(AccessError):
            blue.with_user(self.uploader).action_rollback(reason="not mine to do")

    def test_undeploy_cancels_its_run_and_production_is_never_left_without(self):
        """Each is decided when it is asked, never by a job failing later."""
        first = self._validated()
        # DELETE right after the approval: the run is cancelled, its queued
        # stages do nothing when they run, the version returns to validated
        with trap_jobs() as trap:
            first.action_approve_staging(reason="benchmarks fine")
            deployment = first.deployment_ids
            deployment.with_user(self.approver).action_undeploy()
            self.assertEqual(deployment.state, "deleted")
            run = deployment.run_ids
            self.assertEqual(run.state, "cancelled")
            self.assertEqual(set(run.stage_ids.mapped("state")), {"skipped"})
            self.assertEqual(first.state, "validated")
            trap.perform_enqueued_jobs()
        self.assertEqual((deployment.state, run.state), ("deleted", "cancelled"))
        self.assertFalse(self.target._get_client().runtime.running())
        self.assertIn("cancelled", deployment.message_ids[0].body)
        self.assertEqual(first.state, "validated")

        # production: DELETE is refused with what to do instead
        first = self._validated(version="1.1.0")
        self._approve(first)
        blue = self._promote(first)
        self.assertEqual(blue.state, "active")
        with self.assertRaisesRegex(TransitionNotAllowed, "roll it back"):
            blue.with_user(self.approver).action_undeploy()
        self.assertEqual((blue.state, first.state), ("active", "production"))

        # a canary owns the route: no rollback, promotion, archive or DELETE
        # of either half until it is promoted or aborted
        second = self._validated(version="2.0.0")
        self._approve(second)
        canary = blue.sudo().copy(
            {"version_id": second.id, "state": "requested", "strategy": "canary"}
        )
        canary.state = "deploying"
        canary.write({"state": "rolling_out_canary", "traffic_percent": 30})
        blue.sudo().traffic_percent = 70
        third = self._validated(version="3.0.0")
        self._approve(third)
        for attempt in (
            lambda: blue.with_user(self.approver).action_rollback(reason="p95"),
            lambda: third.with_user(self.approver).action_promote(reason="x"),
            lambda: first.with_user(self.manager).action_archive_version(),
        ):
            with self.assertRaisesRegex(Conflict, "canary of deploy-me 2.0.0"):
                attempt()
        with self.assertRaisesRegex(TransitionNotAllowed, "abort it"):
            canary.with_user(self.approver).action_undeploy()
        self.assertEqual(
            (blue.state, canary.state, first.state, third.state),
            ("active", "rolling_out_canary", "production", "staging"),
        )
        canary.sudo().write({"state": "rolled_back", "traffic_percent": 0})
        blue.sudo().traffic_percent = 100

        # archiving the production version takes production down for good:
        # its ledger line ends with it
        first.with_user(self.manager).action_archive_version()
        self.assertEqual((first.state, blue.state), ("archived", "deleted"))
        self.assertFalse(
            self.env["mlops.promotion"]._current(first.model_id, "production")
        )

    def test_the_supervisor_restarts_crashed_servers_and_stops_orphans(self):
        version = self._validated()
        deployment = self._approve(version)
        client = self.target._get_client()
        key = f"d{deployment.id}"
        crashed = client.runtime.find(key)
        # what the cron does on its own (the watchdog would be faster)
        client.stop_watchdog()
        os.kill(crashed.pid, signal.SIGKILL)
        for _ in range(100):
            if not client.runtime.find(key):
                break
            time.sleep(0.05)
        # a model server nobody wants any more (its deployment is gone)
        gone = deployment.sudo().copy({"state": "requested"})
        gone.sudo().state = "deleted"
        orphan = client.runtime.start(
            ProcessSpec(
                f"d{gone.id}",
                client.artifact_path(serving.plan(deployment)),
                "x",
                "0",
                free_port(),
            )
        )
        # a process of no deployment this pass can see, started after it
        # began (a deployment committed meanwhile): not an orphan yet
        unseen = client.runtime.start(
            ProcessSpec(
                "d999999",
                client.artifact_path(serving.plan(deployment)),
                "x",
                "0",
                free_port(),
            )
        )
        # one coming up: its server is not an orphan
        coming = deployment.sudo().copy({"state": "requested"})
        coming.sudo().state = "deploying"
        client.runtime.start(
            ProcessSpec(
                f"d{coming.id}",
                client.artifact_path(serving.plan(deployment)),
                "x",
                "0",
                free_port(),
            )
        )
        done = self.env["mlops.deployment"]._cron_supervise()
        self.assertTrue(client.runtime.find(f"d{coming.id}"))
        client.runtime.stop(f"d{coming.id}")
        self.assertTrue(client.runtime.find(unseen.key))
        client.runtime.stop(unseen.key)
        self.assertEqual(done["restarted"], [key], done)
        self.assertEqual(done["stopped"], [f"d{gone.id}"])
        restarted = client.runtime.find(key)
        self.assertNotEqual(restarted.pid, crashed.pid)
        self.assertFalse(client.runtime.find(orphan.key))
        answer = requests.post(
            deployment.endpoint_url, json=BODY, headers=self.auth, timeout=10
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertEqual(deployment.restart_count, 1)
        self.assertIn("started again", deployment.message_ids[0].body)
        # up and answering: the next pass ends the run of restarts
        self.assertEqual(
            self.env["mlops.deployment"]._cron_supervise()["restarted"], []
        )
        self.assertEqual(deployment.restart_count, 0)

    def test_invoke_keys_scope_expiry_and_revocation(self):
        version = self._validated()
        url = self._approve(version).endpoint_url
        Key = self.env["mlops.invoke.key"].with_user(self.manager)
        production_only, token = Key._generate(
            {"name": "prod", "environment": "production"}
        )
        other_model = self.env["mlops.model"].create({"name": "another"})
        elsewhere, other_token = Key._generate(
            {
                "name": "other",
                "environment": "all",
                "model_ids": [(6, 0, other_model.ids)],
            }
        )
        scoped, scoped_token = Key._generate(
            {
                "name": "scoped",
                "environment": "staging",
                "model_ids": [(6, 0, version.model_id.ids)],
            }
        )

        def status(token=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return requests.post(
                url, json=BODY, headers=headers, timeout=10
            ).status_code

        self.assertEqual(status(), 401)
        self.assertEqual(status("mik_wrong"), 401)
        self.assertEqual(status(token), 403)  # production only
        self.assertEqual(status(other_token), 403)  # another model
        self.assertEqual(status(scoped_token), 200)
        # the registry says how to authenticate, and shows no key
        self.assertNotIn(scoped_token, str(production_only.read()))
        self.assertTrue(
            scoped.key_prefix and scoped_token.startswith(scoped.key_prefix)
        )
        # revoked: refused within seconds, without a restart
        scoped.active = False
        deadline = time.monotonic() + 5
        while status(scoped_token) != 401 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(status(scoped_token), 401)
        # expired
        elsewhere.write({"model_ids": [(5, 0, 0)], "expires_at": "2020-01-01 00:00:00"})
        deadline = time.monotonic() + 5
        while status(other_token) == 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(status(other_token), 401)
        with self.assertRaises(AccessError):
            self.env["mlops.invoke.key"].with_user(self.approver)._generate(
                {"name": "x"}
            )

    def test_the_idle_colour_is_removed_after_its_time(self):
        first = self._validated()
        self._approve(first)
        blue = self._promote(first)
        second = self._validated(version="2.0.0")
        self._approve(second)
        self._promote(second)
        self.assertEqual(blue.state, "inactive_bluegreen")
        client = self.target._get_client()
        self.assertTrue(client.runtime.find(f"d{blue.id}"))
        Deployment = self.env["mlops.deployment"]
        # within its time: kept for an instant switch back
        self.assertNotIn(f"d{blue.id}", Deployment._cron_supervise()["stopped"])
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE mlops_deployment SET write_date = now() - interval '2 hours' "
            "WHERE id = %s",
            [blue.id],
        )
        blue.invalidate_recordset()
        self.assertIn(f"d{blue.id}", Deployment._cron_supervise()["stopped"])
        self.assertEqual(blue.state, "deleted")
        self.assertFalse(client.runtime.find(f"d{blue.id}"))
        # a rollback now deploys the previous version again: still a
        # rollback in the ledger, not a promotion
        green = second.deployment_ids.filtered(
            lambda d: d.environment == "production" and d.state == "active"
        )
        with trap_jobs() as trap:
            green.action_rollback(reason="p99 regressed")
            trap.perform_enqueued_jobs()
        self.assertEqual((first.state, second.state), ("production", "deprecated"))
        line = self.env["mlops.promotion"]._current(first.model_id, "production")
        self.assertEqual(
            (line.kind, line.version_before_id, line.version_after_id, line.reason),
            ("rollback", second, first, "p99 regressed"),
        )

    def test_canary_windows_and_steps(self):
        from ..adapters.targets import counters_window
        from ..services import canary

        before = {
            "requests": {"200": 10},
            "buckets": [[0.001, 5], [0.01, 10]],
            "count": 10,
        }
        after = {
            "requests": {"200": 100, "500": 10},
            "buckets": [[0.001, 50], [0.01, 100]],
            "count": 110,
        }
        # 100 new requests, 10 of them failed; 95 of them within 10 ms... and
        # the slowest above every bound: p95 is reported at the last bound
        self.assertEqual(counters_window(before, after), (100, 10, 0.01))
        fast = {**after, "buckets": [[0.001, 100], [0.01, 110]]}
        self.assertEqual(counters_window(before, fast)[2], 0.001)
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.canary_steps", "25, x, 5, 60"
        )
        self.assertEqual(canary.steps(self.env), [25, 60, 100])
        # a promotion's canary_percent is the first share
        self.assertEqual(canary.steps(self.env, 30), [30, 60, 100])
        self.assertEqual(canary.steps(self.env, 70), [70, 100])
        version = self._version_in("staging")
        for strategy, percent in (
            ("canary", 0),
            ("canary", 100),
            ("canary", "10"),
            ("canary", True),
            ("blue_green", 10),
        ):
            with self.assertRaisesRegex(InvalidInput, "canary_percent"):
                version.with_user(self.approver).action_promote(
                    reason="x", strategy=strategy, canary_percent=percent
                )
        self.assertEqual(version.state, "staging")

    def test_refusals_change_nothing(self):
        version = self._validated()
        with self.assertRaisesRegex(InvalidInput, "A canary shares production"):
            version.action_approve_staging(reason="x", strategy="canary")
        with self.assertRaisesRegex(NotFound, "No deployment target nope"):
            version.action_approve_staging(reason="x", target="nope")
        self.assertEqual(version.state, "validated")
        self.assertFalse(version.deployment_ids)
        # a format the target cannot serve is refused at approval
        pickled = self._validated(artifacts.benign_pickle_bytes(), "2.0.0", "pickle")
        with self.assertRaisesRegex(InvalidInput, "cannot serve pickle"):
            pickled.action_approve_staging(reason="x")
        self.assertEqual(pickled.state, "validated")
        # one run per model and environment at a time
        with trap_jobs():
            version.action_approve_staging(reason="x")
            other = self._validated(version="3.0.0")
            with self.assertRaises(Conflict):
                other.action_approve_staging(reason="x")
        self.assertEqual(other.state, "validated")

    def test_a_full_disk_fails_the_fetch_and_leaves_nothing(self):
        """The local target's artifacts on a real file system too small for
        the model: the fetch stage fails with the kernel's reason, no
        half-written file stays, the version returns; with room again, the
        same version deploys."""
        import testservers  # noqa: PLC0415 - tools/ is on the path under bin/test

        if not testservers.SmallDisk.available():
            self.skipTest("mounting a tmpfs takes root")
        version = self._validated()
        folder = os.path.join(self.target._root(), "artifacts")
        with testservers.SmallDisk(folder, size="64k"):
            deployment = self._approve(version)
            fetch = self._failed_at(deployment, "fetch_artifact")
            self.assertIn("disk is full", fetch.log)
            self.assertIn(str(version.artifact_size), fetch.log)
            self.assertEqual(os.listdir(os.path.join(folder, f"d{deployment.id}")), [])
            self.assertIn("disk is full", version.message_ids[0].body)
        with trap_jobs() as trap:
            version.action_approve_staging(reason="room again")
            trap.perform_enqueued_jobs()
        self.assertEqual(version.deployment_ids.sorted("id")[-1].state, "active")
        self.assertEqual(version.state, "staging")

    def _failed_at(self, deployment, stage_name):
        """The deployment failed at ``stage_name`` and its version went
        back; that stage."""
        self.assertEqual(deployment.state, "failed")
        self.assertEqual(deployment.version_id.state, "validated")
        stage = deployment.run_ids.stage_ids.filtered(lambda s: s.name == stage_name)
        self.assertEqual(stage.state, "failed")
        return stage

    def test_a_router_that_refuses_the_switch_leaves_nothing_serving(self):
        """The stage that moves the traffic fails: what it wrote before
        telling the router (the deployment active, the version moved) is
        undone with it, so nothing claims to serve what the router never
        took."""
        version = self._validated()
        refused = RouterFailed("the router refused its new configuration: a test")
        with patch.object(HAProxyRouter, "_write_candidate", side_effect=refused):
            deployment = self._approve(version)
        switch = self._failed_at(deployment, "switch_traffic")
        self.assertIn("refused its new configuration", switch.log)
        self.assertFalse(deployment.endpoint_url)
        self.assertFalse(serving.routes(self.target))
        self.assertFalse(
            self.env["mlops.promotion"].search([("deployment_id", "=", deployment.id)])
        )

    def test_a_model_that_fails_to_load_returns_the_version(self):
        version = self._validated()
        # the stored bytes break after validation: the runtime cannot load them
        store = version.storage_backend_id._get_store()
        path = store.local_path(version.artifact_object_key)
        original = path.read_bytes()
        self.addCleanup(path.write_bytes, original)
        path.write_bytes(b"broken")
        version.sudo().artifact_sha256 = (
            __import__("hashlib").sha256(b"broken").hexdigest()
        )
        deployment = self._approve(version)
        self.assertEqual(deployment.state, "failed")
        self.assertEqual(version.state, "validated")
        run = deployment.run_ids
        self.assertEqual(run.state, "failed")
        apply = run.stage_ids.filtered(lambda s: s.name == "apply")
        self.assertEqual(apply.state, "failed")
        self.assertIn("model server exited", apply.log)
        self.assertNotIn(self.target._root(), apply.log)
        self.assertEqual(
            run.stage_ids.filtered(lambda s: s.name == "switch_traffic").state,
            "skipped",
        )
        self.assertIn("staging deployment failed", version.message_ids[0].body)
        self.assertFalse(serving.routes(self.target))
