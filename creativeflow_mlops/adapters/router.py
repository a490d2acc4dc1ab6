"""The inference router: one HAProxy hop in front of the model servers.

Each route is a stable path prefix (``/m/<route>/``) that HAProxy maps (a
runtime map, ``routes.map``) to a backend *slot*: one server for a rolling
deployment, two during a blue-green switch (the idle colour is not listed)
or a canary (weights = traffic shares, smooth weighted round robin).

Traffic moves without a reload: a change is written as a whole
configuration first (tested with ``haproxy -c``: a refused one, or one that
cannot be written, changes nothing), then made live through HAProxy's
runtime API (server address, weight and state, map entries), then checked
there, then the files replace the previous ones. A reload closes the idle
keep-alive connections of the clients of every route, and one that sends
its next request at that moment gets a reset; the runtime API touches no
connection. Only growing the number of slots reloads (64, then doubling),
and a process that is not running is started from the files, so the state
survives Odoo, and a router restart, as it is.

A request that reaches a server that stopped, or that closed its keep-alive
connection as the request arrived, is sent again, to another server when
there is one (``retry-on conn-failure empty-response``, ``redispatch``):
inference is a pure function of its input, so running it again is safe.

Plain Python: no Odoo.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .processes import process_alive

SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,100}$")
HAPROXY_PATHS = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
TIMEOUT = 10
# every route's path prefix: the one place the URL shape is said
ROUTE_PREFIX = "/m/"


def route_path(name):
    """The path of route ``name`` under a router's (or gateway's) URL."""
    return f"{ROUTE_PREFIX}{name}"


# the file that says the router was stopped on purpose (not to be revived)
STOPPED = "stopped"
# how long a reload waits for the old worker's requests in flight
DRAIN_TIMEOUT = 30
SLOTS = 64  # backends made at start; doubled when more routes serve
SERVERS = 4  # servers per route: a canary has two
MAX_BODY = 64 * 1024 * 1024
SOCKET_PATH_MAX = 97  # HAProxy's limit for a Unix socket's path
# the answers HAProxy makes itself, and what they say. HAProxy 2.6 answers
# the requests its HTTP/1 parser refuses (a malformed request line, a header
# name with a space or a control character, a request line or headers past
# tune.bufsize, two Content-Lengths, broken chunked encoding) with its
# built-in HTML 400, whatever the configuration says (README, Router)
ROUTER_ERRORS = {
    400: "the request is malformed",
    403: "refused",
    405: "method not allowed",
    408: "the request took too long to arrive",
    413: "the body is larger than the router takes",
    425: "too early",
    429: "too many requests",
    500: "the router failed",
    501: "not implemented",
    502: "no model server is ready; try again",
    503: "no model server is ready; try again",
    504: "the model server took too long to answer",
}
UNKNOWN = '{"error": "no model is served at this path"}'
# what the runtime API answers when a command did nothing
CLI_ERROR = re.compile(
    r"^(No such|Unknown|Require|Invalid|Can't|Cannot|Permission|Unexpected"
    r"|Missing|'.*' expects)",
    re.MULTILINE,
)


# the header by which a caller keeps one colour of a split route
CALLER_HEADER = "X-MLOps-Caller"


class RouterError(Exception):
    pass


class RouterFailed(RouterError):
    """The new configuration was refused; the last good one still serves."""


@dataclass
class Backend:
    port: int
    weight: int  # percent of the route's traffic, 0 to 100
    version: str = ""


@dataclass
class Route:
    name: str  # safe: [a-z0-9-]
    backends: list = field(default_factory=list)

    def serving(self):
        return [b for b in self.backends if b.weight > 0]


def find_haproxy():
    found = shutil.which("haproxy")
    if found:
        return found
    for path in HAPROXY_PATHS:
        if os.access(path, os.X_OK):
            return path
    raise RouterError("HAProxy is not installed (Debian: apt-get install haproxy)")


class HAProxyRouter:
    def __init__(self, root, port, host="127.0.0.1", haproxy=None, workers=1):
        self.base = Path(root)
        self.root = self.base / "haproxy"
        self.port = int(port)
        self.host = host
        self.haproxy = haproxy
        self.workers = workers

    @property
    def base_url(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def map_path(self):
        return self.root / "routes.map"

    @functools.cached_property
    def socket_path(self):
        """The runtime API's socket (found once: every command uses it):
        beside the files, or when that path is past what a Unix socket
        takes, in a private folder of the system's temporary one, named
        after the files' folder."""
        path = self.root / "admin.sock"
        if len(str(path)) <= SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / f"mlops-router-{digest}"
        folder.mkdir(mode=0o700, exist_ok=True)
        mode = folder.lstat()
        if mode.st_uid != os.getuid() or mode.st_mode & 0o077:
            raise RouterError(f"{folder} is not this user's alone")
        return folder / "admin.sock"

    # configuration

    def render(self, state, map_path=None):
        """The whole configuration of ``state``: what a process started
        from it serves, and what the runtime API brings a running one to."""
        lines = [
            "global",
            "    master-worker",
            f"    pidfile {self.root / 'haproxy.pid'}",
            f"    stats socket {self.socket_path} mode 600 level admin"
            " expose-fd listeners",
            f"    nbthread {int(self.workers)}",
            "    maxconn 4096",
            # a request up to this size is kept until answered, so it can
            # be sent again (a larger one streams and cannot)
            "    tune.bufsize 65536",
            f"    hard-stop-after {DRAIN_TIMEOUT}s",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 60s",
            "    timeout http-request 30s",
            "    timeout http-keep-alive 60s",
            "    timeout server 60s",
            "    http-reuse always",
            "    retries 3",
            "    option redispatch 1",
            "    retry-on conn-failure empty-response",
            # a caller that names itself keeps one colour (an experiment's
            # arm) at the weights' shares; without the header, round robin
            f"    balance hdr({CALLER_HEADER})",
            "    hash-type consistent",
        ]
        # every answer the router makes itself is OIP JSON, as the model
        # servers' are (see ROUTER_ERRORS for the few HAProxy 2.6 makes
        # before any of this applies)
        for status, message in ROUTER_ERRORS.items():
            lines.append(
                f"    http-error status {status} content-type application/json"
                f""" string '{{"error": "{message}"}}'"""
            )
        lines += [
            "frontend mlops_invoke",
            f"    bind {self.host or '0.0.0.0'}:{self.port}",
            "    http-request deny deny_status 413"
            f" if {{ req.hdr_val(content-length) gt {MAX_BODY} }}",
            "    http-request return status 200 content-type text/plain"
            f' string "{int(state["generation"])}" if {{ path /__mlops/generation }}',
            "    http-request set-var(txn.route) path,field(3,/)"
            f" if {{ path_beg {ROUTE_PREFIX} }}",
            f"    http-request replace-path ^{ROUTE_PREFIX}[^/]+/?(.*)$ /\\1"
            " if { var(txn.route) -m found }",
            "    use_backend %[var(txn.route),"
            f"map({map_path or self.map_path},mlops_unknown)]"
            " if { var(txn.route) -m found }",
            "    default_backend mlops_unknown",
            "backend mlops_unknown",
            "    http-request return status 404 content-type application/json"
            f" string '{UNKNOWN}'",
        ]
        slots = {route["slot"]: route for route in state["routes"].values()}
        for slot in range(int(state["capacity"])):
            servers = slots.get(slot, {}).get("servers", {})
            lines.append(f"backend {_backend(slot)}")
            for number in range(1, SERVERS + 1):
                port, weight = servers.get(f"c{number}", (1, 0))
                if weight:
                    address = f"127.0.0.1:{int(port)}"
                    lines.append(f"    server c{number} {address} weight {int(weight)}")
                else:
                    lines.append(f"    server c{number} 127.0.0.1:1 disabled")
        return "\n".join(lines) + "\n"

    def render_map(self, state):
        return "".join(
            f"{name} {_backend(route['slot'])}\n"
            for name, route in sorted(state["routes"].items())
        )

    def plan(self, routes, previous):
        """The state serving ``routes``, moving as little as it can from
        ``previous``: a route keeps its slot, a server its place, so a
        switch never changes the address of a server that serves."""
        wanted = {}
        for route in routes:
            if not SAFE_NAME.match(route.name):
                raise RouterError(f"unsafe route name {route.name!r}")
            serving = route.serving()
            if len(serving) > SERVERS:
                raise RouterError(
                    f"route {route.name}: {len(serving)} servers, at most {SERVERS}"
                )
            if serving:
                wanted[route.name] = serving
        # a slot freed now is taken again only by a later change: its
        # servers go down in this one
        taken = {route["slot"] for route in previous["routes"].values()}
        free = (slot for slot in range(1 << 20) if slot not in taken)
        names = [f"c{number}" for number in range(1, SERVERS + 1)]
        state = {"generation": previous["generation"] + 1, "routes": {}}
        for name, serving in sorted(wanted.items()):
            before = previous["routes"].get(name)
            slot = before["slot"] if before else next(free)
            had = {
                port: server
                for server, (port, _weight) in (before or {}).get("servers", {}).items()
            }
            servers = {
                had[b.port]: (int(b.port), int(b.weight))
                for b in serving
                if b.port in had
            }
            # idle servers first: one that serves now keeps its address
            # until it is set down
            spare = [n for n in names if n not in servers and n not in had.values()]
            spare += [n for n in names if n not in servers and n not in spare]
            for backend in serving:
                if backend.port not in had:
                    servers[spare.pop(0)] = (int(backend.port), int(backend.weight))
            state["routes"][name] = {"slot": slot, "servers": servers}
        used = max((r["slot"] for r in state["routes"].values()), default=-1) + 1
        capacity = max(int(previous.get("capacity") or SLOTS), SLOTS)
        while capacity < used:
            capacity *= 2
        state["capacity"] = capacity
        return state

    def apply(self, routes):
        """Serve ``routes``. When it returns, every new request is routed by
        them, and a server they no longer name receives none: it can stop
        (its requests in flight finish). ``RouterFailed`` leaves the
        previous configuration serving."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            (self.root / STOPPED).unlink(missing_ok=True)
            previous = self._state()
            state = self.plan(routes, previous)
            self._write_candidate(state)
            master = self._master_pid()
            if not master:
                self._commit()
                self._start()
                self._wait_for(state["generation"])
            elif state["capacity"] != previous["capacity"]:
                self._commit()
                self._reload(master, state["generation"])
            else:
                try:
                    self._switch(previous, state)
                except RouterError:
                    # the live state is between the two: the files are
                    # the new one whole, and a reload makes it so
                    self._commit()
                    self._reload(master, state["generation"])
                else:
                    self._commit()
            return state["generation"]

    def stop(self):
        """Stop the router on purpose: the watchdog does not start it again
        until the next ``apply``."""
        if self.root.is_dir():
            (self.root / STOPPED).touch()
        pid = self._master_pid()
        if not pid:
            return False
        os.kill(pid, signal.SIGUSR1)  # soft stop: requests in flight finish
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.05)
        return True

    def revive(self):
        """Start the router again from its files when it was killed (not
        stopped) and they are there; True if it was started."""
        if (
            not (self.root / "haproxy.cfg").is_file()
            or (self.root / STOPPED).exists()
            or self._master_pid()
        ):
            return False
        with self._lock():
            if self._master_pid() or (self.root / STOPPED).exists():
                return False
            self._start()
            self._wait_for(self._state()["generation"])
        return True

    def running(self):
        return bool(self._master_pid())

    def pids(self):
        """The master process, then its workers."""
        master = self._master_pid()
        return [master, *_children(master)] if master else []

    # the files

    def _state(self):
        try:
            state = json.loads((self.root / "state.json").read_text())
        except (OSError, ValueError):
            return {"generation": 0, "capacity": 0, "routes": {}}
        for route in state["routes"].values():
            route["servers"] = {k: tuple(v) for k, v in route["servers"].items()}
        return state

    def _write_candidate(self, state):
        files = {
            "haproxy.cfg.test": self.render(state, self.root / "routes.map.new"),
            "haproxy.cfg.new": self.render(state),
            "routes.map.new": self.render_map(state),
            "state.json.new": json.dumps(state, sort_keys=True),
        }
        try:
            for name, text in files.items():
                (self.root / name).write_text(text)
        except OSError as error:
            # a full disk, say: the configuration in place keeps serving
            for name in files:
                (self.root / name).unlink(missing_ok=True)
            raise RouterFailed(
                f"the router's new configuration cannot be written: {error.strerror}"
            ) from None
        test = subprocess.run(  # noqa: S603 - haproxy with our own file
            [self._binary(), "-c", "-f", str(self.root / "haproxy.cfg.test")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        (self.root / "haproxy.cfg.test").unlink(missing_ok=True)
        if test.returncode:
            raise RouterFailed(
                "the router refused its new configuration: "
                + _alert(test.stderr or test.stdout).replace(str(self.root), "")
            )

    def _commit(self):
        for name in ("routes.map", "haproxy.cfg", "state.json"):
            os.replace(self.root / f"{name}.new", self.root / name)

    @contextlib.contextmanager
    def _lock(self):
        """One change at a time, whichever process makes it."""
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # the process

    def _binary(self):
        return self.haproxy or find_haproxy()

    def _start(self):
        started = subprocess.run(  # noqa: S603
            [self._binary(), "-W", "-D", "-f", str(self.root / "haproxy.cfg")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if started.returncode:
            raise RouterFailed(
                "the router did not start: "
                + _alert(started.stderr).replace(str(self.root), "")
            )

    def _reload(self, master, generation):
        previous = {pid: master for pid in _children(master)}
        os.kill(master, signal.SIGUSR2)
        self._wait_for(generation)
        self._wait_gone(previous)

    def _master_pid(self):
        pid = _read_pid(self.root / "haproxy.pid")
        try:  # and not another process that took its number since
            name = Path(f"/proc/{pid}/comm").read_text().strip() if pid else ""
        except OSError:
            return None
        return pid if name.startswith("haproxy") else None

    # the runtime API

    def command(self, line):
        """One runtime API command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            try:
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as error:
                raise RouterError(f"the router's runtime API: {error}") from None
        answer = b"".join(chunks).decode(errors="replace")
        if CLI_ERROR.search(answer):
            raise RouterError(
                f"the router refused {line.split()[0:3]}: {answer.strip()}"
            )
        return answer

    def _switch(self, previous, state):
        """Bring the running process from ``previous`` to ``state``: the
        servers that come first, then the weights, then those that go; a
        new route is mapped once its servers are up, an old one unmapped
        before they go down. Then read back."""
        before, after = previous["routes"], state["routes"]
        for name in set(before) - set(after):
            self.command(f"del map {self.map_path} {name}")
            backend = _backend(before[name]["slot"])
            for server in before[name]["servers"]:
                self.command(f"set server {backend}/{server} state maint")
        for name, route in sorted(after.items()):
            backend = _backend(route["slot"])
            had = before.get(name, {}).get("servers", {})
            for server, (port, weight) in sorted(route["servers"].items()):
                if had.get(server, (None,))[0] != port:
                    self.command(
                        f"set server {backend}/{server} addr 127.0.0.1 port {port}"
                    )
                self.command(f"set server {backend}/{server} weight {weight}")
                self.command(f"set server {backend}/{server} state ready")
            for server in sorted(set(had) - set(route["servers"])):
                self.command(f"set server {backend}/{server} state maint")
            if name not in before:
                self.command(f"add map {self.map_path} {name} {backend}")
        self._check_live(state)

    def _check_live(self, state):
        mapped = dict(
            line.split()[1:3]
            for line in self.command(f"show map {self.map_path}").splitlines()
            if len(line.split()) >= 3
        )
        expected = {name: _backend(r["slot"]) for name, r in state["routes"].items()}
        if mapped != expected:
            raise RouterError(f"the router maps {mapped}, not {expected}")
        live = {}
        header = []
        for line in self.command("show servers state").splitlines():
            if line.startswith("# "):
                header = line[2:].split()
            elif header and len(line.split()) == len(header):
                row = dict(zip(header, line.split(), strict=True))
                if row["srv_op_state"] == "2":  # running: takes requests
                    live.setdefault(row["be_name"], {})[row["srv_name"]] = (
                        int(row["srv_port"]),
                        int(row["srv_uweight"]),
                    )
        for route in state["routes"].values():
            backend = _backend(route["slot"])
            if live.get(backend, {}) != dict(route["servers"]):
                raise RouterError(
                    f"the router's {backend} serves {live.get(backend)}, "
                    f"not {route['servers']}"
                )

    def _wait_gone(self, workers):
        """Until ``workers`` (retired by a reload) have exited. A worker
        ends when its last request has been answered, bounded by
        ``DRAIN_TIMEOUT`` (``hard-stop-after``)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT + 1
        while workers and time.monotonic() < deadline:
            workers = {
                pid: master
                for pid, master in workers.items()
                if _parent(pid) == master  # alive, and not a reused pid
            }
            if workers:
                time.sleep(0.01)
        return not workers

    def _wait_for(self, generation):
        """Until a new connection is served by the process of ``generation``."""
        deadline = time.monotonic() + TIMEOUT
        last = None
        while time.monotonic() < deadline:
            try:
                with requests.Session() as fresh:
                    answer = fresh.get(
                        f"{self.base_url}/__mlops/generation",
                        timeout=2,
                        headers={"Connection": "close"},
                    )
                if answer.text.strip() == str(generation):
                    return
                last = answer.text
            except requests.RequestException as error:
                last = error
            time.sleep(0.02)
        raise RouterFailed(
            f"the router did not take configuration {generation} (last answer: {last})"
        )


def _backend(slot):
    return f"mlops_r{int(slot)}"


def _read_pid(path):
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def _parent(pid):
    """The parent of ``pid``, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[1])


def _children(master):
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and _parent(int(entry.name)) == master:
                found.append(int(entry.name))
    return found


def _alert(text):
    """HAProxy's first alert, without its prefix (the cause; the lines
    after it summarise)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if "[ALERT]" in line:
            return re.sub(r"^.*\[ALERT\]\s*\(\d+\)\s*:\s*", "", line)
    return lines[-1] if lines else "no output"
