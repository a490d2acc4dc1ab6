"""The inference router: Debian's nginx in front of the model servers.

Each route is a stable path prefix (``/m/<route>/``) that proxies to an
upstream of model server ports with weights: one server for a rolling
deployment, two during a blue-green switch (the idle colour at weight 0 is
not listed) or a canary (weights = traffic shares). Changing the weights is
a new configuration, tested with ``nginx -t`` before it replaces the one
that serves, then a graceful reload: running requests finish on the old
workers, new ones go to the new. A configuration that fails its test is
never loaded: the last good one keeps serving.

Two nginx instances, because a reload closes the idle keep-alive
connections of the old workers, and a client that sends its next request on
one at that moment gets a reset: the *front* instance holds the clients'
connections and never reloads (its configuration names nothing but the
switch); the *switch* instance holds the routes and reloads. The front
reaches the switch over keep-alive connections, and nginx sends a request
whose cached upstream connection was closed again on a new one (without
counting it as a try), so a switch loses no request. The hop costs some tens
of microseconds.

A POST that cannot reach a server (a colour stopping) is passed to the next
one (``proxy_next_upstream ... non_idempotent``): inference is a pure
function of its input, so running it again is safe.

Plain Python: no Odoo.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .runtime import free_port, process_alive

SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,100}$")
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
TIMEOUT = 10
# how long a reload waits for the old workers' requests in flight
DRAIN_TIMEOUT = 30


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


def find_nginx():
    found = shutil.which("nginx")
    if found:
        return found
    for path in NGINX_PATHS:
        if os.access(path, os.X_OK):
            return path
    raise RouterError("nginx is not installed (Debian: apt-get install nginx-light)")


class NginxRouter:
    def __init__(self, root, port, host="127.0.0.1", nginx=None, workers=1):
        self.base = Path(root)
        self.root = self.base / "switch"
        self.front = self.base / "front"
        self.port = int(port)
        self.host = host
        self.nginx = nginx
        self.workers = workers

    @property
    def base_url(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def route_url(self, name):
        return f"{self.base_url}/m/{name}"

    # configuration

    @property
    def switch_port(self):
        """The switch's own port, chosen once and kept."""
        path = self.base / "switch.port"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            self.base.mkdir(parents=True, exist_ok=True)
            port = free_port()
            path.write_text(str(port))
            return port

    def _head(self, root):
        return [
            f"worker_processes {int(self.workers)};",
            f"pid {root / 'nginx.pid'};",
            f"error_log {root / 'error.log'} warn;",
            "events { worker_connections 4096; }",
            "http {",
            "    access_log off;",
            f"    client_body_temp_path {root / 'tmp' / 'body'};",
            f"    proxy_temp_path {root / 'tmp' / 'proxy'};",
            f"    fastcgi_temp_path {root / 'tmp' / 'fastcgi'};",
            f"    uwsgi_temp_path {root / 'tmp' / 'uwsgi'};",
            f"    scgi_temp_path {root / 'tmp' / 'scgi'};",
            "    client_max_body_size 64m;",
            "    client_body_buffer_size 1m;",
            "    keepalive_requests 1000000;",
            "    keepalive_timeout 60s;",
            "    tcp_nodelay on;",
            "    proxy_http_version 1.1;",
            '    proxy_set_header Connection "";',
            "    proxy_buffering off;",
            # a request is kept until answered, so it can be sent again
            # (nginx will not resend a body it streamed)
            "    proxy_connect_timeout 2s;",
            "    proxy_read_timeout 60s;",
            "    proxy_next_upstream error timeout non_idempotent;",
            "    proxy_next_upstream_tries 3;",
        ]

    def render_front(self):
        lines = self._head(self.front)
        lines += [
            "    upstream mlops_switch {",
            f"        server 127.0.0.1:{self.switch_port} max_fails=0;",
            "        keepalive 256;",
            "    }",
            "    server {",
            f"        listen {self.host}:{self.port} reuseport;",
            "        location / {",
            "            proxy_pass http://mlops_switch;",
            "        }",
            "    }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def render(self, routes, generation):
        lines = self._head(self.root)
        for route in routes:
            if not SAFE_NAME.match(route.name):
                raise RouterError(f"unsafe route name {route.name!r}")
            serving = route.serving()
            if not serving:
                continue
            lines.append(f"    upstream mlops_{route.name.replace('-', '_')} {{")
            for backend in serving:
                lines.append(
                    f"        server 127.0.0.1:{int(backend.port)} "
                    f"weight={int(backend.weight)} max_fails=1 fail_timeout=2s;"
                )
            lines += ["        keepalive 64;", "    }"]
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{self.switch_port};",
            "        default_type application/json;",
            "        location = /__mlops/generation {",
            f'            return 200 "{int(generation)}";',
            "        }",
        ]
        for route in routes:
            if not route.serving():
                continue
            upstream = f"mlops_{route.name.replace('-', '_')}"
            lines += [
                f"        location /m/{route.name}/ {{",
                f"            proxy_pass http://{upstream}/;",
                "        }",
            ]
        lines += [
            "        location / {",
            '            return 404 \'{"error": "no model is served at this path"}\';',
            "        }",
            "        error_page 502 503 504 = @unavailable;",
            "        location @unavailable {",
            "            return 503",
            '                \'{"error": "no model server is ready; try again"}\';',
            "        }",
            "    }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def apply(self, routes):
        """Serve ``routes``: test the new configuration, put it in place,
        reload the switch (or start it, and the front), wait until every
        new connection gets it, then until the workers of the previous
        configuration have finished their requests and exited. When it
        returns, nothing routes by the previous configuration: a server it
        no longer names can stop. ``RouterFailed`` leaves the previous
        configuration serving."""
        generation = self._generation() + 1
        previous = self._workers(self.root)
        self._load(self.root, self.render(routes, generation))
        if not self._master_pid(self.front):
            self._load(self.front, self.render_front())
        self._wait_for(generation)
        self._wait_gone(previous)
        return generation

    def _load(self, root, text):
        nginx = self.nginx or find_nginx()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        candidate = root / "nginx.conf.new"
        try:
            candidate.write_text(text)
        except OSError as error:
            # a full disk, say: the configuration in place keeps serving
            candidate.unlink(missing_ok=True)
            raise RouterFailed(
                f"the router's new configuration cannot be written: {error.strerror}"
            ) from None
        test = subprocess.run(  # noqa: S603 - nginx with our own file
            [nginx, "-t", "-q", "-p", str(root), "-c", str(candidate)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if test.returncode:
            raise RouterFailed(
                "the router refused its new configuration: "
                + _last_line(test.stderr or test.stdout).replace(str(root), "")
            )
        current = root / "nginx.conf"
        os.replace(candidate, current)
        pid = self._master_pid(root)
        if pid:
            os.kill(pid, signal.SIGHUP)
            return
        started = subprocess.run(  # noqa: S603
            [nginx, "-p", str(root), "-c", str(current)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if started.returncode:
            raise RouterFailed(
                "the router did not start: "
                + _last_line(started.stderr).replace(str(root), "")
            )

    def stop(self):
        stopped = False
        for root in (self.front, self.root):
            pid = self._master_pid(root)
            if not pid:
                continue
            os.kill(pid, signal.SIGQUIT)  # graceful
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline and process_alive(pid):
                time.sleep(0.05)
            stopped = True
        return stopped

    def running(self):
        return bool(self._master_pid(self.front) and self._master_pid(self.root))

    # inside

    def _generation(self):
        try:
            text = (self.root / "nginx.conf").read_text()
        except OSError:
            return 0
        found = re.search(r'/__mlops/generation \{\s*return 200 "(\d+)"', text)
        return int(found.group(1)) if found else 0

    def _master_pid(self, root):
        try:
            pid = int((root / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def _workers(self, root):
        """The worker processes of the instance at ``root`` now."""
        master = self._master_pid(root)
        return {pid: master for pid in _children(master)} if master else {}

    def _wait_gone(self, workers):
        """Until ``workers`` (retired by a reload) have exited. A worker
        ends when its last request has been answered, so this lasts as long
        as the slowest request in flight, bounded by ``DRAIN_TIMEOUT``:
        past it, the caller goes on (a server it stops then drains what is
        left)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
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
        """Until a new connection is served by the new workers."""
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


def _last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
