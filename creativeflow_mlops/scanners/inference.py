"""The local inference runtime: one inference (``functional_io``) and a CPU
benchmark (``performance_benchmark``) of an ONNX model with onnxruntime."""

import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time

from .report import ERROR, Finding, ScanReport

# the generated inputs of one inference, at most; a model wanting more is
# not run here (``skipped`` with the reason) rather than exhausting the worker
MAX_INPUT_BYTES = 256 * 1024 * 1024
RUN_TIMEOUT = 120  # seconds for one inference; the benchmark gets 5x


class NotRunnable(Exception):
    """The local runtime cannot run this model here (a reason, not a fault)."""


def _error_line(error):
    return (str(error) or type(error).__name__).splitlines()[0][:300]


ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def _session(path, threads=1):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _declared(signature, name):
    """Shape and dtype of ``name`` in a declared signature, which may be
    ``{name: {"shape", "dtype"}}`` or ``[{"name", "shape", "dtype"}]``."""
    if isinstance(signature, dict):
        entry = signature.get(name)
        return entry if isinstance(entry, dict) else {}
    if isinstance(signature, list):
        for entry in signature:
            if isinstance(entry, dict) and entry.get("name") == name:
                return entry
    return {}


def _declared_shape(declared, node):
    shape = declared.get("shape") or node.shape
    if not isinstance(shape, list | tuple):
        raise ValueError(f"the signature's shape of {node.name} is not a list")
    return [
        d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else 1
        for d in shape
    ]


def make_inputs(session, signature=None, seed=0, max_bytes=MAX_INPUT_BYTES):
    """Inputs for one inference, from the declared signature or the model's
    own (dynamic dimensions taken as 1), within ``max_bytes``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    plan = []
    total = 0
    for node in session.get_inputs():
        declared = _declared(signature, node.name)
        shape = _declared_shape(declared, node)
        dtype = declared.get("dtype") or ORT_TYPES.get(node.type)
        if not isinstance(dtype, str):
            raise NotRunnable(f"input {node.name} has type {node.type}, not supported")
        try:
            itemsize = 8 if dtype == "str" else np.dtype(dtype).itemsize
        except TypeError as error:
            raise ValueError(f"the signature's dtype {dtype!r} is unknown") from error
        total += math.prod(shape) * itemsize
        if total > max_bytes:
            raise NotRunnable(
                f"the inputs need over {max_bytes // 1024**2} MiB "
                f"({node.name}: {shape}); the local runtime does not run it"
            )
        plan.append((node.name, shape, dtype))
    feeds = {}
    for name, shape, dtype in plan:
        if dtype == "str":
            feeds[name] = np.full(shape, "x", dtype=object)
        elif dtype == "bool":
            feeds[name] = rng.integers(0, 2, shape, dtype=np.uint8).astype(bool)
        elif dtype.startswith(("int", "uint")):
            feeds[name] = rng.integers(0, 10, shape, dtype=dtype)
        elif dtype in ("float32", "float64"):
            feeds[name] = rng.standard_normal(shape, dtype=dtype)
        else:
            feeds[name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return feeds


def _run_options(timeout):
    """RunOptions that onnxruntime stops after ``timeout`` seconds."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    timer = threading.Timer(timeout, setattr, (options, "terminate", True))
    timer.daemon = True
    timer.start()
    return options, timer


def functional_io(path, input_schema=None, output_schema=None, timeout=RUN_TIMEOUT):
    scan_type = "functional_io"
    timer = None
    try:
        session = _session(path)
        feeds = make_inputs(session, input_schema)
        options, timer = _run_options(timeout)
        outputs = session.run(None, feeds, options)
    except NotRunnable as reason:
        return ScanReport.skipped(scan_type, str(reason))
    except Exception as error:  # noqa: BLE001 - the runtime's refusal is the verdict
        return ScanReport(
            scan_type, "failed", f"inference failed: {_error_line(error)}"
        )
    finally:
        if timer:
            timer.cancel()
    findings = []
    described = []
    for node, value in zip(session.get_outputs(), outputs, strict=True):
        declared = dict(_declared(output_schema, node.name))
        # without a declared signature, the model's own declaration is checked
        declared.setdefault("dtype", ORT_TYPES.get(node.type))
        declared.setdefault("shape", node.shape)
        if not isinstance(declared["shape"], list | tuple):
            declared["shape"] = None
        shape = list(getattr(value, "shape", ()))
        dtype = str(getattr(value, "dtype", type(value).__name__))
        if dtype == "object":
            dtype = "str"
        described.append({"name": node.name, "shape": shape, "dtype": dtype})
        if declared.get("dtype") and declared["dtype"] != dtype:
            findings.append(
                Finding(
                    ERROR,
                    "output_dtype",
                    f"{node.name} is {dtype}, the signature says {declared['dtype']}",
                )
            )
        want = declared.get("shape")
        if want and (
            len(want) != len(shape)
            or any(
                isinstance(w, int) and w > 0 and w != s
                for w, s in zip(want, shape, strict=True)
            )
        ):
            findings.append(
                Finding(
                    ERROR, "output_shape", f"{node.name} has shape {shape}, not {want}"
                )
            )
    if isinstance(output_schema, dict | list) and output_schema:
        names = {o.name for o in session.get_outputs()}
        wanted = (
            set(output_schema)
            if isinstance(output_schema, dict)
            else {
                e["name"]
                for e in output_schema
                if isinstance(e, dict) and isinstance(e.get("name"), str)
            }
        )
        for missing in sorted(wanted - names):
            findings.append(
                Finding(ERROR, "output_missing", f"no output named {missing}")
            )
    details = {
        "inputs": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feeds.items()
        },
        "outputs": described,
    }
    return ScanReport.from_findings(
        scan_type,
        findings,
        f"one inference ran, {len(outputs)} output(s) as declared",
        details,
    )


def benchmark(
    path, runs=50, warmup=5, input_schema=None, threads=1, timeout=5 * RUN_TIMEOUT
):
    scan_type = "performance_benchmark"
    runs = max(2, int(runs))  # percentiles need two runs at least
    timer = None
    try:
        session = _session(path, threads)
        feeds = make_inputs(session, input_schema)
        options, timer = _run_options(timeout)
        for _ in range(warmup):
            session.run(None, feeds, options)
        latencies = []
        started = time.perf_counter()
        for _ in range(runs):
            begin = time.perf_counter()
            session.run(None, feeds, options)
            latencies.append((time.perf_counter() - begin) * 1000)
        elapsed = time.perf_counter() - started
    except NotRunnable as reason:
        return ScanReport.skipped(scan_type, str(reason))
    except Exception as error:  # noqa: BLE001
        return ScanReport(
            scan_type, "failed", f"benchmark failed: {_error_line(error)}"
        )
    finally:
        if timer:
            timer.cancel()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    metrics = {
        "latency_p50_ms": round(statistics.median(latencies), 3),
        "latency_p95_ms": round(cuts[94], 3),
        "latency_p99_ms": round(cuts[98], 3),
        "throughput_per_s": round(runs / elapsed, 2),
        "runs": runs,
        "threads": threads,
        "device": "cpu",
    }
    return ScanReport(
        scan_type,
        "passed",
        f"p50 {metrics['latency_p50_ms']} ms, p99 {metrics['latency_p99_ms']} ms, "
        f"{metrics['throughput_per_s']}/s on CPU",
        [],
        metrics,
    )


# ---------------------------------------------------------------------------
# Isolation: the model runs in a child process, not in the Odoo worker
# ---------------------------------------------------------------------------

_CHILD = """
import importlib.util, json, sys
folder = sys.argv[1]
spec = importlib.util.spec_from_file_location(
    "mlops_scanners", folder + "/__init__.py", submodule_search_locations=[folder]
)
package = importlib.util.module_from_spec(spec)
sys.modules["mlops_scanners"] = package
spec.loader.exec_module(package)
from mlops_scanners import inference
request = json.load(sys.stdin)
report = getattr(inference, request["check"])(request["path"], **request["kwargs"])
json.dump(report.to_dict(), sys.stdout, default=str)
"""

CHECKS = ("functional_io", "benchmark")


def run_isolated(check, path, memory_mb=8192, timeout=900, **kwargs):
    """Run ``functional_io`` or ``benchmark`` on ``path`` in a child
    process whose address space is capped at ``memory_mb`` and which is
    killed after ``timeout`` seconds: a model that exhausts memory, hangs or
    crashes onnxruntime fails its scan and the Odoo worker goes on."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}")
    scan_type = "functional_io" if check == "functional_io" else "performance_benchmark"

    def limit():  # in the child, before exec
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, os.path.dirname(os.path.abspath(__file__))],
            input=json.dumps({"check": check, "path": str(path), "kwargs": kwargs}),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, no threads touched
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ScanReport(scan_type, "failed", f"the model ran over {timeout} s")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return ScanReport(
            scan_type,
            "failed",
            f"the runtime stopped (exit {result.returncode}) within {memory_mb} MiB: "
            f"{last}",
        )
    try:
        return ScanReport.from_dict(json.loads(result.stdout))
    except (ValueError, KeyError, TypeError) as error:
        return ScanReport(
            scan_type, "failed", f"the runtime's answer is unreadable: {error}"
        )
