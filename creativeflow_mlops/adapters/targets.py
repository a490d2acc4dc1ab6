"""Deployment targets: where a deployment colour runs. One interface,
``Target``, that every kind implements (the embedded ``local`` kind here;
``kubernetes`` and ``gitops`` plug in beside it by registering in
``TARGET_KINDS``), so models and controllers never know which one runs.

- ``render(plan)``: what ``apply`` would create, as data (for the log and
  the form; a Kubernetes target returns its manifests);
- ``apply(plan)``: bring the colour up and wait until it is ready, or
  raise ``TargetFailed`` with the reason;
- ``status(plan)``: is it up, its message, its log's tail;
- ``switch_traffic(routes)``: the whole routing table of the target at
  once, {route: [(colour key, percent)...]}: what a router applies
  atomically;
- ``delete(plan)``: take the colour down (in-flight requests finish);
- ``route_url(route)``: the stable base URL of a route (OIP paths below);
- ``publish_keys(route, allowed, elsewhere)``: the invoke keys a route
  takes ({SHA-256: expiry or None}) and the known keys it refuses with a
  403; in effect within seconds, without a restart;
- ``metrics(plan)``: the colour's own counters (``requests`` by status,
  the latency histogram's cumulative ``buckets``), for analysis gates;
- ``check()``: a dict to show, for *Test Connection*.

Plain Python: no Odoo.
"""

import abc
import contextlib
import fcntl
import hashlib
import json
import math
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from .processes import (
    LocalRuntime,
    ProcessError,
    ProcessSpec,
    free_port,
    process_alive,
    spawn_detached,
)
from .router import Backend, HAProxyRouter, Route, RouterError, route_path

WATCHDOG = Path(__file__).resolve().parent.parent / "model_server" / "watchdog.py"

# the formats a kind can serve, to refuse the others at approval
# (an external pipeline builds the image of any format)
SERVABLE = {
    "local": ("onnx",),
    "external": (
        "onnx",
        "tensorflow_savedmodel",
        "pytorch_torchscript",
        "safetensors",
        "pickle",
        "custom_python_container",
        "other",
    ),
}


class TargetFailed(Exception):
    """A colour could not come up, or traffic could not move."""


@dataclass
class ServePlan:
    key: str  # the colour: unique per deployment, safe as a name
    route: str  # the model and environment: unique per company
    model_name: str
    version: str
    artifact_path: str
    replicas: int = 1
    resources: dict = field(default_factory=dict)


@dataclass
class ServeStatus:
    ready: bool
    message: str = ""
    log: str = ""
    details: dict = field(default_factory=dict)


class Target(abc.ABC):
    kind = None

    @abc.abstractmethod
    def render(self, plan): ...

    @abc.abstractmethod
    def apply(self, plan): ...

    @abc.abstractmethod
    def status(self, plan): ...

    @abc.abstractmethod
    def switch_traffic(self, routes): ...

    @abc.abstractmethod
    def delete(self, plan): ...

    @abc.abstractmethod
    def route_url(self, route): ...

    @abc.abstractmethod
    def publish_keys(self, route, allowed, elsewhere): ...

    @abc.abstractmethod
    def metrics(self, plan): ...

    @abc.abstractmethod
    def check(self): ...


class LocalTarget(Target):
    """Model servers on this machine (adapters.processes), behind the HAProxy
    router (adapters.router)."""

    kind = "local"

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

    def _spec(self, plan, port):
        return ProcessSpec(
            key=plan.key,
            model_path=plan.artifact_path,
            name=plan.model_name,
            version=plan.version,
            port=port,
            # invoke keys are always needed: no file, nobody gets in
            keys_file=self.keys_file(plan.route),
            threads=self.threads(plan),
        )

    def render(self, plan):
        return {"kind": self.kind, "process": asdict(self._spec(plan, 0))}

    def apply(self, plan):
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

    def status(self, plan):
        handle = self.runtime.find(plan.key)
        log = self.runtime.log_tail(plan.key)
        if not handle:
            return ServeStatus(False, "the model server is not running", log)
        if not self.runtime.ready(handle):
            return ServeStatus(False, "the model server does not answer", log)
        return ServeStatus(
            True, f"ready on port {handle.port}", log, {"pid": handle.pid}
        )

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
        return f"{self.public_url}{route_path(route)}"

    def metrics(self, plan):
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

    def running(self):
        return self.runtime.running()

    def check(self):
        return {
            "runtime": f"{len(self.runtime.running())} model servers",
            "router": "running" if self.router.running() else "not started yet",
            "url": self.public_url,
        }


def parse_metrics(text):
    """The runtime's Prometheus text as {"requests": {status: n},
    "buckets": [[upper bound, cumulative n]...], "count": n}: finite bounds
    only (JSON has no infinity; ``count`` is the +Inf bucket)."""
    requests_by_code, buckets, count = {}, [], 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_inference_requests_total":
                code = sample.labels.get("code", "")
                requests_by_code[code] = requests_by_code.get(code, 0) + sample.value
            elif sample.name == "mlops_inference_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                if bound == float("inf"):
                    count = sample.value
                else:
                    buckets.append([bound, sample.value])
    return {"requests": requests_by_code, "buckets": sorted(buckets), "count": count}


class ExternalTarget(Target):
    """A target an external pipeline (``adapters.ci``) serves: the pipeline
    builds, applies, routes and removes; Odoo only hears of it through the
    pipeline's reports (``POST /ci/callback``), which name the endpoint.
    So nothing here acts on a server: ``apply`` and ``metrics`` refuse
    (no internal stage or canary gate runs on it: ``check_request`` says so
    at approval), the routing and key calls the services make for every
    target have nothing to change, and ``status`` cannot see a colour
    (a rollback there deploys the previous version again, through the
    pipeline)."""

    kind = "external"

    def __init__(self, public_url=None):
        self.public_url = (public_url or "").rstrip("/")

    def render(self, plan):
        return {"kind": self.kind, "pipeline is asked for": asdict(plan)}

    def apply(self, plan):
        raise TargetFailed("an external target is brought up by its pipeline")

    def status(self, plan):
        return ServeStatus(False, "served by its pipeline: Odoo sees its reports")

    def switch_traffic(self, routes):
        """The pipeline routes its deployments."""

    def delete(self, plan):
        """The pipeline removes its deployments' objects."""

    def route_url(self, route):
        return f"{self.public_url}{route_path(route)}" if self.public_url else ""

    def publish_keys(self, route, allowed, elsewhere):
        """The gateway in front of an external target checks its callers."""

    def metrics(self, plan):
        raise TargetFailed("an external target's metrics are its pipeline's")

    def check(self):
        return {"served by": "its pipeline", "url": self.public_url or "reported"}


TARGET_KINDS = {"local": LocalTarget, "external": ExternalTarget}
