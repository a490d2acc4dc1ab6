"""The same rounds on Odoo in prefork mode (``--workers 2``): HTTP workers
in their own processes, queue_job's runner in another."""

import time
from pathlib import Path

import pytest
import samples
from test_validation import _accepted, _assert_jobs_done, _upload_all

pytestmark = pytest.mark.system


def test_concurrent_rounds_settle_in_prefork_mode(prefork_stack, name):
    good = [
        (f"{name}-{n}", "1.0.0", samples.onnx_matmul(3 + n, 2, seed=n), "m.onnx", {})
        for n in range(8)
    ]
    bad = samples.onnx_matmul(4, 2, external="../../etc/weights.bin")
    bad = [(f"{name}-bad-{n}", "1.0.0", bad, "m.onnx", {}) for n in range(6)]
    version_ids = _accepted(_upload_all(prefork_stack.rest, good + bad))
    states = prefork_stack.rest.wait_settled(version_ids, timeout=300)
    assert [states[v] for v in version_ids] == ["validated"] * 8 + [
        "validation_failed"
    ] * 6, states
    _assert_jobs_done(prefork_stack, version_ids)


def _children(pid):
    """{child pid: its command line} of a process, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmdline = (stat.parent / "cmdline").read_bytes()
                found[int(stat.parent.name)] = cmdline.replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_the_gevent_process_stays_up(prefork_stack):
    """Started as bin/serve starts it, Odoo in prefork mode keeps one gevent
    (websocket) process: it used to die at once and be started again about
    16 times a second (it was run from odoo/__main__.py)."""
    master = prefork_stack.server.process.pid

    def gevent():
        return {p for p, cmd in _children(master).items() if " gevent" in cmd}

    first = gevent()
    assert len(first) == 1, _children(master)
    time.sleep(3)
    assert gevent() == first, _children(master)
