"""The ``local`` kind, the embedded default: model servers on this machine
(``adapters.processes``) behind the HAProxy router (``adapters.router``),
a watchdog bringing either back within a second. Plain Python: no Odoo.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from .processes import (
    LocalRuntime,
    ProcessError,
    ProcessSpec,
    free_port,
    process_alive,
    spawn_detached,
)
from .router import Backend, HAProxyRouter, Route, RouterError
from .targets import (
    Capabilities,
    Observed,
    Reconciliation,
    ServeStatus,
    Target,
    TargetFailed,
    parse_metrics,
    register,
    route_url_under,
)

WATCHDOG = Path(__file__).resolve().parent.parent / "model_server" / "watchdog.py"


@register
class LocalTarget(Target):
    """Model servers on this machine behind the HAProxy router."""

    kind = "local"
    label = "Local Runtime"

    @dataclass
    class Options:
        router_port: int = field(
            default=8090,
            metadata={"type": int, "help": "a port between 1024 and 65535"},
        )
        public_url: str = field(
            default="",
            metadata={
                "type": str,
                "help": "the invoke URLs' base as clients reach the router "
                "(http(s)://...), or empty",
            },
        )

    @classmethod
    def default_options(cls, context):
        port = (context.config if context else {}).get("router_port")
        return {"router_port": int(port)} if port else {}

    @classmethod
    def check_options(cls, options):
        problems = {}
        if not 1024 <= options.router_port <= 65535:
            problems["router_port"] = "a port between 1024 and 65535"
        if options.public_url and not options.public_url.startswith(
            ("http://", "https://")
        ):
            problems["public_url"] = "an http(s) URL"
        return problems

    @classmethod
    def capabilities(cls, options):
        return Capabilities(
            formats=("onnx",),
            traffic_step=1,
            analysis=True,
            max_replicas=1,
            # cpu: the model server's threads
            resources=frozenset({"cpu"}),
            resource_refusals={
                "gpu": "the local runtime runs models on the CPU",
                "memory": "the local runtime does not cap memory",
            },
            restarts=True,
            logs=True,
            inference_log=True,
        )

    @classmethod
    def build(cls, context, options, secrets):
        return cls(
            context.root,
            options.router_port,
            public_url=options.public_url or None,
            router_host=context.config.get("router_host") or None,
        )

    def __init__(
        self,
        root,
        router_port,
        host="127.0.0.1",
        public_url=None,
        router_host=None,
        watchdog=True,
    ):
        self.root = Path(root)
        self.watchdog = watchdog
        # model servers listen on the loopback only; the router where
        # clients reach it (0.0.0.0 in a container)
        self.runtime = LocalRuntime(self.root / "runtime", host=host)
        self.router = HAProxyRouter(
            self.root / "router", router_port, host=router_host or host
        )
        self.public_url = (public_url or self.router.base_url).rstrip("/")

    @staticmethod
    def threads(plan):
        """The model server's threads: the CPUs its plan asks for, rounded
        up ("500m" is one, "2.5" three), one when none, at most this
        machine's."""
        cpu = plan.resources.get("cpu")
        if not cpu:
            return 1
        amount = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        return max(1, min(math.ceil(amount), os.cpu_count() or 1))

    def artifact_path(self, plan):
        """Where the colour's copy of its artifact lies on this machine."""
        return str(self.root / "artifacts" / plan.key / plan.artifact_filename)

    def _spec(self, plan, port):
        return ProcessSpec(
            key=plan.key,
            model_path=self.artifact_path(plan),
            name=plan.model_name,
            version=plan.version,
            port=port,
            # invoke keys are always needed: no file, nobody gets in
            keys_file=self.keys_file(plan.route),
            threads=self.threads(plan),
            log_dir=str(self.log_folder(plan.key)),
            log_rate=plan.log_rate,
            log_personal=tuple(plan.personal_fields),
        )

    def log_folder(self, key):
        """Where the colour's model server spools its inference log."""
        return self.root / "inference-log" / key

    def render(self, plan):
        return {"kind": self.kind, "process": asdict(self._spec(plan, 0))}

    def fetch_artifact(self, plan, opener):
        """A copy of the artifact beside the runtime, for the model server."""
        with opener() as source:
            return self._copy_artifact(plan, source)

    def _copy_artifact(self, plan, source):
        destination = self.artifact_path(plan)
        folder = os.path.dirname(destination)
        os.makedirs(folder, exist_ok=True)
        try:
            shutil.copyfile(source, destination)
        except OSError as error:
            # nothing half-written stays behind
            with contextlib.suppress(OSError):
                os.unlink(destination)
            if error.errno == errno.ENOSPC:
                raise TargetFailed(
                    f"the local target's disk is full: {os.path.getsize(source)} "
                    f"bytes to write, {shutil.disk_usage(folder).free} free"
                ) from None
            raise TargetFailed(
                f"the artifact cannot be written on the local target: {error.strerror}"
            ) from None
        return (
            f"fetched {os.path.basename(destination)} "
            f"({os.path.getsize(destination)} bytes, SHA-256 {plan.artifact_sha256})"
        )

    def apply(self, plan):
        """The model server starts within seconds: apply waits for it."""
        self.ensure_watchdog()
        handle = self.runtime.find(plan.key)
        if handle:
            return ServeStatus(True, f"already serving on port {handle.port}")
        try:
            handle = self.runtime.start(self._spec(plan, free_port()))
        except ProcessError as error:
            raise TargetFailed(str(error)) from error
        return ServeStatus(
            True, f"serving on port {handle.port}", details={"pid": handle.pid}
        )

    def verify(self, plan):
        handle = self.runtime.find(plan.key)
        log = self.runtime.log_tail(plan.key)
        # apply waited for it: one that is not up now will not come up
        if not handle:
            return ServeStatus(
                False, "the model server is not running", log, failed=True
            )
        if not self.runtime.ready(handle):
            return ServeStatus(
                False, "the model server does not answer", log, failed=True
            )
        return ServeStatus(
            True, f"ready on port {handle.port}", log, {"pid": handle.pid}
        )

    def log_tail(self, plan):
        return self.runtime.log_tail(plan.key)

    def logged_files(self):
        root = self.root / "inference-log"
        found = {}
        if not root.is_dir():
            return found
        for folder in sorted(root.iterdir()):
            names = sorted(p.name for p in folder.glob("*.jsonl"))
            if names:
                found[folder.name] = [
                    (name[: -len(".jsonl")], str(folder / name)) for name in names
                ]
            elif not self.runtime.find(folder.name):
                # a stopped colour whose last file was collected
                shutil.rmtree(folder, ignore_errors=True)
        return found

    def forget_logged(self, key, name):
        with contextlib.suppress(FileNotFoundError):
            (self.log_folder(key) / f"{name}.jsonl").unlink()

    def switch_traffic(self, routes):
        self.ensure_watchdog()
        table = []
        for name, shares in sorted(routes.items()):
            backends = []
            for key, percent in shares:
                # a server that died a moment ago keeps its place: the
                # watchdog starts it again on the same port, and a route
                # dropped now would stay dropped once it is back
                port = self.runtime.port_of(key)
                if port and percent > 0:
                    backends.append(Backend(port, int(percent), key))
            table.append(Route(name, backends))
        try:
            self.router.apply(table)
        except RouterError as error:
            raise TargetFailed(str(error)) from error

    def delete(self, plan):
        self.runtime.stop(plan.key)

    def route_url(self, route):
        return route_url_under(self.public_url, route)

    def reading(self, plan):
        handle = self.runtime.find(plan.key)
        if not handle:
            raise TargetFailed("the model server is not running")
        try:
            answer = requests.get(
                f"http://127.0.0.1:{handle.port}/metrics",
                headers={"Authorization": f"Bearer {self.platform_key()}"},
                timeout=5,
            )
            answer.raise_for_status()
        except requests.RequestException as error:
            raise TargetFailed(f"its metrics cannot be read: {error}") from error
        return parse_metrics(answer.text)

    def reconcile(self, plans):
        """Which colours run; what runs that no plan names (with when it
        started); whether the router must be given its table again. The
        watchdog is started when colours should run (it brings a killed
        process back within a second; this brings the watchdog back)."""
        running = self.runtime.running()
        result = Reconciliation(
            observed={
                plan.key: Observed("in_sync")
                if plan.key in running
                else Observed("missing", "the model server is not running")
                for plan in plans
            },
            strays={
                key: handle.started_at
                for key, handle in running.items()
                if key not in {plan.key for plan in plans}
            },
            republish=bool(plans) and not self.router.running(),
        )
        if plans:
            self.ensure_watchdog()
        return result

    def remove_stray(self, key):
        self.runtime.stop(key)

    def ensure_watchdog(self):
        """Start the target's watchdog (model_server/watchdog.py: a killed router
        or model server back within a second) unless one runs; True if one
        was started."""
        if not self.watchdog:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "watchdog.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # it runs
            fcntl.flock(lock, fcntl.LOCK_UN)
        command = [
            sys.executable,
            str(WATCHDOG),
            "--target",
            str(self.root),
            "--router-port",
            str(self.router.port),
        ]
        if self.router.host:
            command += ["--router-host", self.router.host]
        process = spawn_detached(command, self.root / "watchdog.log")
        (self.root / "watchdog.pid").write_text(str(process.pid))
        return True

    def stop_watchdog(self):
        """Stop the target's watchdog (tests, and a target put away)."""
        try:
            pid = int((self.root / "watchdog.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        if str(WATCHDOG).encode() not in cmdline:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def keys_file(self, route):
        return str(self.root / "keys" / f"{route}.json")

    def platform_key(self):
        """The key with which Odoo reads the model servers' ``/metrics``
        (no invoke key is kept in clear): made once, readable by this
        machine's Odoo user only; the keys files carry its SHA-256."""
        path = self.root / "keys" / "platform.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # written whole (mode 600), then linked: of two workers making
            # it at once, the first link wins and both read that one
            with tempfile.NamedTemporaryFile(
                "w", dir=path.parent, prefix=".platform.", delete=False
            ) as partial:
                partial.write(secrets.token_urlsafe(32))
            try:
                with contextlib.suppress(FileExistsError):
                    os.link(partial.name, path)
            finally:
                os.unlink(partial.name)
        return path.read_text().strip()

    def publish_keys(self, route, allowed, elsewhere):
        """Written whole then renamed: a server never reads half a file. The
        temporary file is the writer's own, so two pipelines publishing at
        once each rename a whole file (the last one wins)."""
        path = Path(self.keys_file(route))
        platform = hashlib.sha256(self.platform_key().encode()).hexdigest()
        text = json.dumps(
            {"keys": allowed, "elsewhere": sorted(elsewhere), "platform": platform},
            sort_keys=True,
        )
        if path.exists() and path.read_text() == text:
            return  # unchanged: the servers need not read it again
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{route}.", suffix=".tmp", delete=False
        ) as partial:
            partial.write(text)
        try:
            os.replace(partial.name, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(partial.name)
            raise

    def check(self):
        return {
            "runtime": f"{len(self.runtime.running())} model servers",
            "router": "running" if self.router.running() else "not started yet",
            "url": self.public_url,
        }
