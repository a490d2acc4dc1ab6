# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The inference log on the embedded local target: real model servers
sample real calls, the collector stores them in the object store and
indexes them by request id; personal fields never reach storage."""

import io
import json
import time

import requests

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.queue_job.tests.common import trap_jobs

from ..exceptions import InvalidInput
from ..lifecycle import MANAGER
from ..services import artifacts as artifact_service
from ..services import inference_log
from ..services.settings import SETTINGS
from . import artifacts
from .common import LocalTargetCleanup, MlopsCase, invoke_headers

SECRET = "ann@example.com"


class TestInferenceLog(LocalTargetCleanup, MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        cls.auth = invoke_headers(cls.env, cls.manager, "inference-log")
        cls.env["ir.config_parameter"].sudo().set_param(
            SETTINGS["inference_log_rate"].key, "1.0"
        )

    def _deployment(self, personal=("y", "user_email")):
        with trap_jobs() as trap:
            version = artifact_service.register_upload(
                self.env(user=self.uploader),
                {
                    "model": "logged",
                    "version": "1.0.0",
                    "model_format": "onnx",
                    "personal_fields": list(personal),
                },
                io.BytesIO(artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(reason="log it")
            trap.perform_enqueued_jobs()
        (deployment,) = version.deployment_ids
        self.assertEqual(deployment.state, "active")
        self.assertEqual(deployment.inference_log_rate, 1.0)
        return deployment

    def _call(self, url, request_id):
        answer = requests.post(
            url,
            json={
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": [0.5] * 64,
                    }
                ],
                "parameters": {"user_email": SECRET, "channel": "pwa"},
            },
            headers={**self.auth, "X-Request-Id": request_id},
            timeout=10,
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        return answer

    def _wait_for_files(self, client, count):
        """The model server writes what it sampled within ten seconds."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            files = client.logged_files()
            if sum(len(f) for f in files.values()) >= count:
                return files
            time.sleep(0.5)
        self.fail("the model server wrote no inference log")

    def test_calls_are_stored_and_indexed_without_personal_fields(self):
        deployment = self._deployment()
        for n in range(6):
            self._call(deployment.endpoint_url, f"pwa-{n}")
        client = self.target._get_client()
        self._wait_for_files(client, 1)
        self.assertEqual(inference_log.collect(self.target), "1 batches kept")
        Batch = self.env["mlops.inference.batch"]
        (batch,) = Batch.search([("deployment_id", "=", deployment.id)])
        self.assertEqual((batch.rows, batch.source), (6, "runtime"))
        self.assertTrue(batch.object_key.startswith("inference-log/"))
        self.assertIn(f"/d{deployment.id}/", batch.object_key)
        self.assertTrue(batch.first_at <= batch.last_at)
        # read back from the object store: what was asked, less what is personal
        rows = batch._read_rows()
        self.assertEqual(
            [r["request_id"] for r in rows], [f"pwa-{n}" for n in range(6)]
        )
        self.assertEqual(rows[0]["inputs"][0]["data"], [0.5] * 64)
        self.assertEqual(rows[0]["outputs"], [])
        self.assertEqual(rows[0]["parameters"], {"channel": "pwa"})
        stored = batch.storage_backend_id._get_store()
        with stored.open(batch.object_key) as handle:
            self.assertNotIn(SECRET.encode(), handle.read())
        # the index finds a call by the request id its caller was given
        found = inference_log.calls(self.env(user=self.uploader), ["pwa-4", "nope"])
        self.assertEqual(list(found), ["pwa-4"])
        self.assertEqual(found["pwa-4"]["status"], 200)
        record = self.env["mlops.inference.record"].search(
            [("request_id", "=", "pwa-4")]
        )
        self.assertEqual((record.batch_id, record.line), (batch, 4))
        # once committed, the target forgets its files; a second pass over
        # files kept already stores nothing twice
        self.assertTrue(client.logged_files())
        inference_log.collect(self.target)
        self.assertEqual(Batch.search_count([("deployment_id", "=", deployment.id)]), 1)
        self.env.cr.postcommit.run()
        self.assertEqual(client.logged_files(), {})

    def test_the_log_is_the_platforms(self):
        deployment = self._deployment()
        self._call(deployment.endpoint_url, "mine")
        self._wait_for_files(self.target._get_client(), 1)
        inference_log.collect(self.target)
        batch = self.env["mlops.inference.batch"].search(
            [("deployment_id", "=", deployment.id)]
        )
        for user in (self.uploader, self.approver, self.manager):
            with self.assertRaises(AccessError):
                batch.with_user(user).write({"rows": 0})
            with self.assertRaises(AccessError):
                batch.record_ids.with_user(user).write({"request_id": "forged"})
            with self.assertRaises(AccessError):
                batch.with_user(user).unlink()
        with self.assertRaises(AccessError):
            deployment.with_user(self.manager).write({"inference_log_rate": 0.0})

    def test_personal_fields_are_declared_in_draft_only(self):
        deployment = self._deployment()
        version = deployment.version_id.with_user(self.uploader)
        self.assertEqual(version._personal_field_names(), {"y", "user_email"})
        with self.assertRaises(UserError):
            version.write({"personal_fields": "nothing"})
        for wrong in ("email", [""], [" email"], ["a,b"], ["x"] * 101):
            with self.assertRaises(InvalidInput):
                artifact_service.parse_metadata(
                    self.env,
                    {
                        "model": "m",
                        "version": "1",
                        "model_format": "onnx",
                        "personal_fields": wrong,
                    },
                )

    def test_a_rate_of_zero_logs_nothing(self):
        self.env["ir.config_parameter"].sudo().set_param(
            SETTINGS["inference_log_rate"].key, "0"
        )
        with trap_jobs() as trap:
            version = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": "unlogged", "version": "1", "model_format": "onnx"},
                io.BytesIO(artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(reason="quiet")
            trap.perform_enqueued_jobs()
        (deployment,) = version.deployment_ids
        self.assertEqual(deployment.inference_log_rate, 0.0)
        self._call(deployment.endpoint_url, "quiet-1")
        # its model server was not asked to keep anything
        client = self.target._get_client()
        handle = client.runtime.find(f"d{deployment.id}")
        with open(f"/proc/{handle.pid}/cmdline", "rb") as cmdline:
            self.assertNotIn(b"--log-dir", cmdline.read())


@tagged("post_install", "-at_install")
class TestPayloadLoggerEvents(HttpCase):
    """``POST /inference-log``: KServe's payload logger CloudEvents, as its
    agent sends them (binary mode: ``ce-*`` headers, the payload as the
    body), joined into the same log."""

    URL = "/mlops/api/v1/inference-log"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(cls.env, login="ce_manager", groups=MANAGER)
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        model = cls.env["mlops.model"].create({"name": "kserve-logged"})
        version = cls.env["mlops.model.version"].create(
            {
                "model_id": model.id,
                "version": "1.0.0",
                "personal_fields": "email",
                "state": "validating",
            }
        )
        cls.deployment = cls.env["mlops.deployment"].create(
            {"version_id": version.id, "target_id": cls.target.id}
        )
        cls.deployment.write({"state": "deploying"})
        cls.deployment.write({"state": "active"})
        cls.key = cls.target.with_user(cls.manager).action_new_inference_log_key()[
            "params"
        ]["message"]

    def _post(self, kind, call_id, payload, key=None, name=None, **headers):
        return self.url_open(
            self.URL,
            data=json.dumps(payload),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key or self.key}",
                "Ce-Specversion": "1.0",
                "Ce-Id": call_id,
                "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
                "Ce-Source": "http://localhost:9081/",
                "Ce-Inferenceservicename": name or f"d{self.deployment.id}",
                "Ce-Namespace": "models",
                "Ce-Component": "predictor",
                **headers,
            },
        )

    REQUEST = {
        "inputs": [
            {"name": "email", "shape": [1], "datatype": "BYTES", "data": [SECRET]},
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5]},
        ]
    }
    RESPONSE = {
        "model_name": "kserve-logged",
        "outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [0.9]}],
    }

    def test_request_and_response_become_one_logged_call(self):
        self.assertEqual(self._post("request", "c-1", self.REQUEST).status_code, 202)
        answer = self._post("response", "c-1", self.RESPONSE)
        self.assertEqual((answer.status_code, answer.json()), (202, {"kept": True}))
        # delivered again: kept once
        self.assertEqual(
            self._post("response", "c-1", self.RESPONSE).json(), {"kept": False}
        )
        # nothing personal waits in PostgreSQL either
        waiting = self.env["mlops.inference.event"].search(
            [("deployment_id", "=", self.deployment.id)]
        )
        self.assertEqual(len(waiting), 2)
        self.assertNotIn(SECRET, json.dumps(waiting.mapped("payload")))
        self.assertEqual(inference_log.collect(self.target), "1 batches kept")
        (batch,) = self.env["mlops.inference.batch"].search(
            [("deployment_id", "=", self.deployment.id)]
        )
        self.assertEqual((batch.source, batch.rows), ("cloudevents", 1))
        (row,) = batch._read_rows()
        self.assertEqual(row["request_id"], "c-1")
        self.assertEqual([t["name"] for t in row["inputs"]], ["x"])
        self.assertEqual(row["outputs"][0]["data"], [0.9])
        self.assertFalse(waiting.exists())

    def test_a_request_without_its_response_waits_then_is_kept_alone(self):
        self._post("request", "c-2", self.REQUEST)
        self.assertEqual(inference_log.collect(self.target), "0 batches kept")
        self.env.cr.execute(
            "UPDATE mlops_inference_event SET received_at = received_at - "
            "interval '10 minutes' WHERE request_id = 'c-2'"
        )
        self.env["mlops.inference.event"].invalidate_model()
        self.assertEqual(inference_log.collect(self.target), "1 batches kept")
        (row,) = (
            self.env["mlops.inference.batch"]
            .search([("deployment_id", "=", self.deployment.id)])
            ._read_rows()
        )
        self.assertEqual(
            (row["request_id"], row["status"], row["outputs"]), ("c-2", None, [])
        )

    def test_refusals_change_nothing(self):
        Event = self.env["mlops.inference.event"]
        cases = [
            (self._post("request", "r1", self.REQUEST, key="wrong"), 401),
            (
                self.url_open(
                    self.URL,
                    data=json.dumps(self.REQUEST),
                    headers={"Content-Type": "application/json"},
                ),
                401,
            ),
            (self._post("request", "r2", self.REQUEST, name="mlops-d0-other"), 422),
            (self._post("request", "r3", self.REQUEST, **{"Ce-Type": "x.y"}), 422),
            (self._post("request", "", self.REQUEST), 422),
            (self._post("request", "r4", [1, 2]), 400),
        ]
        for answer, status in cases:
            self.assertEqual(answer.status_code, status, answer.text)
            self.assertIn("error", answer.json())
        self.assertFalse(Event.search([]))
        # a new key: the old one is refused
        self.target.with_user(self.manager).action_new_inference_log_key()
        self.assertEqual(self._post("request", "r5", self.REQUEST).status_code, 401)
