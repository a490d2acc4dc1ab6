# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import io
import socket
from datetime import timedelta

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import mute_logger

from ..exceptions import Conflict
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
        s3 = {"name": "x", "code": "s3x", "kind": "s3", "bucket": "b"}
        for endpoint in ("http://minio:9000", "minio:9000/path", "a b"):
            with self.assertRaises(ValidationError):
                Backend.create({**s3, "endpoint": endpoint})
        for endpoint in ("minio:9000", "s3.eu-west-1.amazonaws.com", "[::1]:9000"):
            Backend.create({**s3, "endpoint": endpoint}).unlink()
        # a prefix is a folder below the store's root, never a way out of it
        for prefix in ("/", "/etc", "../x", "a/../../b", "a//b", "a b"):
            with self.assertRaises(ValidationError):
                Backend.create({"name": "x", "code": "pre", "prefix": prefix})
        Backend.create({"name": "x", "code": "pre", "prefix": "tenant-a/models/"})

    def test_only_managers_test_connections(self):
        backend = self.env.ref("creativeflow_mlops.storage_backend_local")
        with self.assertRaises(AccessError):
            backend.with_user(self.uploader).action_test_connection()
        no_keys = self.env["mlops.storage.backend"].create(
            {
                "name": "k",
                "code": "nokeys2",
                "kind": "s3",
                "endpoint": "x:1",
                "bucket": "b",
            }
        )
        result = no_keys.with_user(self.manager).action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn("no credentials", result["params"]["message"])

    def test_local_store_keeps_artifacts_per_database(self):
        backend = self.env.ref("creativeflow_mlops.storage_backend_local")
        stored = backend._get_store().put_stream("models/a/1/x.bin", io.BytesIO(b"abc"))
        self.assertEqual(stored.size, 3)
        self.assertIn(self.env.cr.dbname, backend._local_root())

    def test_stale_multipart_uploads_are_swept(self):
        """Uploads left unfinished in the bucket (a clean-up that found the
        store down) are aborted once stale; tracked uploads and keys outside
        the platform's models/ are left alone."""
        with s3_backend(self.env, code="sweep") as backend:
            store = backend._get_store()
            orphan = store.create_multipart("models/m/1.0/orphan.bin")
            foreign = store.create_multipart("someone-else/file.bin")
            tracked_id = store.create_multipart("models/m/2.0/direct.bin")
            version = self._new_version(version="2.0.0")
            self.env["mlops.upload"].create(
                {
                    "version_id": version.id,
                    "storage_backend_id": backend.id,
                    "object_key": "models/m/2.0/direct.bin",
                    "s3_upload_id": tracked_id,
                    "expires_at": "2999-01-01 00:00:00",
                }
            )
            # not stale yet
            self.assertEqual(
                backend._abort_stale_multipart_uploads(timedelta(hours=1)), 0
            )
            self.assertEqual(backend._abort_stale_multipart_uploads(timedelta(0)), 1)
            left = {u["upload_id"] for u in store.list_multipart_uploads("")}
            self.assertNotIn(orphan, left)
            self.assertEqual(left, {foreign, tracked_id})
            # the cron sweeps every S3 backend and survives one that is down
            # (the upload made just now is not stale)
            store.create_multipart("models/m/1.0/another.bin")
            self.env["mlops.storage.backend"].create(
                {
                    "name": "dead",
                    "code": "dead_sweep",
                    "kind": "s3",
                    "endpoint": "127.0.0.1:1",
                    "bucket": "b",
                }
            )
            with mute_logger("odoo.addons.creativeflow_mlops.models.mlops_upload"):
                self.env["mlops.upload"]._cron_abort_expired()
            left = {u["key"] for u in store.list_multipart_uploads("models/")}
            self.assertEqual(
                left, {"models/m/2.0/direct.bin", "models/m/1.0/another.bin"}
            )

    def test_managers_abort_or_requeue_direct_uploads(self):
        with s3_backend(self.env, code="ops") as backend:
            store = backend._get_store()
            key = "models/m/3.0/w.bin"
            version = self._new_version(version="3.0.0")
            upload = self.env["mlops.upload"].create(
                {
                    "version_id": version.id,
                    "storage_backend_id": backend.id,
                    "object_key": key,
                    "s3_upload_id": store.create_multipart(key),
                    "expires_at": "2999-01-01 00:00:00",
                }
            )
            with self.assertRaises(AccessError):
                upload.with_user(self.uploader).read(["state"])
            with self.assertRaises(Conflict):
                upload.with_user(self.manager).action_verify_again()
            upload.with_user(self.manager).action_abort()
            self.assertEqual(upload.state, "aborted")
            self.assertIn(self.manager.name, upload.message)
            self.assertFalse(version.exists())
            self.assertEqual(store.list_multipart_uploads("models/"), [])
            with self.assertRaises(Conflict):
                upload.with_user(self.manager).action_abort()
