"""Start, watch and stop local model servers (model_server/server.py), one
process per deployment colour. Plain Python: no Odoo.

A process is started in its own session, so that it outlives an Odoo
restart and is adopted again rather than restarted (no request is lost);
its pid, port and command line are kept in a small JSON file beside its
log, which is how a later Odoo finds it, and how an orphan (a process whose
deployment is gone) is recognised and stopped.
"""

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

SERVER = Path(__file__).resolve().parent.parent / "model_server" / "server.py"
HEALTH_TIMEOUT = 2


class ProcessError(Exception):
    """Base of the runtime's errors (``RuntimeError`` is Python's)."""


class RuntimeFailed(ProcessError):
    """The process could not start or serve: the reason is its own."""


class PortInUse(ProcessError):
    pass


@dataclass
class ProcessSpec:
    """What a model server runs."""

    key: str  # unique per deployment colour, safe as a file name
    model_path: str
    name: str
    version: str
    port: int
    keys_file: str | None = None
    threads: int = 1
    drain_seconds: float = 20.0
    # the inference log: its spool folder, the share of calls kept, and the
    # inputs, outputs and parameters never kept
    log_dir: str | None = None
    log_rate: float = 0.0
    log_personal: tuple = ()


@dataclass
class Handle:
    key: str
    pid: int
    port: int
    started_at: float


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port, host="127.0.0.1"):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class LocalRuntime:
    """Model server processes under ``root`` (``<key>.json``, ``<key>.log``)."""

    def __init__(self, root, python=None, start_timeout=30.0, host="127.0.0.1"):
        self.root = Path(root)
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.host = host

    # paths

    def log_path(self, key):
        return self.root / f"{key}.log"

    def _state_path(self, key):
        return self.root / f"{key}.json"

    # life cycle

    def start(self, spec):
        """Start ``spec`` and wait until it is ready; the handle, or
        ``RuntimeFailed`` with the reason from its log. One start of a key at
        a time, whoever asks (Odoo, its supervisor, the watchdog): a key
        that runs already is not started twice."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._key_lock(spec.key):
            running = self.find(spec.key)
            if running:
                return running
            return self._start(spec)

    def revive(self, key):
        """Start ``key`` again with its last command line when its state
        file outlived its process (a crash); None when it runs, or when it
        was stopped (its state file goes first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._key_lock(key):
            spec = self._spec(key)
            if not spec or self.find(key):
                return None
            return self._start(ProcessSpec(**spec))

    @contextlib.contextmanager
    def _key_lock(self, key):
        with open(self.root / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _start(self, spec):
        if not port_is_free(spec.port, self.host):
            raise PortInUse(f"port {spec.port} is already in use")
        command = [
            self.python,
            str(SERVER),
            "--model",
            spec.model_path,
            "--name",
            spec.name,
            "--version",
            spec.version,
            "--host",
            self.host,
            "--port",
            str(spec.port),
            "--threads",
            str(spec.threads),
            "--drain-seconds",
            str(spec.drain_seconds),
        ]
        if spec.keys_file:
            command += ["--keys", spec.keys_file]
        if spec.log_dir and spec.log_rate > 0:
            command += ["--log-dir", spec.log_dir, "--log-rate", str(spec.log_rate)]
            if spec.log_personal:
                command += ["--log-personal", ",".join(spec.log_personal)]
        log = self.log_path(spec.key)
        with open(log, "ab") as out:
            out.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            out.flush()
        process = spawn_detached(
            command, log, env={**os.environ, "OMP_NUM_THREADS": str(spec.threads)}
        )
        handle = Handle(spec.key, process.pid, spec.port, time.time())
        self._state_path(spec.key).write_text(
            json.dumps({**asdict(handle), "spec": asdict(spec)})
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget(spec.key)
                raise RuntimeFailed(self._last_error(spec.key, process.returncode))
            if self.ready(handle):
                return handle
            time.sleep(0.05)
        self._kill(process.pid, signal.SIGKILL)
        self._forget(spec.key)
        raise RuntimeFailed(
            f"the model server was not ready after {self.start_timeout:.0f} s"
        )

    def stop(self, key, timeout=None):
        """Stop the process of ``key``: SIGTERM (it finishes the requests in
        flight), SIGKILL after ``timeout``. True if one was running."""
        if self.root.is_dir():
            with self._key_lock(key):
                handle = self.find(key)
                self._forget(key)
        else:
            handle = None
        if not handle:
            return False
        spec = self._spec(key) or {}
        timeout = timeout if timeout is not None else spec.get("drain_seconds", 20) + 5
        self._kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(handle.pid):
                return True
            time.sleep(0.05)
        self._kill(handle.pid, signal.SIGKILL)
        return True

    def find(self, key):
        """The handle of a live process of ``key`` (this Odoo's or an
        earlier one's), or None."""
        try:
            state = json.loads(self._state_path(key).read_text())
        except (OSError, ValueError):
            return None
        handle = Handle(state["key"], state["pid"], state["port"], state["started_at"])
        if not process_alive(handle.pid) or not _is_ours(handle.pid):
            return None
        return handle

    def port_of(self, key):
        """The port ``key`` serves on: its live process's, or, when the
        process died and its state file is still there (not stopped), the
        port it is started again on (``revive`` keeps it); None when
        stopped."""
        handle = self.find(key)
        if handle:
            return handle.port
        spec = self._spec(key)
        return spec["port"] if spec else None

    def running(self):
        """Every live process under ``root``: {key: handle}."""
        found = {}
        for state in sorted(self.root.glob("*.json")) if self.root.exists() else ():
            handle = self.find(state.stem)
            if handle:
                found[state.stem] = handle
        return found

    def ready(self, handle, timeout=HEALTH_TIMEOUT):
        try:
            answer = requests.get(
                f"http://{self.host}:{handle.port}/v2/health/ready", timeout=timeout
            )
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def log_tail(self, key, lines=40):
        try:
            with open(self.log_path(key), "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # inside

    def _spec(self, key):
        try:
            return json.loads(self._state_path(key).read_text()).get("spec")
        except (OSError, ValueError):
            return None

    def _forget(self, key):
        with contextlib.suppress(FileNotFoundError):
            self._state_path(key).unlink()

    def _last_error(self, key, code):
        tail = [
            line
            for line in self.log_tail(key, 20).splitlines()
            if line and not line.startswith("--- start")
        ]
        reason = tail[-1] if tail else "no output"
        if " ERROR mlops.runtime: " in reason:
            reason = reason.split(" ERROR mlops.runtime: ", 1)[1]
        return f"the model server exited ({code}): {reason}"

    @staticmethod
    def _kill(pid, sig):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        # reap it when it is our child; another Odoo's is reaped by init
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def spawn_detached(command, log, env=None):
    """Start ``command`` in a session of its own (it outlives Odoo), its
    output appended to ``log``; the ``Popen``."""
    with open(log, "ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own programs
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )


def process_alive(pid):
    """Whether ``pid`` runs (reaping it when it is our child and ended)."""
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_ours(pid):
    """Whether ``pid`` runs our server (a pid can be reused by anything)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return str(SERVER).encode() in cmdline
