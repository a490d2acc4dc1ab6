"""The invoke-key gateway: HAProxy in front of a target's routes, checking
every call's key itself, so that a server Odoo does not run (Triton, a
KServe predictor) is reached only with a key that covers its route.

The bearer token of a call is hashed by HAProxy (``sha2(256)``) and looked
up in maps, never kept in clear anywhere:

- ``keys.map``: every known key's SHA-256 and its expiry (epoch seconds, 0
  for none). Unknown or missing: 401; expired: 401;
- ``grants.map``: ``<hash>:<route>`` for the routes a key covers; a known
  key outside its scope: 403;
- ``routes.map``: the routes served; another path: 404.

The health routes (``/m/<route>/v2/health/live|ready``) need no key, as on
the local model servers. Errors are JSON, as the router's.

``KeyGateway`` runs it as a process on this machine: a key change is made
live through HAProxy's runtime API (``prepare``/``add``/``commit map``: the
maps swap at once, no reload, no connection touched); a change of the
routes rewrites the configuration and reloads. ``gateway_objects`` (in
``k8s_manifests``) places the same configuration on a cluster. Plain
Python: no Odoo.
"""

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from .processes import process_alive
from .router import ROUTE_PREFIX, SAFE_NAME, find_haproxy

TIMEOUT = 10
MAPS = ("keys.map", "grants.map", "routes.map")
_NEW_VERSION = re.compile(r"New version created: (\d+)")
ERRORS = {
    "route": (404, "no such route"),
    "key": (401, "an invoke key is needed: Authorization: Bearer <key>"),
    "expired": (401, "the invoke key expired"),
    "scope": (403, "the invoke key does not cover this route"),
}


class GatewayError(Exception):
    pass


def backend_name(route):
    return f"r_{route}"


def render_maps(table):
    """{map name: text} of ``table``: {route: (allowed {hash: expiry epoch
    or None}, elsewhere {hash})}."""
    expiries, grants = {}, []
    for route, (allowed, elsewhere) in sorted(table.items()):
        for key_hash, expiry in allowed.items():
            expiries[key_hash] = int(expiry or 0)
            grants.append(f"{key_hash}:{route} 1")
        for key_hash in elsewhere:
            expiries.setdefault(key_hash, 0)
    return {
        "keys.map": "".join(f"{h} {e}\n" for h, e in sorted(expiries.items())),
        "grants.map": "".join(f"{g}\n" for g in sorted(grants)),
        "routes.map": "".join(f"{r} {backend_name(r)}\n" for r in sorted(table)),
    }


def render_config(bind, upstreams, maps_dir, socket_path=None, resolvers=False):
    """The gateway's HAProxy configuration: ``upstreams`` {route:
    "host:port"} (a route's server, or its Service on a cluster).
    ``resolvers``: names are asked of the system's DNS servers as the
    gateway runs (a Service created or re-created after the gateway
    started is found within seconds), not only when it starts."""

    def answer(kind, condition):
        status, message = ERRORS[kind]
        return (
            f"    http-request return status {status} content-type application/json"
            f""" string '{{"error": "{message}"}}'"""
            f' hdr X-Request-Id "%[var(txn.rid)]" {condition}'
        )

    maps = {name: f"{maps_dir}/{name}" for name in MAPS}
    lines = ["global", "    master-worker"]
    if socket_path:
        lines.append(f"    stats socket {socket_path} mode 600 level admin")
    lines += [
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout http-request 30s",
        "    timeout server 60s",
    ]
    if resolvers:
        lines += [
            "resolvers system",
            "    parse-resolv-conf",
            "    hold valid 10s",
            "    hold nx 5s",
        ]
    lines += [
        "frontend mlops_gateway",
        f"    bind {bind}",
        # which routes this process serves: a reload is over when it says so
        "    http-request return status 200 content-type text/plain"
        f' string "{generation(upstreams)}" if {{ path /__mlops/generation }}',
        # every answer names its call: the caller's own id when it is plain
        # (visible ASCII, 128 at most), else one made here (a server behind
        # that says nothing of it, as Triton, still has one)
        "    unique-id-format %[uuid()]",
        "    http-request set-header X-Request-Id %[unique-id]"
        " unless { req.hdr(x-request-id) -m reg ^[!-~]{1,128}$ }",
        "    http-request set-var(txn.rid) req.hdr(x-request-id)",
        "    http-response set-header X-Request-Id %[var(txn.rid)]",
        "    http-request set-var(txn.route) path,field(3,/)"
        f" if {{ path_beg {ROUTE_PREFIX} }}",
        answer(
            "route", f"unless {{ var(txn.route),map({maps['routes.map']}) -m found }}"
        ),
        "    acl health path_reg ^/m/[^/]+/v2/health/(live|ready)$",
        "    http-request set-var(txn.exp) int(-1)",
        "    http-request set-var(txn.token) req.hdr(authorization),"
        "regsub(^[Bb]earer\\ +,),sha2(256),hex,lower"
        " if { req.hdr(authorization) -m found }",
        f"    http-request set-var(txn.exp) var(txn.token),map({maps['keys.map']},-1)"
        " if { var(txn.token) -m found }",
        "    http-request set-var(txn.now) date",
        "    http-request set-var(txn.left) var(txn.exp),sub(txn.now)",
        answer("key", "if !health { var(txn.exp) -m int lt 0 }"),
        answer(
            "expired",
            "if !health { var(txn.exp) -m int gt 0 } { var(txn.left) -m int le 0 }",
        ),
        "    http-request set-var(txn.grant) var(txn.token),concat(:,txn.route,)",
        answer(
            "scope",
            f"if !health !{{ var(txn.grant),map({maps['grants.map']}) -m found }}",
        ),
        f"    http-request replace-path ^{ROUTE_PREFIX}[^/]+(/.*)?$ \\1",
        f"    use_backend %[var(txn.route),map({maps['routes.map']})]",
    ]
    for route, address in sorted(upstreams.items()):
        if not SAFE_NAME.match(route):
            raise GatewayError(f"unsafe route name {route!r}")
        lines.append(f"backend {backend_name(route)}")
        if resolvers:
            # on a cluster, the Service's own name: what KServe's Knative
            # ingress routes by (a plain Service ignores it)
            lines.append(
                f"    http-request set-header Host {address.rsplit(':', 1)[0]}"
            )
        lines.append(
            # a name that does not resolve yet leaves the server down,
            # not the gateway
            f"    server s1 {address} init-addr last,libc,none"
            + (" resolvers system" if resolvers else "")
        )
    return "\n".join(lines) + "\n"


def generation(upstreams):
    """What a configuration serves, in 16 characters."""
    text = "".join(f"{r} {a}\n" for r, a in sorted(upstreams.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checksum(files):
    """A digest of the gateway's files: a pod template annotation, so that a
    change rolls the gateway on a cluster."""
    digest = hashlib.sha256()
    for name, text in sorted(files.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


class KeyGateway:
    """The gateway as a process on this machine (its files under ``root``)."""

    def __init__(self, root, port, host="127.0.0.1", haproxy=None, resolvers=False):
        self.root = Path(root)
        self.port = port
        self.host = host
        self.haproxy = haproxy
        self.resolvers = resolvers

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def socket_path(self):
        return self.root / "admin.sock"

    def apply(self, upstreams, table):
        """Serve ``upstreams`` with the keys of ``table``; a key change is
        live when this returns."""
        self.root.mkdir(parents=True, exist_ok=True)
        config = render_config(
            f"{self.host}:{self.port}",
            upstreams,
            self.root,
            self.socket_path,
            resolvers=self.resolvers,
        )
        maps = render_maps(table)
        config_path = self.root / "haproxy.cfg"
        same_routes = config_path.exists() and config_path.read_text() == config
        for name, text in maps.items():
            _write(self.root / name, text)
        master = self._master()
        if master and same_routes:
            for name in ("keys.map", "grants.map"):
                self._swap(name, maps[name])
            return "keys"
        _write(config_path, config)
        if master:
            os.kill(master, signal.SIGUSR2)  # reload: new routes
            self._wait_serving(generation(upstreams))
            return "reloaded"
        started = subprocess.run(  # noqa: S603 - haproxy with our own file
            [
                self.haproxy or find_haproxy(),
                "-W",
                "-D",
                "-p",
                str(self.root / "haproxy.pid"),
                "-f",
                str(config_path),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if started.returncode:
            raise GatewayError(f"the gateway did not start: {started.stderr[-500:]}")
        self._wait_serving(generation(upstreams))
        return "started"

    def _swap(self, name, text):
        """Replace a map's entries at once (a new version, filled, then
        committed)."""
        path = self.root / name
        answer = self.command(f"prepare map {path}")
        match = _NEW_VERSION.search(answer)
        if not match:
            raise GatewayError(f"the gateway did not prepare {name}: {answer.strip()}")
        version = match[1]
        for line in text.splitlines():
            key, value = line.split(" ", 1)
            self.command(f"add map @{version} {path} {key} {value}")
        self.command(f"commit map @{version} {path}")

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            try:
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as error:
                raise GatewayError(f"the gateway's runtime API: {error}") from None
        return b"".join(chunks).decode(errors="replace")

    def _master(self):
        try:
            pid = int((self.root / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_alive(pid) else None

    def _wait_serving(self, wanted):
        """Until a new connection reaches a process of this configuration."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(
                    f"{self.url}/__mlops/generation",
                    timeout=1,
                    headers={"Connection": "close"},
                )
                if answer.text == wanted:
                    return
            time.sleep(0.05)
        raise GatewayError("the gateway does not serve its configuration")

    def pids(self):
        master = self._master()
        if not master:
            return []
        children = Path(f"/proc/{master}/task/{master}/children")
        try:
            return [master, *map(int, children.read_text().split())]
        except OSError:
            return [master]

    def stop(self):
        master = self._master()
        if master:
            os.kill(master, signal.SIGUSR1)
            deadline = time.monotonic() + TIMEOUT
            while process_alive(master) and time.monotonic() < deadline:
                time.sleep(0.05)


def _write(path, text):
    partial = path.with_suffix(path.suffix + ".new")
    partial.write_text(text)
    os.replace(partial, path)
