"""The two README commands, run as a newcomer runs them."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import devstack
import pytest
from devstack import REPO


def _post_json(url, payload, cookie=None):
    request = urllib.request.Request(
        url,
        data=json.dumps(
            {"jsonrpc": "2.0", "method": "call", "params": payload}
        ).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Cookie": cookie} if cookie else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
        return body, response.headers.get("Set-Cookie")


def test_missing_odoo_is_explained(tmp_path):
    """A Python without Odoo gets a clear message and exit code 3."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    for command in ("bin/test", "bin/serve"):
        result = subprocess.run(
            [REPO / command],
            env=dict(os.environ, PYTHON=str(venv / "bin" / "python")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 3, result.stderr
        assert "Odoo 18 is not installed" in result.stderr
        assert "docker compose up" in result.stderr
        assert "bin/install-odoo ../odoo" in result.stderr


def test_postgres_role_is_refused():
    with pytest.raises(devstack.SetupError, match="refuses the postgres role"):
        os.environ["MLOPS_DB_USER"] = "postgres"
        try:
            devstack.database_settings()
        finally:
            del os.environ["MLOPS_DB_USER"]


def test_serve_runs_odoo_with_the_addon(tmp_path, free_port):
    """bin/serve creates its database on first use and serves the addon on
    127.0.0.1 with the admin credentials of the README."""
    dbname = f"mlops_serve_{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        MLOPS_DB_NAME=dbname,
        MLOPS_HTTP_PORT=str(free_port),
        MLOPS_STATE_DIR=str(tmp_path),
    )
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [REPO / "bin" / "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/web/login", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "Odoo did not answer in 240 s"
            time.sleep(1)

        body, cookie = _post_json(
            f"{base}/web/session/authenticate",
            {"db": dbname, "login": "admin", "password": "admin"},
        )
        assert body["result"]["uid"], body
        session = cookie.split(";")[0]

        def call(model, method, args, kwargs=None):
            body, _ = _post_json(
                f"{base}/web/dataset/call_kw",
                {
                    "model": model,
                    "method": method,
                    "args": args,
                    "kwargs": kwargs or {},
                },
                cookie=session,
            )
            assert "error" not in body, body
            return body["result"]

        modules = call(
            "ir.module.module",
            "search_read",
            [[("name", "=", "creativeflow_mlops")]],
            {"fields": ["state"]},
        )
        assert modules == [{"id": modules[0]["id"], "state": "installed"}]
        model_id = call("mlops.model", "create", [{"name": "smoke"}])
        version_id = call(
            "mlops.model.version",
            "create",
            [{"model_id": model_id, "version": "0.1.0"}],
        )
        # the state is the platform's: RPC cannot write it
        body, _ = _post_json(
            f"{base}/web/dataset/call_kw",
            {
                "model": "mlops.model.version",
                "method": "write",
                "args": [[version_id], {"state": "production"}],
                "kwargs": {},
            },
            cookie=session,
        )
        assert "set by the platform" in body["error"]["data"]["message"]
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        devstack.drop_database(devstack.database_settings(), dbname)
