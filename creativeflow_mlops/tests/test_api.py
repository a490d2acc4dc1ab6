# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import hashlib
import json
import os
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from odoo import fields
from odoo.tests import HttpCase, JsonRpcException, new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.queue_job.exception import RetryableJobError

from ..lifecycle import MANAGER, USER
from . import artifacts
from .common_storage import s3_backend

API = "/mlops/api/v1"


class _MultipartBody:
    """A multipart/form-data body (metadata first) read by requests in
    chunks, with a hook told how much was sent."""

    boundary = "mlopsTestBoundary"

    def __init__(self, metadata, data, on_progress=None):
        self._parts = [
            (
                f"--{self.boundary}\r\n"
                'Content-Disposition: form-data; name="metadata"\r\n\r\n'
                f"{json.dumps(metadata)}\r\n--{self.boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="w.bin"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode(),
            data,
            f"\r\n--{self.boundary}--\r\n".encode(),
        ]
        self._whole = memoryview(b"".join(self._parts))
        self._sent = 0
        self._on_progress = on_progress
        self.content_type = f"multipart/form-data; boundary={self.boundary}"

    def __len__(self):
        return len(self._whole)

    def read(self, size=-1):  # pylint: disable=method-required-super
        size = len(self._whole) if size is None or size < 0 else size
        chunk = bytes(self._whole[self._sent : self._sent + size])
        self._sent += len(chunk)
        if self._on_progress and self._on_progress(self._sent):
            self._on_progress = None
        return chunk


@tagged("post_install", "-at_install")
class TestApi(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="api_user", groups=USER)
        cls.manager = new_test_user(cls.env, login="api_manager", groups=MANAGER)
        cls.outsider = new_test_user(cls.env, login="api_outsider")
        cls.keys = {
            user: cls.env["res.users.apikeys"]
            .with_user(user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
            for user in (cls.user, cls.manager, cls.outsider)
        }

    def _call(self, method, path, user=None, key=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if user or key:
            headers["Authorization"] = f"Bearer {key or self.keys[user]}"
        response = self.opener.request(
            method,
            f"{self.base_url()}{API}{path}",
            headers=headers,
            timeout=60,
            **kwargs,
        )
        self.assertEqual(
            response.headers["Content-Type"].split(";")[0], "application/json"
        )
        return response

    def _upload(self, user, metadata, data=None, filename="model.onnx"):
        return self._call(
            "POST",
            "/models/upload",
            user,
            files={
                "file": (
                    filename,
                    artifacts.onnx_bytes() if data is None else data,
                    "application/octet-stream",
                )
            },
            data={
                "metadata": json.dumps(metadata)
                if isinstance(metadata, dict)
                else metadata
            },
        )

    def _assert_error(self, response, status, code):
        self.assertEqual(response.status_code, status, response.text)
        body = response.json()["error"]
        self.assertEqual(body["code"], code)
        self.assertTrue(body["message"])
        return body

    def test_upload_then_follow_the_version(self):
        metadata = {
            "model": "api-sentiment",
            "version": "1.0.0",
            "model_format": "onnx",
            "interface_type": "kserve_v2",
            "task_type": "classification",
            "metrics": {"f1": 0.91},
            "lineage": {"dataset": "reviews-2026-10", "git_commit": "abc123"},
            "signature": {"outputs": {"y": {"dtype": "float32"}}},
        }
        response = self._upload(self.user, metadata)
        self.assertEqual(response.status_code, 202, response.text)
        body = response.json()
        self.assertEqual(body["state"], "validating")
        data = artifacts.onnx_bytes()
        self.assertEqual(body["artifact"]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(body["artifact"]["size"], len(data))

        self._assert_error(self._upload(self.user, metadata), 409, "conflict")

        listing = self._call("GET", "/models?q=api-sent", self.user).json()
        self.assertEqual(listing["total"], 1)
        self.assertEqual(listing["items"][0]["name"], "api-sentiment")
        model = self._call("GET", f"/models/{body['model_id']}", self.user).json()
        self.assertEqual(model["versions"][0]["version"], "1.0.0")
        self.assertEqual(model["task_type"], "classification")
        versions = self._call(
            "GET", f"/models/{body['model_id']}/versions?state=validating", self.user
        ).json()
        self.assertEqual(versions["total"], 1)
        version = self._call("GET", f"/versions/{body['version_id']}", self.user).json()
        self.assertEqual(version["metrics"], {"f1": 0.91})
        self.assertEqual(version["lineage"]["dataset"], "reviews-2026-10")
        self.assertEqual(version["created_by"], "api_user")
        self.assertEqual(
            {v["scan_type"] for v in version["validations"]},
            {
                "integrity",
                "format",
                "functional_io",
                "performance_benchmark",
                "content_safety",
            },
        )
        self.assertEqual({v["state"] for v in version["validations"]}, {"pending"})

        # the jobs run; the client sees the version validated
        record = self.env["mlops.model.version"].browse(body["version_id"])
        self._run_round(record)
        version = self._call("GET", f"/versions/{body['version_id']}", self.user).json()
        self.assertEqual(version["state"], "validated")

        # re-validating is the manager's
        self._assert_error(
            self._call("POST", f"/versions/{record.id}/validate", self.user, json={}),
            403,
            "forbidden",
        )
        for scan_types in (["nope"], "format", [], [3]):
            self._assert_error(
                self._call(
                    "POST",
                    f"/versions/{record.id}/validate",
                    self.manager,
                    json={"scan_types": scan_types},
                ),
                422,
                "invalid_input",
            )
        self._assert_error(
            self._call("POST", "/versions/987654/validate", self.manager, json={}),
            404,
            "not_found",
        )
        response = self._call(
            "POST",
            f"/versions/{record.id}/validate",
            self.manager,
            json={"scan_types": ["format"]},
        )
        self.assertEqual(response.status_code, 202, response.text)
        self.assertEqual(response.json()["state"], "validating")
        self._assert_error(
            self._call(
                "POST", f"/versions/{record.id}/validate", self.manager, json={}
            ),
            409,
            "transition_not_allowed",
        )

    def test_file_before_metadata_is_spooled_then_stored(self):
        """Clients that send the file part first still work: the artifact is
        spooled to a temporary file, then stored."""
        data = artifacts.onnx_bytes()
        boundary = "mlopsboundary"
        metadata = json.dumps(
            {"model": "late-meta", "version": "1.0.0", "model_format": "onnx"}
        )
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="m.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + (
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="metadata"'
                f"\r\n\r\n{metadata}\r\n--{boundary}--\r\n"
            ).encode()
        )
        response = self._call(
            "POST",
            "/models/upload",
            self.user,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        self.assertEqual(response.status_code, 202, response.text)
        self.assertEqual(
            response.json()["artifact"]["sha256"], hashlib.sha256(data).hexdigest()
        )
        self.assertTrue(
            response.json()["artifact"]["uri"].endswith("/late-meta/1.0.0/m.onnx")
        )

    def test_authentication(self):
        self._assert_error(self._call("GET", "/models"), 401, "unauthorized")
        response = self._call("GET", "/models", key="not-a-key")
        self._assert_error(response, 401, "unauthorized")
        self.assertEqual(response.headers["WWW-Authenticate"], "Bearer")
        self._assert_error(
            self._upload(None, {"model": "x", "version": "1", "model_format": "onnx"}),
            401,
            "unauthorized",
        )
        self._assert_error(
            self._call("GET", "/models", self.outsider), 403, "forbidden"
        )
        self._assert_error(
            self._upload(
                self.outsider, {"model": "x", "version": "1", "model_format": "onnx"}
            ),
            403,
            "forbidden",
        )
        self.assertFalse(self.env["mlops.model"].search([("name", "=", "x")]))

    def test_malformed_and_invalid_requests(self):
        self._assert_error(self._upload(self.user, "{not json"), 400, "malformed_json")
        body = self._assert_error(
            self._upload(
                self.user, {"model": "m", "version": "a b", "model_format": "zip"}
            ),
            422,
            "invalid_input",
        )
        self.assertEqual(set(body["details"]), {"version", "model_format"})
        response = self._call(
            "POST", "/models/upload", self.user, data={"metadata": "{}"}
        )
        self._assert_error(response, 400, "invalid_request")
        self._assert_error(
            self._call("GET", "/models?limit=abc", self.user), 400, "invalid_request"
        )
        self._assert_error(
            self._call("GET", "/models?limit=100000", self.user), 400, "invalid_request"
        )
        self._assert_error(
            self._call("GET", "/models/999999", self.user), 404, "not_found"
        )
        self._assert_error(
            self._call("GET", "/versions/999999", self.user), 404, "not_found"
        )
        self._assert_error(
            self._call(
                "POST",
                "/versions/1/validate",
                self.manager,
                data="[1,",
                headers={"Content-Type": "application/json"},
            ),
            400,
            "malformed_json",
        )
        self._assert_error(
            self._call("POST", "/uploads", self.user, json={"model": "m", "size": -5}),
            422,
            "invalid_input",
        )
        self._assert_error(
            self._call(
                "POST", "/uploads/unknown-token/complete", self.user, json={"parts": []}
            ),
            404,
            "not_found",
        )

    def test_other_companies_records_are_not_found(self):
        other = self.env["res.company"].create({"name": "Elsewhere Inc"})
        model = (
            self.env["mlops.model"]
            .sudo()
            .create({"name": "hidden-model", "company_id": other.id})
        )
        version = (
            self.env["mlops.model.version"]
            .sudo()
            .create(
                {
                    "model_id": model.id,
                    "version": "1.0.0",
                    "model_format": "onnx",
                }
            )
        )
        for path in (
            f"/models/{model.id}",
            f"/models/{model.id}/versions",
            f"/versions/{version.id}",
        ):
            self._assert_error(self._call("GET", path, self.user), 404, "not_found")
        self._assert_error(
            self._call(
                "POST", f"/versions/{version.id}/validate", self.manager, json={}
            ),
            404,
            "not_found",
        )
        mine = self._upload(
            self.user,
            {"model": "seen-model", "version": "1.0.0", "model_format": "onnx"},
        ).json()
        self._assert_error(
            self._call(
                "GET", f"/models/{mine['model_id']}/versions?state=bogus", self.user
            ),
            422,
            "invalid_input",
        )
        self._assert_error(
            self._call(
                "GET", f"/models/{mine['model_id']}/versions?offset=-1", self.user
            ),
            400,
            "invalid_request",
        )
        listing = self._call("GET", "/models?q=hidden", self.user).json()
        self.assertEqual(listing["total"], 0)
        # no MLOps rights at all is a 403, not a 404
        self._assert_error(
            self._call("GET", f"/versions/{version.id}", self.outsider),
            403,
            "forbidden",
        )

    def test_artifact_download(self):
        import requests

        data = artifacts.onnx_bytes()
        body = self._upload(
            self.user, {"model": "dl-model", "version": "1.0.0", "model_format": "onnx"}
        ).json()
        version = self.env["mlops.model.version"].browse(body["version_id"])
        # local store: through Odoo, for a logged-in user who may read it
        action = version.with_user(self.user).action_download_artifact()
        self.assertEqual(action["url"], f"/mlops/artifacts/{version.id}/download")
        anonymous = self.url_open(action["url"], allow_redirects=False)
        self.assertIn(anonymous.status_code, (302, 303))
        self.authenticate("api_user", "api_user")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, data)
        self.assertIn("model.onnx", response.headers["Content-Disposition"])
        self.assertEqual(
            self.url_open("/mlops/artifacts/987654/download").status_code, 404
        )
        self.assertEqual(body["artifact"]["download_url"], action["url"])
        # a script: its API key, and JSON for every error
        self.logout()
        url = f"{self.base_url()}{action['url']}"
        keyed = self.opener.get(
            url, headers={"Authorization": f"Bearer {self.keys[self.user]}"}
        )
        self.assertEqual(keyed.status_code, 200)
        self.assertEqual(keyed.content, data)
        bad = self.opener.get(url, headers={"Authorization": "Bearer nope"})
        self._assert_error(bad, 401, "unauthorized")
        self.assertEqual(bad.headers["WWW-Authenticate"], "Bearer")
        no_key = self.opener.get(url, headers={"Accept": "application/json"})
        self._assert_error(no_key, 401, "unauthorized")
        self._assert_error(
            self.opener.get(
                f"{self.base_url()}/mlops/artifacts/987654/download",
                headers={"Authorization": f"Bearer {self.keys[self.user]}"},
            ),
            404,
            "not_found",
        )
        self.authenticate("api_user", "api_user")
        other = self.env["res.company"].create({"name": "Far Away Ltd"})
        version.model_id.sudo().company_id = other
        self.assertEqual(self.url_open(action["url"]).status_code, 404)
        self._assert_error(
            self.opener.get(
                url, headers={"Authorization": f"Bearer {self.keys[self.user]}"}
            ),
            404,
            "not_found",
        )
        # S3: a presigned link straight to the store, valid for minutes
        with s3_backend(self.env, code="dl", default=True):
            body = self._upload(
                self.user,
                {"model": "dl-s3-model", "version": "1.0.0", "model_format": "onnx"},
            ).json()
            version = self.env["mlops.model.version"].browse(body["version_id"])
            url = version.with_user(self.user).action_download_artifact()["url"]
            self.assertIn("X-Amz-Expires=600", url)
            fetched = requests.get(url, timeout=30)
            self.assertEqual(fetched.status_code, 200)
            self.assertEqual(fetched.content, data)
            # the same route sends a script on to the presigned URL
            self.logout()
            keyed = self.opener.get(
                f"{self.base_url()}{body['artifact']['download_url']}",
                headers={"Authorization": f"Bearer {self.keys[self.user]}"},
                allow_redirects=False,
            )
            self.assertEqual(keyed.status_code, 303)
            self.assertIn("X-Amz-Expires=600", keyed.headers["Location"])
            self.assertEqual(
                requests.get(keyed.headers["Location"], timeout=30).content, data
            )

    def _web_save(self, version, values):
        """The backend form's save, as the browser sends it."""
        return self.make_jsonrpc_request(
            "/web/dataset/call_kw/mlops.model.version/web_save",
            {
                "model": "mlops.model.version",
                "method": "web_save",
                "args": [[version.id], values],
                "kwargs": {"specification": {"state": {}}},
            },
        )

    def test_a_form_save_that_fails_leaves_no_object(self):
        """The form stores the upload, then another field of the same save is
        refused: the transaction goes, and the object with it."""
        import base64

        version = (
            self.env["mlops.model.version"]
            .with_user(self.user)
            .create(
                {
                    "model_id": self.env["mlops.model"]
                    .with_user(self.user)
                    .create({"name": "form-model"})
                    .id,
                    "version": "1.0.0",
                    "model_format": "onnx",
                }
            )
        )
        root = (
            self.env.ref("creativeflow_mlops.storage_backend_local")._get_store().root
        )
        target = root / version.model_id._artifact_key(
            self.env.ref("creativeflow_mlops.storage_backend_local"),
            "1.0.0",
            "model.onnx",
        )
        target.unlink(missing_ok=True)  # left by an earlier run of this database
        self.addCleanup(target.unlink, missing_ok=True)
        self.authenticate("api_user", "api_user")
        upload = {
            "artifact_upload": base64.b64encode(artifacts.onnx_bytes()).decode(),
            "artifact_filename": "model.onnx",
        }
        with self.assertRaises(JsonRpcException), mute_logger("odoo.http"):
            self._web_save(version, {**upload, "version": "not a version!"})
        self.assertFalse(target.exists())
        # the same save with a valid version stores it
        self._web_save(version, upload)
        self.assertTrue(target.exists())

    def test_oversized_upload_is_refused_before_reading(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "creativeflow_mlops.max_upload_gb", "0"
        )
        response = self._upload(
            self.user, {"model": "big", "version": "1.0.0", "model_format": "onnx"}
        )
        self._assert_error(response, 413, "payload_too_large")
        self.assertFalse(self.env["mlops.model"].search([("name", "=", "big")]))

    def test_direct_multipart_upload(self):
        import requests

        with s3_backend(self.env, code="direct", default=True):
            data = artifacts.onnx_bytes() * 1
            payload = {
                "model": "direct-model",
                "version": "1.0.0",
                "filename": "model.onnx",
                "size": len(data),
                "metadata": {
                    "model_format": "onnx",
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
            }
            started = self._call("POST", "/uploads", self.user, json=payload)
            self.assertEqual(started.status_code, 201, started.text)
            answer = started.json()
            self.assertEqual(len(answer["parts"]), 1)
            version = self.env["mlops.model.version"].search(
                [("version", "=", "1.0.0"), ("model_id.name", "=", "direct-model")]
            )
            self.assertEqual(version.state, "draft")
            etags = []
            for part in answer["parts"]:
                put = requests.put(part["url"], data=data, timeout=30)
                self.assertEqual(put.status_code, 200, put.text)
                etags.append(
                    {"part_number": part["part_number"], "etag": put.headers["ETag"]}
                )
            done = self._call(
                "POST",
                f"/uploads/{answer['upload_id']}/complete",
                self.user,
                json={"parts": etags},
            )
            self.assertEqual(done.status_code, 202, done.text)
            # the object is whole; the version stays draft until a job has
            # read it back and hashed it
            self.assertEqual(done.json()["state"], "draft")
            self.assertEqual(done.json()["artifact"]["size"], len(data))
            self.assertIsNone(done.json()["artifact"]["verified_at"])
            status = self._call("GET", f"/uploads/{answer['upload_id']}", self.user)
            self.assertEqual(status.json()["state"], "verifying")
            self._assert_error(
                self._call(
                    "POST",
                    f"/uploads/{answer['upload_id']}/complete",
                    self.user,
                    json={"parts": etags},
                ),
                409,
                "conflict",
            )
            self._verify_upload(answer["upload_id"])
            followed = self._call("GET", f"/versions/{version.id}", self.user).json()
            self.assertEqual(followed["state"], "validating")
            self.assertEqual(
                followed["artifact"]["sha256"], hashlib.sha256(data).hexdigest()
            )
            self.assertTrue(followed["artifact"]["verified_at"])
            integrity = next(
                v for v in followed["validations"] if v["scan_type"] == "integrity"
            )
            self.assertEqual(integrity["state"], "passed")
            self._run_round(version)
            followed = self._call("GET", f"/versions/{version.id}", self.user).json()
            self.assertEqual(followed["state"], "validated")
            status = self._call("GET", f"/uploads/{answer['upload_id']}", self.user)
            self.assertEqual(status.json()["state"], "completed")

            # a size that does not match is refused and nothing is registered
            payload.update(version="1.0.1", size=len(data) + 1)
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            put = requests.put(answer["parts"][0]["url"], data=data, timeout=30)
            done = self._call(
                "POST",
                f"/uploads/{answer['upload_id']}/complete",
                self.user,
                json={"parts": [{"part_number": 1, "etag": put.headers["ETag"]}]},
            )
            self._assert_error(done, 422, "invalid_input")
            self.assertFalse(
                self.env["mlops.model.version"].search([("version", "=", "1.0.1")])
            )

            # an abandoned upload is aborted by the cron
            payload.update(version="1.0.2", size=len(data))
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            upload = self.env["mlops.upload"].search(
                [("token", "=", answer["upload_id"])]
            )
            upload.expires_at = fields.Datetime.now() - timedelta(minutes=1)
            self.assertEqual(self.env["mlops.upload"]._cron_abort_expired(), 1)
            self.assertEqual(upload.state, "aborted")
            self.assertFalse(
                self.env["mlops.model.version"].search([("version", "=", "1.0.2")])
            )

    def _direct_upload(self, payload, data):
        """POST /uploads, PUT the parts, complete: the completion's answer."""
        import requests

        answer = self._call("POST", "/uploads", self.user, json=payload).json()
        etags = []
        for part in answer["parts"]:
            start = (part["part_number"] - 1) * answer["part_size"]
            put = requests.put(
                part["url"], data=data[start : start + answer["part_size"]], timeout=30
            )
            self.assertEqual(put.status_code, 200, put.text)
            etags.append(
                {"part_number": part["part_number"], "etag": put.headers["ETag"]}
            )
        return self._call(
            "POST",
            f"/uploads/{answer['upload_id']}/complete",
            self.user,
            json={"parts": etags},
        )

    def _verify_upload(self, token):
        """Run the queued verification of a completed direct upload."""
        self.env.invalidate_all()
        upload = self.env["mlops.upload"].search([("token", "=", token)])
        self.assertEqual(upload.state, "verifying")
        return upload._verify()

    def _run_round(self, version):
        """Run the jobs of the version's round the way the queue does: the
        integrity job first, the other scans after it, then the settle job."""
        self.env.invalidate_all()
        results = version.validation_result_ids.filtered(
            lambda r: r.round == version.validation_round
        )
        first = results.filtered(lambda r: r.scan_type == "integrity")
        for result in first + (results - first):
            result._run_scan()
        version._validation_settle(version.validation_round)

    def test_direct_upload_is_registered_once_read_back_and_hashed(self):
        with s3_backend(self.env, code="verify", default=True):
            data = artifacts.onnx_bytes()
            payload = {
                "model": "verified-model",
                "filename": "model.onnx",
                "size": len(data),
                "metadata": {"model_format": "onnx"},
            }
            # no hash announced: the one read back is recorded
            done = self._direct_upload({**payload, "version": "1.0.0"}, data)
            self.assertEqual(done.status_code, 202, done.text)
            self.assertIsNone(done.json()["artifact"]["sha256"])
            version = self.env["mlops.model.version"].browse(done.json()["version_id"])
            self._verify_upload(done.json()["upload_id"])
            self.assertEqual(version.state, "validating")
            self.assertEqual(version.artifact_sha256, hashlib.sha256(data).hexdigest())
            self._run_round(version)
            self.assertEqual(version.state, "validated")

            # an announced hash the bytes do not have: registered with the one
            # measured, failed on integrity, no other scan looks at the bytes
            wrong = hashlib.sha256(b"something else").hexdigest()
            done = self._direct_upload(
                {**payload, "version": "1.0.1", "sha256": wrong}, data
            )
            self.assertEqual(done.status_code, 202, done.text)
            self.assertEqual(done.json()["artifact"]["sha256"], None)
            version = self.env["mlops.model.version"].browse(done.json()["version_id"])
            self._verify_upload(done.json()["upload_id"])
            self.assertEqual(version.state, "validation_failed")
            # the announced hash stays the registered one: a re-validation
            # fails again on these bytes
            self.assertEqual(version.artifact_sha256, wrong)
            states = {r.scan_type: r.state for r in version.validation_result_ids}
            self.assertEqual(states.pop("integrity"), "failed")
            self.assertEqual(set(states.values()), {"skipped"})
            followed = self._call("GET", f"/versions/{version.id}", self.user).json()
            integrity = next(
                v for v in followed["validations"] if v["scan_type"] == "integrity"
            )
            self.assertIn(wrong, integrity["summary"])
            self.assertIsNone(followed["artifact"]["verified_at"])

            # a malformed announced hash is refused before anything is created
            body = self._assert_error(
                self._call(
                    "POST",
                    "/uploads",
                    self.user,
                    json={**payload, "version": "1.0.2", "sha256": "abc"},
                ),
                422,
                "invalid_input",
            )
            self.assertIn("sha256", body["details"])
            self.assertFalse(
                self.env["mlops.model.version"].search([("version", "=", "1.0.2")])
            )

    def test_direct_upload_verification_with_the_store_gone(self):
        with s3_backend(self.env, code="gone", default=True) as backend:
            data = artifacts.onnx_bytes()
            done = self._direct_upload(
                {
                    "model": "gone-store",
                    "version": "1.0.0",
                    "filename": "model.onnx",
                    "size": len(data),
                    "metadata": {"model_format": "onnx"},
                },
                data,
            )
            upload = self.env["mlops.upload"].search(
                [("token", "=", done.json()["upload_id"])]
            )
            job = self.env["queue.job"].search(
                [("func_string", "like", f"mlops.upload({upload.id},)._verify")]
            )
            self.assertEqual(len(job), 1)
            self.assertEqual(job.max_retries, 8)
            live = backend.endpoint
            backend.endpoint = "127.0.0.1:1"
            with self.assertRaises(RetryableJobError):
                upload.with_context(job_uuid=job.uuid)._verify()
            self.assertEqual(upload.state, "verifying")
            # still gone on the last try: the upload fails, its draft goes
            job.retry = job.max_retries - 1
            upload.with_context(job_uuid=job.uuid)._verify()
            self.assertEqual(upload.state, "failed")
            self.assertIn("unreachable", upload.message)
            self.assertFalse(upload.version_id)
            status = self._call("GET", f"/uploads/{upload.token}", self.user).json()
            self.assertEqual(status["state"], "failed")
            # the object could not be deleted either: the cron does it later
            self.assertTrue(upload.cleanup_pending)
            backend.endpoint = live
            self.assertTrue(backend._get_store().stat(upload.object_key))
            self.env["mlops.upload"]._cron_abort_expired()
            self.assertFalse(upload.cleanup_pending)
            self.assertIsNone(backend._get_store().stat(upload.object_key))

            # a draft archived while its upload was being verified stays
            # archived: the verification gives up and removes the object
            done = self._direct_upload(
                {
                    "model": "gone-store",
                    "version": "1.0.1",
                    "filename": "model.onnx",
                    "size": len(data),
                    "metadata": {"model_format": "onnx"},
                },
                data,
            )
            version = self.env["mlops.model.version"].browse(done.json()["version_id"])
            version.with_user(self.manager).action_archive_version()
            upload = self.env["mlops.upload"].search(
                [("token", "=", done.json()["upload_id"])]
            )
            self.assertIn("archived", upload._verify())
            self.assertEqual(version.state, "archived")
            self.assertEqual(upload.state, "failed")
            self.assertIsNone(backend._get_store().stat(upload.object_key))

    def test_direct_upload_completions_out_of_order_or_inconsistent(self):
        import requests

        with s3_backend(self.env, code="order", default=True) as backend:
            data = os.urandom(16 * 1024 * 1024 + 10)
            payload = {
                "model": "ordered-model",
                "version": "1.0.0",
                "filename": "weights.bin",
                "size": len(data),
                "metadata": {"model_format": "other"},
            }
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            self.assertEqual(len(answer["parts"]), 2)
            token, part_size = answer["upload_id"], answer["part_size"]

            def complete(parts, user=None):
                return self._call(
                    "POST",
                    f"/uploads/{token}/complete",
                    user or self.user,
                    json={"parts": parts},
                )

            def put(number):
                start = (number - 1) * part_size
                reply = requests.put(
                    answer["parts"][number - 1]["url"],
                    data=data[start : start + part_size],
                    timeout=30,
                )
                self.assertEqual(reply.status_code, 200, reply.text)
                return {"part_number": number, "etag": reply.headers["ETag"]}

            # malformed part lists
            for parts in (
                [],
                [{"part_number": "1", "etag": "x"}],
                [{"part_number": True, "etag": "x"}],
                [{"part_number": 3, "etag": "x"}],
                [{"part_number": 1, "etag": "x"}, {"part_number": 1, "etag": "x"}],
            ):
                self._assert_error(complete(parts), 422, "invalid_input")
            # someone else's upload does not exist for them
            self._assert_error(
                complete([{"part_number": 1, "etag": "x"}], self.manager),
                404,
                "not_found",
            )
            # completing before the parts arrived: 409, the upload stays open
            second = put(2)
            body = self._assert_error(
                complete([{"part_number": 1, "etag": "x"}, second]), 409, "conflict"
            )
            self.assertEqual(body["details"]["missing_parts"], [1])
            first = put(1)
            # an ETag the store does not hold: 422, still open
            body = self._assert_error(
                complete([{**first, "etag": "0" * 32}, second]), 422, "invalid_input"
            )
            self.assertEqual(body["details"]["etag_mismatch"], [1])
            body = self._assert_error(complete([second]), 422, "invalid_input")
            self.assertEqual(body["details"]["etag_mismatch"], [1])
            # now right: registered, whatever the order of the list
            done = complete([second, first])
            self.assertEqual(done.status_code, 202, done.text)
            self.assertEqual(done.json()["artifact"]["size"], len(data))

            # the store lost the upload (aborted behind Odoo's back): 409, and
            # the draft it created is gone
            payload["version"] = "1.0.1"
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            token = answer["upload_id"]
            upload = self.env["mlops.upload"].search([("token", "=", token)])
            backend._get_store().abort_multipart(upload.object_key, upload.s3_upload_id)
            body = self._assert_error(
                complete(
                    [{"part_number": 1, "etag": "x"}, {"part_number": 2, "etag": "y"}]
                ),
                409,
                "conflict",
            )
            self.assertIn("no longer has this upload", body["message"])
            self.env.invalidate_all()
            self.assertEqual(upload.state, "failed")
            self.assertFalse(
                self.env["mlops.model.version"].search([("version", "=", "1.0.1")])
            )

            # an expired upload cannot be completed any more
            payload["version"] = "1.0.2"
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            token = answer["upload_id"]
            self.env["mlops.upload"].search([("token", "=", token)]).expires_at = (
                fields.Datetime.now() - timedelta(minutes=1)
            )
            self._assert_error(
                complete([{"part_number": 1, "etag": "x"}]), 409, "conflict"
            )

    def test_direct_upload_retries_restarts_limits_and_cleanup(self):
        import requests

        with s3_backend(self.env, code="retry", default=True) as backend:
            store = backend._get_store()
            data = artifacts.onnx_bytes()
            payload = {
                "model": "retried-model",
                "version": "1.0.0",
                "filename": "model.onnx",
                "size": len(data),
                "metadata": {"model_format": "onnx"},
            }
            # the store assembled the object but its answer was lost: the
            # client completes again and the upload goes on
            answer = self._call("POST", "/uploads", self.user, json=payload).json()
            put = requests.put(answer["parts"][0]["url"], data=data, timeout=30)
            parts = [{"part_number": 1, "etag": put.headers["ETag"]}]
            upload = self.env["mlops.upload"].search(
                [("token", "=", answer["upload_id"])]
            )
            store.complete_multipart(upload.object_key, upload.s3_upload_id, parts)
            done = self._call(
                "POST",
                f"/uploads/{answer['upload_id']}/complete",
                self.user,
                json={"parts": parts},
            )
            self.assertEqual(done.status_code, 202, done.text)
            self._verify_upload(answer["upload_id"])
            self.assertEqual(
                self.env["mlops.model.version"].browse(done.json()["version_id"]).state,
                "validating",
            )

            # a client that crashed starts the same version again: the old
            # upload is aborted; someone else gets a conflict
            payload["version"] = "1.0.1"
            first = self._call("POST", "/uploads", self.user, json=payload).json()
            self._assert_error(
                self._call("POST", "/uploads", self.manager, json=payload),
                409,
                "conflict",
            )
            again = self._call("POST", "/uploads", self.user, json=payload)
            self.assertEqual(again.status_code, 201, again.text)
            old = self.env["mlops.upload"].search([("token", "=", first["upload_id"])])
            self.assertEqual(old.state, "aborted")
            self._assert_error(
                self._call(
                    "POST",
                    f"/uploads/{first['upload_id']}/complete",
                    self.user,
                    json={"parts": parts},
                ),
                409,
                "conflict",
            )

            # over the configured limit: 422 naming the size (the request
            # itself is small), before anything is created
            self.env["ir.config_parameter"].set_param(
                "creativeflow_mlops.max_direct_upload_gb", "1"
            )
            self._assert_error(
                self._call(
                    "POST",
                    "/uploads",
                    self.user,
                    json={**payload, "version": "1.0.2", "size": 2 * 1024**3},
                ),
                422,
                "invalid_input",
            )
            # no key, no rights
            self._assert_error(
                self._call("POST", "/uploads", json=payload), 401, "unauthorized"
            )
            self._assert_error(
                self._call(
                    "POST", "/uploads", self.outsider, json={**payload, "version": "9"}
                ),
                403,
                "forbidden",
            )

            # the cron cannot reach the store: the upload stays open and is
            # aborted on a later run
            upload = self.env["mlops.upload"].search(
                [("token", "=", again.json()["upload_id"])]
            )
            upload.expires_at = fields.Datetime.now() - timedelta(minutes=1)
            live = backend.endpoint
            backend.endpoint = "127.0.0.1:1"
            with mute_logger("odoo.addons.creativeflow_mlops.models.mlops_upload"):
                self.assertEqual(self.env["mlops.upload"]._cron_abort_expired(), 0)
            self.assertEqual(upload.state, "open")
            backend.endpoint = live
            self.assertEqual(self.env["mlops.upload"]._cron_abort_expired(), 1)
            self.assertEqual(upload.state, "aborted")
            self.assertFalse(
                self.env["mlops.model.version"].search([("version", "=", "1.0.1")])
            )

    def test_store_down_means_503_and_nothing_half_written(self):
        metadata = {"model": "outage-model", "version": "1.0.0", "model_format": "onnx"}
        with s3_backend(self.env, code="outage", default=True) as backend:
            live_endpoint = backend.endpoint
            backend.endpoint = "127.0.0.1:1"
            body = self._assert_error(
                self._upload(self.user, metadata), 503, "backend_unavailable"
            )
            self.assertIn("cannot take the artifact", body["message"])
            self.assertFalse(
                self.env["mlops.model"].search([("name", "=", "outage-model")])
            )
            # the store is back: the same request succeeds
            backend.endpoint = live_endpoint
            response = self._upload(self.user, metadata)
            self.assertEqual(response.status_code, 202, response.text)
            self.assertTrue(response.json()["artifact"]["uri"].startswith("s3://"))

    def test_bucket_policy_refusal_means_503_and_nothing_half_written(self):
        metadata = {"model": "denied-model", "version": "1.0.0", "model_format": "onnx"}
        with s3_backend(self.env, code="denied", default=True) as backend:
            store = backend._get_store()
            statement = {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{backend.bucket}/*"],
            }
            store.client.set_bucket_policy(
                backend.bucket,
                json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
            )
            body = self._assert_error(
                self._upload(self.user, metadata), 503, "backend_unavailable"
            )
            self.assertIn("AccessDenied", body["message"])
            self.assertFalse(
                self.env["mlops.model"].search([("name", "=", "denied-model")])
            )
            self.assertFalse(list(store.client.list_objects(backend.bucket)))
            # the policy is lifted: the same request succeeds
            store.client.delete_bucket_policy(backend.bucket)
            response = self._upload(self.user, metadata)
            self.assertEqual(response.status_code, 202, response.text)

    def test_client_going_away_mid_upload_leaves_nothing(self):
        """The body stops short of its Content-Length after part of the file
        was written to the store: a JSON 400, no model, no file left."""
        import socket
        from urllib.parse import urlsplit

        boundary = "mlopsBoundary"
        metadata = json.dumps(
            {"model": "gone-model", "version": "1.0.0", "model_format": "other"}
        )
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="metadata"\r\n\r\n'
            f"{metadata}\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="w.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + os.urandom(3 * 1024 * 1024)
        url = urlsplit(self.base_url())
        head = (
            f"POST {API}/models/upload HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            f"Authorization: Bearer {self.keys[self.user]}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body) + 5 * 1024 * 1024}\r\n\r\n"
        ).encode()
        with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
            sock.sendall(head + body)
            sock.shutdown(socket.SHUT_WR)  # the client goes away
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        self.assertIn(b" 400 ", status_line)
        payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(payload["error"]["code"], "invalid_request")
        self.assertFalse(self.env["mlops.model"].search([("name", "=", "gone-model")]))
        root = (
            self.env.ref("creativeflow_mlops.storage_backend_local")._get_store().root
        )
        self.assertFalse([p for p in root.rglob("*") if "gone-model" in str(p)])
        self.assertFalse(list(root.rglob(".upload-*")))

    def test_multipart_streaming_through_odoo_and_a_store_killed_midway(self):
        """40 MiB through POST /models/upload: three parts in flight to a real
        S3 server; then the same with the server killed while the body still
        arrives: a 503 JSON answer, no version, no object; a retry succeeds."""
        import requests
        import testservers

        data = os.urandom(40 * 1024 * 1024)
        metadata = {"model": "big-stream", "version": "1.0.0", "model_format": "other"}
        with (
            testservers.SeaweedS3() as server,
            s3_backend(
                self.env, code="dying", endpoint=server.endpoint, default=True
            ) as backend,
        ):
            store = backend._get_store()
            store.ensure_bucket()

            def post(on_progress=None):
                body = _MultipartBody(metadata, data, on_progress)
                return requests.post(
                    f"{self.base_url()}{API}/models/upload",
                    data=body,
                    headers={
                        "Authorization": f"Bearer {self.keys[self.user]}",
                        "Content-Type": body.content_type,
                        "Content-Length": str(len(body)),
                    },
                    timeout=120,
                )

            killed = post(
                on_progress=lambda sent: sent > 24 * 1024 * 1024 and server.stop()
            )
            self.assertEqual(killed.status_code, 503, killed.text)
            self.assertEqual(killed.json()["error"]["code"], "backend_unavailable")
            self.assertFalse(
                self.env["mlops.model"].search([("name", "=", "big-stream")])
            )
            server.start()
            self.assertFalse(
                list(store.client.list_objects(backend.bucket, recursive=True))
            )
            done = post()
            self.assertEqual(done.status_code, 202, done.text)
            artifact = done.json()["artifact"]
            self.assertEqual(artifact["size"], len(data))
            self.assertEqual(artifact["sha256"], hashlib.sha256(data).hexdigest())
            key = artifact["uri"].split("/", 3)[3]
            self.assertEqual(
                store.hash_object(key), (len(data), hashlib.sha256(data).hexdigest())
            )

    def test_direct_upload_refuses_bad_metadata(self):
        # found by schemathesis: metadata that is not an object was a 500
        for metadata in ([None, None], "onnx", 5):
            response = self._call(
                "POST",
                "/uploads",
                self.user,
                json={
                    "model": "m",
                    "version": "1.0.0",
                    "filename": "m.onnx",
                    "size": 10,
                    "metadata": metadata,
                },
            )
            self._assert_error(response, 422, "invalid_input")

    def test_everything_under_the_prefix_answers_in_json(self):
        """Unknown routes, a wrong converter and a wrong method get the
        contract's JSON, never Odoo's HTML pages; 405 says what is allowed."""
        for method, path in (
            ("GET", "/nope"),
            ("GET", "/versions/abc"),
            ("GET", ""),
            # found by test_api_properties: no rule matches them
            ("GET", "/%2F"),
            ("GET", "/0%0A"),
            ("POST", "/models/%0A/x"),
            ("GET", "//"),
            ("DELETE", "/models/%2F"),
        ):
            for user in (self.user, None):
                response = self._call(method, path, user)
                self._assert_error(response, 404, "not_found")
        for method, path, allowed in (
            ("DELETE", "/models", "GET"),
            ("POST", "/models", "GET"),
            ("PUT", "/versions/1/validate", "POST"),
        ):
            response = self._call(method, path, self.user)
            self._assert_error(response, 405, "method_not_allowed")
            self.assertEqual(response.headers["Allow"], allowed)

    def test_query_values_postgresql_refuses_are_a_400(self):
        for path in ("/models?q=%00", "/models?offset=99999999999999999999"):
            self._assert_error(
                self._call("GET", path, self.user), 400, "invalid_request"
            )
        for token in ("%00", "not-a-token", "a" * 33):
            self._assert_error(
                self._call("GET", f"/uploads/{token}", self.user), 404, "not_found"
            )

    def test_search_takes_like_wildcards_literally(self):
        Model = self.env["mlops.model"]
        Model.create({"name": "plain-search"})
        percent = Model.create({"name": "100% search"})
        under = Model.create({"name": "snake_search"})
        slash = Model.create({"name": "back\\slash"})

        def names(query):
            body = self._call("GET", "/models", self.user, params={"q": query}).json()
            return {item["name"] for item in body["items"]}

        self.assertEqual(names("%"), {percent.name})
        self.assertEqual(names("_"), {under.name})
        self.assertEqual(names("\\"), {slash.name})
        self.assertIn("plain-search", names("search"))

    def test_bodies_that_cannot_be_read_change_nothing(self):
        """Deep nesting is a 400 (not Python's recursion crashing into a
        500), another content type a 415, an empty file a 422; nothing is
        kept of any of them."""
        model = self.env["mlops.model"].create({"name": "unreadable-bodies"})
        version = self.env["mlops.model.version"].create(
            {"model_id": model.id, "version": "1.0.0"}
        )
        deep_arrays = "[" * 10_000 + "]" * 10_000
        deep_objects = '{"a":' * 10_000 + "1" + "}" * 10_000
        models = self.env["mlops.model"].search_count([])
        versions = self.env["mlops.model.version"].search_count([])
        for deep in (deep_arrays, deep_objects):
            self._assert_error(self._upload(self.user, deep), 400, "malformed_json")
            for path in ("/uploads", f"/versions/{version.id}/validate"):
                response = self._call(
                    "POST",
                    path,
                    self.manager,
                    data=deep,
                    headers={"Content-Type": "application/json"},
                )
                self._assert_error(response, 400, "malformed_json")
        # curl -d sends a form: refused, not silently read as nothing
        for data in ("{not json", '{"scan_types": ["bogus"]}'):
            response = self._call(
                "POST", f"/versions/{version.id}/validate", self.manager, data=data
            )
            self._assert_error(response, 415, "unsupported_media_type")
        empty = self._upload(
            self.user,
            {"model": "empty-file", "version": "1.0.0", "model_format": "onnx"},
            data=b"",
        )
        body = self._assert_error(empty, 422, "invalid_input")
        self.assertIn("empty", body["message"])
        self.env.invalidate_all()
        self.assertEqual(self.env["mlops.model"].search_count([]), models)
        self.assertEqual(self.env["mlops.model.version"].search_count([]), versions)

    def test_metadata_values_are_checked_field_by_field(self):
        """Wrong types are a 422 naming the field's path, never coerced,
        dropped or a 500; names and descriptions have limits."""
        base = {"model": "typed-metadata", "version": "1.0.0", "model_format": "onnx"}
        cases = {
            "description": {"description": {"a": 1}},
            "lineage.git_commit": {"lineage": {"git_commit": {"sha": "x"}}},
            "lineage.parent_version": {"lineage": {"parent_version": 5}},
            "signature.inputs": {"signature": {"inputs": "abc"}},
            "task_type": {"task_type": "bogus"},
            "model": {"model": "with\x00nul"},
        }
        cases["model "] = {"model": "x" * 10_000}
        cases["description "] = {"description": "d" * (5 * 1024 * 1024)}
        cases["model  "] = {"model": "evil\u202egnp.exe"}
        versions = self.env["mlops.model.version"].search_count([])
        for path, values in cases.items():
            body = self._assert_error(
                self._upload(self.user, {**base, **values}), 422, "invalid_input"
            )
            self.assertIn(path.strip(), body["details"], (path, body))
        self.env.invalidate_all()
        self.assertEqual(self.env["mlops.model.version"].search_count([]), versions)

    def test_model_names_are_normalized_before_they_are_compared(self):
        """Café typed in NFC and in NFD is one model."""
        nfc = self._upload(
            self.user,
            {"model": "Caf\u00e9", "version": "1.0.0", "model_format": "onnx"},
        )
        nfd = self._upload(
            self.user,
            {"model": "Cafe\u0301", "version": "2.0.0", "model_format": "onnx"},
        )
        self.assertEqual(nfc.status_code, 202, nfc.text)
        self.assertEqual(nfd.status_code, 202, nfd.text)
        self.assertEqual(nfc.json()["model_id"], nfd.json()["model_id"])

    def test_platform_metrics_are_prometheus_text_for_readers(self):
        """Prometheus scrapes the addon's own figures with an API key; one
        without MLOps rights gets the JSON 403 every route gives."""
        self.env["mlops.model"].create({"name": "counted"})
        url = f"{self.base_url()}{API}/platform/metrics"
        answer = self.opener.get(
            url, headers={"Authorization": f"Bearer {self.keys[self.user]}"}
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertTrue(answer.headers["Content-Type"].startswith("text/plain"))
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        for name in (
            "mlops_versions",
            "mlops_deployments_live",
            "mlops_deployments_slo_breached",
            "mlops_queue_jobs",
            "mlops_validation_duration_seconds",
            "mlops_deployment_duration_seconds",
        ):
            self.assertIn(name, families)
        refused = self.opener.get(
            url, headers={"Authorization": f"Bearer {self.keys[self.outsider]}"}
        )
        self._assert_error(refused, 403, "forbidden")
