"""The local inference runtime: one inference (``functional_io``) and a CPU
benchmark (``performance_benchmark``) of an ONNX model with onnxruntime."""

import statistics
import time

from .report import ERROR, Finding, ScanReport

ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
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


def make_inputs(session, signature=None, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for node in session.get_inputs():
        declared = _declared(signature, node.name)
        shape = declared.get("shape") or node.shape
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        dtype = declared.get("dtype") or ORT_TYPES.get(node.type)
        if dtype is None:
            raise ValueError(f"input {node.name} has type {node.type}, not supported")
        if dtype == "str":
            feeds[node.name] = np.array(
                ["x"] * int(np.prod(shape)), dtype=object
            ).reshape(shape)
        elif dtype == "bool":
            feeds[node.name] = rng.integers(0, 2, shape).astype(bool)
        elif dtype.startswith(("int", "uint")):
            feeds[node.name] = rng.integers(0, 10, shape).astype(dtype)
        else:
            feeds[node.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def functional_io(path, input_schema=None, output_schema=None):
    scan_type = "functional_io"
    try:
        session = _session(path)
        feeds = make_inputs(session, input_schema)
        outputs = session.run(None, feeds)
    except Exception as error:  # noqa: BLE001 - the runtime's refusal is the verdict
        return ScanReport(
            scan_type, "failed", f"inference failed: {str(error).splitlines()[0][:300]}"
        )
    findings = []
    described = []
    for node, value in zip(session.get_outputs(), outputs, strict=True):
        declared = _declared(output_schema, node.name)
        shape = list(getattr(value, "shape", ()))
        dtype = str(getattr(value, "dtype", type(value).__name__))
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
            else {e.get("name") for e in output_schema if isinstance(e, dict)}
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


def benchmark(path, runs=50, warmup=5, input_schema=None, threads=1):
    scan_type = "performance_benchmark"
    try:
        session = _session(path, threads)
        feeds = make_inputs(session, input_schema)
        for _ in range(warmup):
            session.run(None, feeds)
        latencies = []
        started = time.perf_counter()
        for _ in range(runs):
            begin = time.perf_counter()
            session.run(None, feeds)
            latencies.append((time.perf_counter() - begin) * 1000)
        elapsed = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001
        return ScanReport(
            scan_type, "failed", f"benchmark failed: {str(error).splitlines()[0][:300]}"
        )
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
