"""A real git server for tests and benchmarks: git's own smart-HTTP server,
``git http-backend`` (the CGI program nginx or Apache run), behind basic
authentication on loopback. Each request runs ``git http-backend`` with the
CGI environment, as a web server's CGI module does; pushes are enabled for
the authenticated user only.

    with GitServer() as server:
        url = server.create("gitops")   # a bare repository with a main branch
        server.username, server.password

``server.requests`` counts what came, by method and path (the benchmarks
read it); ``server.down()``/``up()`` make the remote unreachable and back.
"""

import base64
import http.server
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from testservers import free_port

USERNAME = "mlops"
PASSWORD = "mlops-git-secret"
BACKEND = "/usr/lib/git-core/git-http-backend"


class GitServer:
    def __init__(self, workdir=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlops-git-"))
        self.root = self.workdir / "repositories"
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = USERNAME
        self.password = PASSWORD
        self.requests = []
        self.port = None
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def create(self, name, files=None):
        """A bare repository ``<name>.git`` whose ``main`` holds ``files``
        ({path: text}; by default a README); its clone URL."""
        bare = self.root / f"{name}.git"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        _git("config", "http.receivepack", "true", cwd=bare)
        seed = Path(tempfile.mkdtemp(prefix="mlops-git-seed-"))
        try:
            _git("init", "--quiet", "--initial-branch=main", str(seed))
            for path, text in (files or {"README.md": "GitOps\n"}).items():
                target = seed / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git("add", "--all", cwd=seed)
            _git("commit", "--quiet", "-m", "Start", cwd=seed)
            _git("push", "--quiet", str(bare), "main", cwd=seed)
        finally:
            shutil.rmtree(seed, ignore_errors=True)
        return f"{self.url}/{name}.git"

    def bare(self, name):
        return self.root / f"{name}.git"

    def start(self):
        server = self
        self.port = self.port or free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                server.requests.append((self.command, self.path))
                expected = base64.b64encode(
                    f"{server.username}:{server.password}".encode()
                ).decode()
                if self.headers.get("Authorization", "") != f"Basic {expected}":
                    self._answer(401, b"authentication required\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._chunked()
                path, _, query = self.path.partition("?")
                environ = {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_USER": server.username,
                    "REMOTE_ADDR": "127.0.0.1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
                    "PATH": "/usr/bin:/bin",
                }
                done = subprocess.run(
                    [BACKEND],
                    input=body,
                    env=environ,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self._answer(status, payload, headers)

            def _chunked(self):
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if not size:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            def _answer(self, status, payload, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self):
        """Nobody answers on its port until ``up``."""
        self._server.shutdown()
        self._server.server_close()

    def up(self):
        return self.start()

    def stop(self):
        if self._server:
            self.down()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _git(*args, cwd=None):
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=environ,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def clone_and_push(url, files, message, username=USERNAME, password=PASSWORD):
    """What a second person does: clone ``url``, change ``files`` on main,
    push. Returns the pushed commit."""
    work = Path(tempfile.mkdtemp(prefix="mlops-git-other-"))
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    header = ["-c", f"http.extraHeader=Authorization: Basic {auth}"]
    try:
        _git(*header, "clone", "--quiet", url, str(work / "c"))
        for path, text in files.items():
            target = work / "c" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        _git("add", "--all", cwd=work / "c")
        _git("commit", "--quiet", "-m", message, cwd=work / "c")
        _git(*header, "push", "--quiet", "origin", "main", cwd=work / "c")
        return _git("rev-parse", "HEAD", cwd=work / "c").stdout.strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)
