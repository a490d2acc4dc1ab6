# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Deployments through an external CI provider: the trigger job against a
local server that records the requests (GitLab's trigger API), and the
pipeline's reports through ``POST /ci/callback`` with the contract's
signature rules."""

import hashlib
import hmac
import json
import os
import time
from datetime import timedelta
from urllib.parse import parse_qs

import testservers

from odoo import fields
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import _super_send

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job

from ..lifecycle import APPROVER, MANAGER, USER

API = "/mlops/api/v1"
TOKEN = "glptt-test-trigger-token"  # noqa: S105 (a test's token)
ENDPOINT = "https://serving.example/m/ci-model-staging"


def sign(secret, body, timestamp=None):
    """What the pipeline sends: the contract's two headers."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-MLOps-Timestamp": timestamp,
        "X-MLOps-Signature": f"sha256={digest}",
    }


@tagged("post_install", "-at_install")
class TestCiCallback(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = testservers.RecordingServer().start()
        cls.addClassCleanup(cls.server.stop)
        variable = "MLOPS_CI_LAB_TOKEN"
        saved = os.environ.get(variable)
        os.environ[variable] = TOKEN
        cls.addClassCleanup(
            lambda: (
                os.environ.pop(variable)
                if saved is None
                else os.environ.__setitem__(variable, saved)
            )
        )
        cls.uploader = new_test_user(cls.env, login="ci_uploader", groups=USER)
        cls.approver = new_test_user(
            cls.env, login="ci_approver", groups=APPROVER, email="ci@example.com"
        )
        cls.manager = new_test_user(cls.env, login="ci_manager", groups=MANAGER)
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.approver)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
        )
        cls.provider = cls.env["mlops.ci.provider"].create(
            {
                "name": "GitLab",
                "code": "lab",
                "kind": "gitlab",
                "url": cls.server.url,
                "project": "creative/models",
                "ref": "release",
            }
        )
        cls.target = cls.env["mlops.deployment.target"].create(
            {
                "name": "Cluster via GitLab",
                "code": "ext",
                "kind": "external",
                "ci_provider_id": cls.provider.id,
            }
        )
        cls.model = cls.env["mlops.model"].create(
            {"name": "ci-model", "task_type": "classification"}
        )
        cls._seq = 0

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Odoo's compares the timeout with 10 seconds; the adapters give a
        # (connect, read) pair, to the recording server on loopback here
        if isinstance(kw.get("timeout"), tuple) and r.url.startswith(cls.server.url):
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)

    def setUp(self):
        super().setUp()
        self.server.requests.clear()
        self.server.answers.clear()

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------

    def _validated(self):
        type(self)._seq += 1
        version = (
            self.env["mlops.model.version"]
            .with_user(self.uploader)
            .sudo()
            .create(
                {
                    "model_id": self.model.id,
                    "version": f"2.{self._seq}.0",
                    "model_format": "onnx",
                    "interface_type": "kserve_v2",
                    "artifact_filename": "model.onnx",
                    "artifact_size": 1024,
                    "artifact_sha256": "cd" * 32,
                }
            )
        )
        version.sudo().write({"state": "validating"})
        version.sudo().write({"state": "validated"})
        return version

    def _call(self, method, path, **kwargs):
        return self.opener.request(
            method, f"{self.base_url()}{API}{path}", timeout=60, **kwargs
        )

    def _deploy(self, version, **body):
        answer = self._call(
            "POST",
            f"/versions/{version.id}/deploy",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"target": "ext", "reason": "through GitLab", **body},
        )
        self.assertEqual(answer.status_code, 202, answer.text)
        deployment = self.env["mlops.deployment"].browse(answer.json()["deployment_id"])
        return deployment, deployment.run_ids

    def _trigger_job(self, run):
        record = self.env["queue.job"].search(
            [
                ("model_name", "=", "mlops.pipeline.run"),
                ("method_name", "=", "_trigger"),
            ]
        )
        record = record.filtered(lambda r: r.records == run)
        self.assertEqual(len(record), 1)
        self.assertEqual(record.channel, "root.mlops.deploy")
        return Job.load(self.env, record.uuid)

    def _perform(self, job):
        job.perform()
        job.set_done()
        job.store()

    def _triggered(self, version, **body):
        """Deploy, run the trigger job; returns (deployment, run, secret)
        with the secret as GitLab received it."""
        self.server.answer(
            201, {"id": 9001, "web_url": "https://gitlab.example/p/-/pipelines/9001"}
        )
        deployment, run = self._deploy(version, **body)
        self._perform(self._trigger_job(run))
        sent = self.server.requests[-1]
        form = {k: v for k, (v,) in parse_qs(sent["body"].decode()).items()}
        return deployment, run, form["variables[MLOPS_CALLBACK_SECRET]"]

    def _report(self, secret, run, timestamp=None, raw=None, **fields_):
        body = raw if raw is not None else json.dumps({"run_id": run.id, **fields_})
        body = body.encode() if isinstance(body, str) else body
        return self._call(
            "POST", "/ci/callback", data=body, headers=sign(secret, body, timestamp)
        )

    def _error(self, response, status, code):
        self.assertEqual(response.status_code, status, response.text)
        self.assertEqual(response.json()["error"]["code"], code, response.text)
        return response.json()["error"]

    def _stages(self, run):
        run.invalidate_recordset()
        return {s.name: s.state for s in run.stage_ids}

    # ------------------------------------------------------------------
    # tests
    # ------------------------------------------------------------------

    def test_gitlab_run_reports_its_way_to_active(self):
        version = self._validated()
        deployment, run, secret = self._triggered(version)

        # what GitLab was asked, per its trigger API
        sent = self.server.requests[-1]
        self.assertEqual(
            sent["path"], "/api/v4/projects/creative%2Fmodels/trigger/pipeline"
        )
        form = {k: v for k, (v,) in parse_qs(sent["body"].decode()).items()}
        self.assertEqual(form["token"], TOKEN)
        self.assertEqual(form["ref"], "release")
        self.assertEqual(form["variables[MLOPS_RUN_ID]"], str(run.id))
        self.assertEqual(form["variables[MLOPS_VERSION]"], version.version)
        self.assertEqual(form["variables[MLOPS_ENVIRONMENT]"], "staging")
        self.assertTrue(
            form["variables[MLOPS_CALLBACK_URL]"].endswith(f"{API}/ci/callback")
        )
        self.assertEqual(run.provider, "gitlab")
        self.assertEqual(run.state, "running")
        self.assertEqual(run.external_id, "9001")
        self.assertEqual(run.external_url, "https://gitlab.example/p/-/pipelines/9001")
        self.assertEqual(deployment.state, "deploying")
        self.assertEqual(version.state, "staging_pending")

        # refused, and nothing recorded
        body = json.dumps(
            {"run_id": run.id, "stage": "build_image", "status": "running"}
        )
        now = int(time.time())
        unsigned = self._call(
            "POST",
            "/ci/callback",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        self._error(unsigned, 401, "unauthorized")
        self.assertIn("HMAC-SHA256", unsigned.headers["WWW-Authenticate"])
        for response in (
            self._report("not-the-secret", run, raw=body),
            # well outside the 5 minutes: a loaded machine's server reads
            # its clock seconds after this test did
            self._report(secret, run, timestamp=now - 400, raw=body),
            self._report(secret, run, timestamp=now + 400, raw=body),
            self._report(secret, run, timestamp="yesterday", raw=body),
            # the signature covers the body: another run id, another body
            self._call(
                "POST",
                "/ci/callback",
                data=body.replace(str(run.id), str(run.id + 1000)),
                headers=sign(secret, body.encode()),
            ),
        ):
            self._error(response, 401, "unauthorized")
        self._error(self._report(secret, run, raw="{not json"), 400, "malformed_json")
        self._error(self._report(secret, run, raw="[1, 2]"), 400, "malformed_json")
        self._error(
            self._report(secret, run, stage="compile", status="running"),
            422,
            "invalid_input",
        )
        self._error(
            self._report(secret, run, stage="apply", status="done"),
            422,
            "invalid_input",
        )
        self._error(
            self._report(secret, run, stage="switch_traffic", status="succeeded"),
            422,
            "invalid_input",
        )
        self._error(
            self._report(
                secret,
                run,
                stage="switch_traffic",
                status="succeeded",
                endpoint_url="ftp://elsewhere",
            ),
            422,
            "invalid_input",
        )
        huge = json.dumps({"run_id": run.id, "message": "x" * 70_000})
        self._error(self._report(secret, run, raw=huge), 413, "payload_too_large")
        form_body = self._call(
            "POST",
            "/ci/callback",
            data=body,
            headers={**sign(secret, body.encode()), "Content-Type": "text/plain"},
        )
        self._error(form_body, 415, "unsupported_media_type")
        self.assertEqual(set(self._stages(run).values()), {"pending"})
        self.assertFalse(run.delivery_ids)

        # a stage runs; the same delivery replayed is refused, the same
        # report sent anew changes nothing
        timestamp = int(time.time())
        first = self._report(secret, run, timestamp=timestamp, raw=body)
        self.assertEqual(first.status_code, 200, first.text)
        self.assertEqual(
            first.json(),
            {
                "run_id": run.id,
                "state": "running",
                "stage": {"name": "build_image", "state": "running"},
                "changed": True,
                "message": "build_image running",
            },
        )
        self._error(
            self._report(secret, run, timestamp=timestamp, raw=body),
            401,
            "unauthorized",
        )
        again = self._report(secret, run, timestamp=timestamp + 1, raw=body)
        self.assertEqual(again.status_code, 200, again.text)
        self.assertFalse(again.json()["changed"])
        stages = self._stages(run)
        # the pipeline went past fetch_artifact without a word
        self.assertEqual(stages["fetch_artifact"], "skipped")
        self.assertEqual(stages["build_image"], "running")

        self.assertEqual(
            self._report(
                secret,
                run,
                stage="push_image",
                status="succeeded",
                image="registry.example/ci-model:2.1.0",
            ).status_code,
            200,
        )
        self.assertEqual(self._stages(run)["build_image"], "succeeded")
        # an older stage's report comes late: nothing moves back
        late = self._report(
            secret, run, stage="build_image", status="running", message="late"
        )
        self.assertEqual(late.status_code, 200, late.text)
        self.assertFalse(late.json()["changed"])

        served = self._report(
            secret,
            run,
            stage="switch_traffic",
            status="succeeded",
            endpoint_url=ENDPOINT,
            message="live",
        )
        self.assertEqual(served.status_code, 200, served.text)
        self.assertEqual(served.json()["state"], "succeeded")
        run.invalidate_recordset()
        deployment.invalidate_recordset()
        version.invalidate_recordset()
        self.assertEqual(run.state, "succeeded")
        self.assertEqual(run.image, "registry.example/ci-model:2.1.0")
        self.assertEqual(deployment.state, "active")
        self.assertEqual(
            deployment.endpoint_url, f"{ENDPOINT}/v2/models/{self.model.slug}/infer"
        )
        self.assertEqual(version.state, "staging")
        ledger = self.env["mlops.promotion"]._current(self.model, "staging")
        self.assertEqual(ledger.deployment_id, deployment)
        registry = self._call(
            "GET",
            "/endpoints?model=ci-model",
            headers={"Authorization": f"Bearer {self.key}"},
        ).json()["items"]
        self.assertEqual(
            [(e["environment"], e["invoke_url"]) for e in registry],
            [("staging", deployment.endpoint_url)],
        )
        # a finished run never reopens
        late = self._report(secret, run, stage="verify", status="failed", message="x")
        self.assertEqual(late.status_code, 200)
        self.assertFalse(late.json()["changed"])
        self.assertIn("late report", late.json()["message"])
        run.invalidate_recordset()
        self.assertEqual(run.state, "succeeded")
        self.assertEqual(deployment.state, "active")
        # every accepted report kept, three of six moved the run
        self.assertEqual(
            run.delivery_ids.sorted("id").mapped("changed"),
            [True, False, True, False, True, False],
        )
        # the token stays out of what Odoo shows
        self.assertNotIn(TOKEN, json.dumps(run.read()[0], default=str))

    def test_a_failed_stage_returns_the_version_to_validated(self):
        version = self._validated()
        deployment, run, secret = self._triggered(version)
        answer = self._report(
            secret, run, stage="apply", status="failed", message="ImagePullBackOff"
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertEqual(answer.json()["state"], "failed")
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertIn("ImagePullBackOff", run.message)
        self.assertEqual(deployment.state, "failed")
        self.assertEqual(version.state, "validated")
        self.assertEqual(self._stages(run)["switch_traffic"], "skipped")
        # the approver hears of it
        self.assertIn("ImagePullBackOff", " ".join(version.message_ids.mapped("body")))
        self.assertIn(
            "ImagePullBackOff",
            " ".join(
                version.activity_ids.filtered(
                    lambda a: a.user_id == self.approver
                ).mapped("summary")
            ),
        )
        # deploying again is possible at once
        again, _run = self._deploy(version)
        self.assertNotEqual(again, deployment)

    def test_a_provider_down_is_retried_and_a_refusal_fails_the_run(self):
        version = self._validated()
        self.server.answer(503, b"maintenance")
        deployment, run = self._deploy(version)
        job = self._trigger_job(run)
        with self.assertRaises(RetryableJobError):
            job.perform()
        run.invalidate_recordset()
        self.assertEqual(run.state, "queued")
        self.assertEqual(version.state, "staging_pending")

        self.server.answer(401, {"message": "401 Unauthorized"})
        self._perform(job)
        run.invalidate_recordset()
        self.assertEqual(run.state, "failed")
        self.assertIn("401", run.message)
        self.assertNotIn(TOKEN, run.message)
        self.assertEqual(deployment.state, "failed")
        self.assertEqual(version.state, "validated")
        # the job again (a duplicate delivery of it): nothing to do
        self.assertIn("nothing to do", job.perform())

    def test_a_silent_pipeline_expires(self):
        version = self._validated()
        deployment, run, _secret = self._triggered(version)
        self.env["mlops.pipeline.run"]._cron_expire()
        self.assertEqual(run.state, "running")
        run.sudo().last_heard_at = fields.Datetime.now() - timedelta(hours=2)
        self.env["mlops.pipeline.run"]._cron_expire()
        self.assertEqual(run.state, "failed")
        self.assertIn("said nothing", run.message)
        self.assertEqual(version.state, "validated")
        self.assertEqual(deployment.state, "failed")

    def test_an_external_target_refuses_a_canary_and_needs_a_provider(self):
        version = self._validated()
        version.with_user(self.approver).with_context(
            mlops_reason="tested"
        )._lifecycle_move("staging_pending")
        version.sudo().write({"state": "staging"})
        answer = self._call(
            "POST",
            f"/versions/{version.id}/promote",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"strategy": "canary", "target": "ext", "reason": "try"},
        )
        self._error(answer, 422, "invalid_input")
        self.assertIn("canary", answer.json()["error"]["message"])
        self.assertEqual(version.state, "staging")
        with self.assertRaises(ValidationError):
            self.env["mlops.deployment.target"].create(
                {"name": "No pipeline", "code": "nopipe", "kind": "external"}
            )
        with self.assertRaises(ValidationError):
            self.env["mlops.ci.provider"].create(
                {"name": "GH", "code": "gh", "kind": "github", "url": "https://x"}
            )

    def test_a_github_target_is_asked_no_resources(self):
        github = self.env["mlops.ci.provider"].create(
            {
                "name": "GitHub",
                "code": "hub",
                "kind": "github",
                "url": self.server.url,
                "project": "creative/models",
                "workflow": "deploy.yml",
            }
        )
        self.env["mlops.deployment.target"].create(
            {
                "name": "Cluster via GitHub",
                "code": "gh",
                "kind": "external",
                "ci_provider_id": github.id,
            }
        )
        version = self._validated()
        answer = self._call(
            "POST",
            f"/versions/{version.id}/deploy",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"target": "gh", "reason": "gpu", "resources": {"gpu": 2}},
        )
        error = self._error(answer, 422, "invalid_input")
        self.assertEqual(
            error["details"],
            {"resources.gpu": "a GitHub workflow takes 10 inputs, all in use"},
        )
        # refused before anything was approved, queued or sent
        self.assertEqual(version.state, "validated")
        self.assertFalse(version.deployment_ids)
        self.assertFalse(self.server.requests)
        # without resources, the same target deploys
        answer = self._call(
            "POST",
            f"/versions/{version.id}/deploy",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"target": "gh", "reason": "cpu only"},
        )
        self.assertEqual(answer.status_code, 202, answer.text)

    def test_rights_on_providers_and_run_secrets(self):
        version = self._validated()
        _deployment, run, _secret = self._triggered(version)
        provider = self.provider.with_user(self.approver)
        self.assertEqual(provider.name, "GitLab")
        with self.assertRaises(AccessError):
            provider.write({"url": "https://evil.example"})
        with self.assertRaises(AccessError):
            run.with_user(self.approver).read(["callback_nonce"])
        with self.assertRaises(AccessError):
            self.provider.with_user(self.approver).action_test_connection()
        # a manager tests the connection: GitLab's project answers
        self.server.answer(200, {"path_with_namespace": "creative/models"})
        notice = self.provider.with_user(self.manager).action_test_connection()
        self.assertEqual(notice["params"]["type"], "success", notice)
        self.assertIn("creative/models", notice["params"]["message"])

    def _live(self, run, secret):
        answer = self._report(
            secret,
            run,
            stage="switch_traffic",
            status="succeeded",
            endpoint_url=ENDPOINT,
        )
        self.assertEqual(answer.json()["state"], "succeeded", answer.text)

    def _promote(self, version, **body):
        self.server.answer(201, {"id": 9100 + version.id})
        answer = self._call(
            "POST",
            f"/versions/{version.id}/promote",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"reason": "soaked", **body},
        )
        return answer

    def _run_of(self, answer):
        self.assertEqual(answer.status_code, 202, answer.text)
        deployment = self.env["mlops.deployment"].browse(answer.json()["deployment_id"])
        run = deployment.run_ids
        self._perform(self._trigger_job(run))
        sent = self.server.requests[-1]
        form = {k: v for k, (v,) in parse_qs(sent["body"].decode()).items()}
        return deployment, run, form["variables[MLOPS_CALLBACK_SECRET]"]

    def test_production_and_rollback_follow_the_pipeline_target(self):
        first = self._validated()
        gpus = {"gpu": 1, "gpu_type": "NVIDIA-A10G", "cpu": "4", "memory": "16Gi"}
        _staging, run, secret = self._triggered(first, resources=gpus)
        asked = '{"cpu":"4","gpu":1,"gpu_type":"NVIDIA-A10G","memory":"16Gi"}'
        form = parse_qs(self.server.requests[-1]["body"].decode())
        self.assertEqual(form["variables[MLOPS_RESOURCES]"], [asked])
        self._live(run, secret)
        # production goes where staging ran, through the same pipeline; a
        # canary there has no gates to read
        self._error(self._promote(first, strategy="canary"), 422, "invalid_input")
        blue, run, secret = self._run_of(self._promote(first))
        self.assertEqual(blue.target_id, self.target)
        self.assertEqual(run.provider, "gitlab")
        form = parse_qs(self.server.requests[-1]["body"].decode())
        self.assertEqual(form["variables[MLOPS_ENVIRONMENT]"], ["production"])
        self.assertEqual(form["variables[MLOPS_STRATEGY]"], ["blue_green"])
        # production asks for what staging ran with
        self.assertEqual(form["variables[MLOPS_RESOURCES]"], [asked])
        self.assertEqual((blue.gpu, blue.gpu_type), (1, "NVIDIA-A10G"))
        self._live(run, secret)
        self.assertEqual(first.state, "production")

        second = self._validated()
        _staging, run, secret = self._triggered(second)
        self._live(run, secret)
        green, run, secret = self._run_of(self._promote(second))
        self._live(run, secret)
        self.assertEqual(second.state, "production")
        self.assertEqual(first.state, "deprecated")
        self.assertEqual(blue.state, "inactive_bluegreen")

        # Odoo cannot see the idle colour of an external target: the roll
        # back deploys the previous version again, through the pipeline
        self.server.answer(201, {"id": 9999})
        answer = self._call(
            "POST",
            f"/deployments/{green.id}/rollback",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"reason": "error rate"},
        )
        self.assertEqual(answer.status_code, 202, answer.text)
        again = first.deployment_ids.sorted("id")[-1]
        self.assertNotEqual(again, blue)
        self.assertEqual(again.target_id, self.target)
        self.assertEqual(again.environment, "production")
        self._perform(self._trigger_job(again.run_ids))
        form = parse_qs(self.server.requests[-1]["body"].decode())
        self.assertEqual(form["variables[MLOPS_VERSION]"], [first.version])
        # the version rolled back to gets its own resources again
        self.assertEqual(form["variables[MLOPS_RESOURCES]"], [asked])
        self._live(again.run_ids, form["variables[MLOPS_CALLBACK_SECRET]"][0])
        self.assertEqual(first.state, "production")
        self.assertEqual(second.state, "deprecated")
        # the idle colours are forgotten once kept long enough
        green.invalidate_recordset()
        self.assertEqual((blue | green).mapped("state"), ["inactive_bluegreen"] * 2)
        self.env.cr.execute(
            "UPDATE mlops_deployment SET write_date = now() - interval '2 hours'"
            " WHERE id IN %s",
            [tuple((blue | green).ids)],
        )
        (blue | green).invalidate_recordset()
        self.env["mlops.deployment"]._cron_supervise()
        self.assertEqual((blue | green).mapped("state"), ["deleted"] * 2)
        self.assertEqual(again.state, "active")
