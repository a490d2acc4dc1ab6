"""The product as users run it, for the system tests and the benchmarks.

An Odoo server process started the way ``bin/serve`` starts it (the same
generated configuration, queue_job's runner with its channels), on a
database of its own copied from a template, and the clients that drive it
from outside only: the web session's JSON-RPC (what the browser does),
API keys made through it, and the REST API. Nothing here imports Odoo.
"""

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import devstack
import requests

REPO = Path(__file__).resolve().parent.parent


class RpcError(RuntimeError):
    def __init__(self, error):
        data = error.get("data") or {}
        super().__init__(data.get("message") or error.get("message"))
        self.name = data.get("name")
        self.error = error


class OdooServer:
    """``OdooServer(db_settings, dbname, ...).start()``: an Odoo process on
    127.0.0.1 with the addon, queue_job's runner running ``channels``;
    ``workers`` > 0 is prefork mode. ``kill()`` is SIGKILL on the whole
    process group (workers, runner, scan children), ``start()`` again
    brings it back on the same port and database."""

    def __init__(
        self,
        db_settings,
        dbname,
        state_dir,
        workers=0,
        channels="root:2",
        env=None,
        name="system",
    ):
        self.db_settings = db_settings
        self.dbname = dbname
        self.state_dir = Path(state_dir)
        self.workers = workers
        self.channels = channels
        self.env = dict(os.environ, **(env or {}))
        self.name = name
        self.port = devstack.free_port()
        self.process = None
        self.log_path = self.state_dir / f"{name}.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def config(self):
        odoo = devstack.find_odoo()
        extra = {
            "server_wide_modules": "base,web,queue_job",
            "workers": self.workers,
            "max_cron_threads": 1,
            "log_level": "info",
            "limit_time_real": 600,
            "limit_time_cpu": 600,
            "limit_memory_soft": 4 * 1024**3,
            "limit_memory_hard": 6 * 1024**3,
        }
        return devstack.write_config(
            odoo,
            self.db_settings,
            self.name,
            self.port,
            channels=self.channels,
            state=self.state_dir,
            **extra,
        )

    def start(self, timeout=180):
        config = self.config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            devstack.odoo_command(
                config,
                "-d",
                self.dbname,  # no --db-filter: see devstack.cmd_serve
            ),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Odoo exited: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/web/health", timeout=5).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"Odoo did not answer in {timeout} s: {self.log_tail()}")

    def kill(self):
        """SIGKILL, as a crash or the OOM killer would."""
        self._signal(signal.SIGKILL)

    def stop(self):
        self._signal(signal.SIGTERM)

    def _signal(self, signum):
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
            except ProcessLookupError:
                pass
        self.process = None

    def log_tail(self, size=4000):
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def errors(self):
        """The tracebacks the server logged."""
        text = self.log_path.read_text(errors="replace")
        return [
            block
            for block in text.split("\n20")
            if "Traceback (most recent call last)" in block
        ]


class WebSession:
    """The JSON-RPC a browser speaks to Odoo, with its session cookie."""

    def __init__(self, url, dbname, login, password):
        self.url = url
        self.http = requests.Session()
        result = self._post(
            "/web/session/authenticate",
            {"db": dbname, "login": login, "password": password},
        )
        self.uid = result["uid"]
        self.password = password

    def _post(self, path, params):
        response = self.http.post(
            f"{self.url}{path}",
            json={"jsonrpc": "2.0", "method": "call", "params": params},
            timeout=120,
        )
        response.raise_for_status()
        body = response.json()
        if "error" in body:
            raise RpcError(body["error"])
        return body["result"]

    def call(self, model, method, *args, **kwargs):
        return self._post(
            "/web/dataset/call_kw",
            {"model": model, "method": method, "args": list(args), "kwargs": kwargs},
        )

    def button(self, model, method, ids, context=None):
        return self._post(
            "/web/dataset/call_button",
            {
                "model": model,
                "method": method,
                "args": [ids],
                "kwargs": {"context": context or {}},
            },
        )

    def make_api_key(self, name="system tests"):
        """An API key, as Preferences → Account Security makes it: the
        key's description, then the password check Odoo asks for."""
        wizard = self.call("res.users.apikeys.description", "create", {"name": name})
        action = self.button("res.users.apikeys.description", "make_key", [wizard])
        if action.get("res_model") == "res.users.identitycheck":
            check = action["res_id"]
            self.call(
                "res.users.identitycheck", "write", [check], {"password": self.password}
            )
            action = self.button("res.users.identitycheck", "run_check", [check])
        return action["context"]["default_key"]


class RestClient:
    """``/mlops/api/v1`` with a bearer API key."""

    def __init__(self, url, key):
        self.base = f"{url}/mlops/api/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def upload(self, model, version, data, filename="model.onnx", **metadata):
        meta = {"model": model, "version": version, "model_format": "onnx", **metadata}
        return self.http.post(
            f"{self.base}/models/upload",
            files=[
                ("metadata", (None, json.dumps(meta), "application/json")),
                ("file", (filename, data, "application/octet-stream")),
            ],
            timeout=300,
        )

    def get(self, path, **params):
        return self.http.get(f"{self.base}{path}", params=params, timeout=60)

    def post(self, path, payload=None):
        return self.http.post(f"{self.base}{path}", json=payload or {}, timeout=60)

    def wait_settled(self, version_ids, timeout=300, settled=None):
        """{version_id: state} once none of them is ``validating`` (or
        draft) any more; raises with the states when time runs out."""
        settled = settled or {"validated", "validation_failed"}
        states = {}
        deadline = time.monotonic() + timeout
        pending = set(version_ids)
        while pending:
            for version_id in sorted(pending):
                response = self.get(f"/versions/{version_id}")
                if response.status_code == 200:
                    states[version_id] = response.json()["state"]
                    if states[version_id] in settled:
                        pending.discard(version_id)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not settled after {timeout} s: "
                    f"{ {v: states.get(v) for v in pending} }"
                )
            time.sleep(1)
        return states


def wait_for(what, timeout=180, every=0.3):
    """``what()``'s first truthy value, or ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing after {timeout} s")
        time.sleep(every)


def new_database(db_settings, template, data_dir, prefix="mlops_sys"):
    """A fresh copy of the template database (and its filestore)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    devstack.duplicate_database(db_settings, template, name, data_dir)
    return name


def stop_runtime(data_dir):
    """Stop the model servers and routers a test Odoo left under its data
    directory (they run in sessions of their own)."""
    root = Path(data_dir) / "mlops_runtime"
    if not root.exists():
        return
    # the watchdogs first, or they would start again what is stopped next
    for pid_file in root.rglob("watchdog.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            continue
    pids = []
    for state in root.rglob("runtime/*.json"):
        try:
            pids.append(json.loads(state.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    for pid_file in root.rglob("haproxy.pid"):
        try:
            pids.append(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
