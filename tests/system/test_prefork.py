"""The same rounds on Odoo in prefork mode (``--workers 2``): HTTP workers
in their own processes, queue_job's runner in another."""

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
