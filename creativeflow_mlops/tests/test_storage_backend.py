# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import io
import socket

from odoo.exceptions import UserError, ValidationError

from .common import MlopsCase
from .common_storage import s3_backend


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestStorageBackend(MlopsCase):
    def test_local_backend_is_the_embedded_default(self):
        backend = self.env["mlops.storage.backend"]._get_default()
        self.assertEqual(
            backend, self.env.ref("creativeflow_mlops.storage_backend_local")
        )
        self.assertEqual(backend.kind, "local")
        result = backend.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        version = self._new_version()
        self.assertEqual(version.storage_backend_id, backend)

    def test_s3_connection_and_secrets_from_the_environment(self):
        with s3_backend(self.env) as backend:
            self.assertTrue(backend.has_credentials)
            self.assertEqual(
                backend.credentials_help,
                "MLOPS_STORAGE_TEST_S3_ACCESS_KEY / MLOPS_STORAGE_TEST_S3_SECRET_KEY",
            )
            self.assertEqual(
                backend.action_test_connection()["params"]["type"], "success"
            )
            stored = backend._get_store().put_bytes("probe.txt", b"hello")
            self.assertTrue(stored.uri.startswith(f"s3://{backend.bucket}/"))
            # the record holds no secret
            values = backend.read()[0]
            self.assertNotIn("mlops-test-secret-key", str(values))

    def test_wrong_secret_and_unreachable_server_are_reported(self):
        with s3_backend(self.env, code="bad_secret", secret="wrong-secret") as backend:
            result = backend.action_test_connection()
            self.assertEqual(result["params"]["type"], "danger")
            self.assertIn("SignatureDoesNotMatch", result["params"]["message"])
        with s3_backend(
            self.env, code="gone", endpoint=f"127.0.0.1:{_closed_port()}"
        ) as backend:
            result = backend.action_test_connection()
            self.assertEqual(result["params"]["type"], "danger")
            self.assertIn("unreachable", result["params"]["message"])

    def test_missing_credentials_are_explained(self):
        backend = self.env["mlops.storage.backend"].create(
            {
                "name": "No keys",
                "code": "nokeys",
                "kind": "s3",
                "endpoint": "x:9000",
                "bucket": "b",
            }
        )
        with self.assertRaisesRegex(UserError, "MLOPS_STORAGE_NOKEYS_ACCESS_KEY"):
            backend._get_store()

    def test_backend_settings_are_checked(self):
        Backend = self.env["mlops.storage.backend"]
        with self.assertRaises(ValidationError):
            Backend.create({"name": "x", "code": "Bad Code"})
        with self.assertRaises(ValidationError):
            Backend.create({"name": "x", "code": "s3_incomplete", "kind": "s3"})
        with self.assertRaises(ValidationError):
            Backend.create({"name": "x", "code": "second", "is_default": True})

    def test_local_store_keeps_artifacts_per_database(self):
        backend = self.env.ref("creativeflow_mlops.storage_backend_local")
        stored = backend._get_store().put_stream("models/a/1/x.bin", io.BytesIO(b"abc"))
        self.assertEqual(stored.size, 3)
        self.assertIn(self.env.cr.dbname, backend._local_root())
