# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import os
import uuid
from contextlib import contextmanager
from unittest import SkipTest


@contextmanager
def s3_backend(
    env, code="test_s3", bucket=None, endpoint=None, secret=None, default=False
):
    """An S3 backend on the SeaweedFS server that the test run started;
    ``default``: the one new artifacts go to, instead of the local store."""
    server = os.environ.get("MLOPS_TEST_S3_ENDPOINT")
    if not server:
        raise SkipTest("no test S3 server (MLOPS_TEST_S3_ENDPOINT)")
    names = [
        f"MLOPS_STORAGE_{code.upper()}_ACCESS_KEY",
        f"MLOPS_STORAGE_{code.upper()}_SECRET_KEY",
    ]
    saved = {name: os.environ.get(name) for name in names}
    os.environ[names[0]] = os.environ["MLOPS_TEST_S3_ACCESS_KEY"]
    os.environ[names[1]] = secret or os.environ["MLOPS_TEST_S3_SECRET_KEY"]
    backend = (
        env["mlops.storage.backend"]
        .sudo()
        .create(
            {
                "name": f"Test S3 {code}",
                "code": code,
                "kind": "s3",
                "endpoint": endpoint or server,
                "bucket": bucket or f"t-{uuid.uuid4().hex[:12]}",
                "secure": False,
            }
        )
    )
    if not secret and not endpoint:
        backend._get_store().ensure_bucket()
    if default:
        env.ref("creativeflow_mlops.storage_backend_local").sudo().is_default = False
        backend.is_default = True
    try:
        yield backend
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
