"""The model server's inference log: a sample of the calls it answers, with
what was asked and answered, as JSONL files in a spool folder that Odoo
collects into the object store (docs/reference/monitoring.md).

- ``rate``: the share of calls kept (0.01: one in a hundred), drawn before a
  call is read, so a call that is not kept costs one random draw;
- ``personal``: names of inputs, outputs and request parameters that are
  dropped from a record before it is kept anywhere, this server's memory
  and disk included;
- records wait in memory and are written by ``flush`` (from a thread of
  their own, once a second): a file per ``max_rows`` records or
  ``max_seconds``, written as ``<name>.part`` and renamed ``<name>.jsonl``,
  so Odoo only ever takes whole files;
- at most ``max_files`` files wait for Odoo and ``max_pending`` records in
  memory: past that, records are dropped and counted (``dropped``), never
  the server's memory or the disk.

This file imports neither Odoo nor the addon: the model server loads it by
its path.
"""

import contextlib
import logging
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson

_logger = logging.getLogger("mlops.runtime.log")

MAX_ROWS = 1000
MAX_SECONDS = 10.0
MAX_FILES = 500
MAX_PENDING = 10_000
SUFFIX = ".jsonl"


def scrub(request, answer, personal):
    """What of a call may be kept: its inputs, outputs and parameters
    without those named ``personal``."""
    inputs = request.get("inputs") if isinstance(request, dict) else None
    parameters = request.get("parameters") if isinstance(request, dict) else None
    record = {
        "inputs": [
            _tensor(t)
            for t in inputs or ()
            if isinstance(t, dict) and t.get("name") not in personal
        ],
        "outputs": [
            _tensor(t)
            for t in (answer or {}).get("outputs") or ()
            if t.get("name") not in personal
        ],
    }
    if isinstance(parameters, dict):
        kept = {k: v for k, v in parameters.items() if k not in personal}
        if kept:
            record["parameters"] = kept
    return record


def _tensor(tensor):
    # a tensor's own parameters are the protocol's, not the model's data
    return {
        key: tensor.get(key)
        for key in ("name", "shape", "datatype", "data")
        if key in tensor
    }


def stamp(epoch):
    """``epoch`` as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class InferenceLog:
    def __init__(
        self,
        folder,
        rate,
        personal=(),
        max_rows=MAX_ROWS,
        max_seconds=MAX_SECONDS,
        max_files=MAX_FILES,
        max_pending=MAX_PENDING,
    ):
        self.folder = str(folder)
        self.rate = max(0.0, min(1.0, float(rate)))
        self.personal = frozenset(personal)
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.max_files = max_files
        self.max_pending = max_pending
        # a new name per process: a restarted server never reuses a file's
        self.boot = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        self.sequence = 0
        self.pending = []
        self.oldest = None
        self.lock = threading.Lock()
        self.kept = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = None
        os.makedirs(self.folder, exist_ok=True)

    def sampled(self):
        return self.rate > 0 and random.random() < self.rate  # noqa: S311 - a sample, not a secret

    def add(self, record):
        """Keep ``record`` (already scrubbed) for the next file."""
        with self.lock:
            if len(self.pending) >= self.max_pending:
                self.dropped += 1
                return
            if not self.pending:
                self.oldest = time.monotonic()
            self.pending.append(record)

    def flush(self, force=False):
        """Write the waiting records as one file when there are enough of
        them, or they waited long enough (``force``: now). The file's name,
        or None."""
        with self.lock:
            if not self.pending:
                return None
            due = len(self.pending) >= self.max_rows or (
                time.monotonic() - self.oldest >= self.max_seconds
            )
            if not (due or force):
                return None
            rows, self.pending, self.oldest = self.pending, [], None
            self.sequence += 1
            name = f"{self.boot}-{self.sequence:08d}"
        if self._waiting() >= self.max_files:
            self.dropped += len(rows)
            _logger.warning(
                "inference log: %d files wait to be collected; %d records dropped",
                self.max_files,
                len(rows),
            )
            return None
        part = os.path.join(self.folder, name + ".part")
        try:
            os.makedirs(self.folder, exist_ok=True)
            with open(part, "wb") as handle:
                for row in rows:
                    handle.write(orjson.dumps(row))
                    handle.write(b"\n")
            os.replace(part, os.path.join(self.folder, name + SUFFIX))
        except OSError as error:
            self.dropped += len(rows)
            with contextlib.suppress(OSError):
                os.unlink(part)
            _logger.warning(
                "inference log: %d records not written: %s", len(rows), error
            )
            return None
        self.kept += len(rows)
        return name

    def _waiting(self):
        try:
            return sum(1 for n in os.listdir(self.folder) if n.endswith(SUFFIX))
        except OSError:
            return 0

    def start(self, interval=1.0):
        def loop():
            while not self._stop.wait(interval):
                self.flush()

        self._thread = threading.Thread(target=loop, name="inference-log", daemon=True)
        self._thread.start()

    def stop(self):
        """Write what waits, whatever its size: the server is going."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.flush(force=True)
