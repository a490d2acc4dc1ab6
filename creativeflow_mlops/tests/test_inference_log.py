# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The inference log on the embedded local target: real model servers
sample real calls, the collector stores them in the object store and
indexes them by request id; personal fields never reach storage."""

import io
import time

import requests

from odoo.exceptions import AccessError, UserError

from odoo.addons.queue_job.tests.common import trap_jobs

from ..exceptions import InvalidInput
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
