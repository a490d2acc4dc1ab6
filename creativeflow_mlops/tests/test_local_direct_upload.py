# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Direct uploads to the local store (the embedded default): the same
protocol as S3's (POST /uploads, PUT each part to its presigned URL,
complete with the ETags), the parts received by the addon's signed route.
A client (the PWA) uploads the same way whatever the store."""

import hashlib
import http.client
import os
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import USER
from ..models.mlops_upload import MIN_PART
from ..services import upload_parts

API = "/mlops/api/v1"


@tagged("post_install", "-at_install")
class TestLocalDirectUpload(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="local_up_user", groups=USER)
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
        )
        cls.backend = cls.env["mlops.storage.backend"]._get_default()
        cls.secret = cls.env["ir.config_parameter"].sudo().get_param("database.secret")

    def _api(self, method, path, **kwargs):
        return self.opener.request(
            method,
            f"{self.base_url()}{API}{path}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=60,
            **kwargs,
        )

    def _start(self, version, size):
        answer = self._api(
            "POST",
            "/uploads",
            json={
                "model": "local-direct",
                "version": version,
                "filename": "model.onnx",
                "size": size,
                "metadata": {"model_format": "onnx"},
            },
        )
        self.assertEqual(answer.status_code, 201, answer.text)
        return answer.json()

    def _signed(self, store_id, number, expires=None):
        until = int(expires if expires is not None else time.time() + 600)
        signature = upload_parts.signature(self.secret, store_id, number, until)
        return (
            f"{self.base_url()}{upload_parts.PART_PATH}/{store_id}/{number}"
            f"?expires={until}&signature={signature}"
        )

    def test_parts_in_any_order_then_complete_and_verify(self):
        self.assertEqual(self.backend.kind, "local")
        data = os.urandom(MIN_PART + 1000)
        started = self._start("1.0.0", len(data))
        self.assertEqual(
            [p["part_number"] for p in started["parts"]], [1, 2], started["part_size"]
        )
        urls = {p["part_number"]: p["url"] for p in started["parts"]}
        self.assertTrue(
            urls[1].startswith(f"{self.base_url()}{upload_parts.PART_PATH}/")
        )
        size = started["part_size"]
        chunks = {1: data[:size], 2: data[size:]}
        etags = {}
        # the last part first; the first sent wrong, then sent again
        for number, body in ((2, chunks[2]), (1, b"x" * 100), (1, chunks[1])):
            put = requests.put(urls[number], data=body, timeout=60)
            self.assertEqual(put.status_code, 200, put.text)
            self.assertEqual(put.json()["etag"], hashlib.md5(body).hexdigest())
            self.assertEqual(put.headers["ETag"], f'"{put.json()["etag"]}"')
            etags[number] = put.json()["etag"]
        upload = self.env["mlops.upload"].search([("token", "=", started["upload_id"])])
        parts = self.backend._get_store().list_parts(
            upload.object_key, upload.s3_upload_id
        )
        self.assertEqual(
            [(p["part_number"], p["size"]) for p in parts],
            [(1, len(chunks[1])), (2, len(chunks[2]))],
        )
        done = self._api(
            "POST",
            f"/uploads/{started['upload_id']}/complete",
            json={"parts": [{"part_number": n, "etag": e} for n, e in etags.items()]},
        )
        self.assertEqual(done.status_code, 202, done.text)
        self.env.invalidate_all()
        self.assertEqual(upload.state, "verifying")
        upload._verify()
        version = upload.version_id
        self.assertEqual(version.state, "validating")
        self.assertEqual(version.artifact_sha256, hashlib.sha256(data).hexdigest())
        store = self.backend._get_store()
        self.assertEqual(store.hash_object(upload.object_key)[0], len(data))
        # the parts' folder went with the completion
        self.assertFalse(
            (Path(store.root) / ".multipart" / upload.s3_upload_id).exists()
        )
        # a part after the completion changes nothing
        late = requests.put(urls[1], data=chunks[1], timeout=60)
        self.assertEqual(late.status_code, 409, late.text)
        self.assertIn("completed", late.json()["error"]["message"])
        self.assertEqual(store.hash_object(upload.object_key)[0], len(data))

    def test_part_refusals(self):
        started = self._start("2.0.0", 1000)
        url = started["parts"][0]["url"]
        upload = self.env["mlops.upload"].search([("token", "=", started["upload_id"])])
        store_id = upload.s3_upload_id
        query = parse_qs(urlsplit(url).query)
        forged = url.replace(query["signature"][0], "0" * 64)
        for bad, status, code in (
            (forged, 401, "unauthorized"),
            (url.split("?")[0], 401, "unauthorized"),
            # found by schemathesis: a signature that is not ASCII was a 500
            (url.replace(query["signature"][0], "%C3%A9" * 32), 401, "unauthorized"),
            (url.replace(query["expires"][0], "soon"), 401, "unauthorized"),
            (self._signed(store_id, 1, expires=time.time() - 1), 401, "unauthorized"),
            # signed for part 1, used for part 2
            (url.replace(f"/{store_id}/1?", f"/{store_id}/2?"), 401, "unauthorized"),
            (self._signed(store_id, 2), 404, "not_found"),
            (self._signed("f" * 32, 1), 404, "not_found"),
        ):
            answer = requests.put(bad, data=b"x" * 10, timeout=30)
            self.assertEqual(answer.status_code, status, (bad, answer.text))
            self.assertEqual(answer.json()["error"]["code"], code)
        # more than a part: refused before it is read
        answer = requests.put(url, data=b"x" * (started["part_size"] + 1), timeout=30)
        self.assertEqual(answer.status_code, 413, answer.text)
        # no length: 411
        split = urlsplit(url)
        connection = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        connection.request(
            "PUT",
            f"{split.path}?{split.query}",
            body=iter([b"abc"]),
            encode_chunked=True,
        )
        self.assertEqual(connection.getresponse().status, 411)
        connection.close()
        self.assertEqual(
            self.backend._get_store().list_parts(upload.object_key, store_id), []
        )
        # an expired upload takes no part
        upload.expires_at = fields.Datetime.now() - timedelta(minutes=1)
        upload.flush_recordset()
        answer = requests.put(url, data=b"x" * 10, timeout=30)
        self.assertEqual(answer.status_code, 409, answer.text)
        # an aborted one neither: its store upload is gone
        upload.expires_at = fields.Datetime.now() + timedelta(hours=1)
        upload.action_abort()
        upload.flush_recordset()
        answer = requests.put(url, data=b"x" * 10, timeout=30)
        self.assertEqual(answer.status_code, 409, answer.text)
