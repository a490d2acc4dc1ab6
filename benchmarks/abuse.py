"""``benchmarks/run abuse``: the model server while big bodies arrive.

The same MLP (64-256-256-10) served by

- ``before``: the model server of commit ``BASELINE`` (one 64 MiB body cap
  for every model, parsing and inference on the event loop), taken from git;
- ``after``: the model server now (a body cap from the model's inputs times
  ``--max-batch``, parsing and inference in worker threads);
- ``after, large batch``: the same with ``--max-batch 200000``, so the 48 MB
  bodies are accepted and run: what keeping them off the event loop buys.

Two callers each send a valid 48 MB body three times while a third sends
small (one-row) calls; measured: the server's peak RSS, the big bodies'
answers, and the small calls' latency (p50, p95, max) against the same
calls on the idle server. The last line says whether the targets hold:
``after`` stays under 300 MiB and its small calls' p95 under 50 ms. The
large-batch figures have no target: a worker thread keeps the event loop
free between C calls, but orjson's parse and numpy's conversion of a 48 MB
body hold the GIL for their whole length, so what bounds a small call's
wait is the per-model body cap, not the thread.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import devstack
import requests
from run import rss_mib

REPO = Path(__file__).resolve().parent.parent
BASELINE = "bbd429d"
BIG_ROWS = 60_000  # 64 floats a row: about 48 MB of JSON
SMALL = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


def _start(server, model, extra=()):
    port = devstack.free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(server),
            "--model",
            str(model),
            "--name",
            "mlp",
            "--version",
            "1",
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).ok:
                return process, url
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{server} did not start")


def _small_calls(url, stop, latencies):
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        session.post(f"{url}/v2/models/mlp/infer", json=SMALL, timeout=60)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)


def _figures(latencies):
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
        "calls": len(ordered),
    }


def measure(label, server, model, big, extra=()):
    process, url = _start(server, model, extra)
    try:
        idle = []
        session = requests.Session()
        for _ in range(200):
            started = time.perf_counter()
            session.post(f"{url}/v2/models/mlp/infer", json=SMALL, timeout=10)
            idle.append(time.perf_counter() - started)
        before_rss = rss_mib(process.pid)
        peak = [before_rss]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mib(process.pid))
                time.sleep(0.02)

        statuses = []

        def abuse():
            for _ in range(3):
                try:
                    answer = requests.post(
                        f"{url}/v2/models/mlp/infer",
                        data=big,
                        headers={"Content-Type": "application/json"},
                        timeout=120,
                    )
                    statuses.append(answer.status_code)
                except requests.RequestException as error:
                    statuses.append(type(error).__name__)

        busy = []
        threads = [threading.Thread(target=sample)]
        threads.append(threading.Thread(target=_small_calls, args=(url, stop, busy)))
        abusers = [threading.Thread(target=abuse) for _ in range(2)]
        for thread in threads + abusers:
            thread.start()
        for thread in abusers:
            thread.join()
        stop.set()
        for thread in threads:
            thread.join()
        return {
            "label": label,
            "idle_rss_mib": before_rss,
            "peak_rss_mib": peak[0],
            "big": dict(sorted(_count(statuses).items())),
            "idle": _figures(idle),
            "busy": _figures(busy),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def _count(values):
    counted = {}
    for value in values:
        counted[str(value)] = counted.get(str(value), 0) + 1
    return counted


def bench_abuse():
    sys.path.insert(0, str(REPO / "tests"))
    from addon_artifacts import artifacts  # noqa: PLC0415 - the tests' own module

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = work / "mlp.onnx"
        model.write_bytes(artifacts.onnx_mlp())
        before = work / "server_before.py"
        before.write_bytes(
            subprocess.run(
                ["git", "show", f"{BASELINE}:creativeflow_mlops/runtime/server.py"],
                cwd=REPO,
                check=True,
                capture_output=True,
            ).stdout
        )
        after = REPO / "creativeflow_mlops" / "model_server" / "server.py"
        row = [0.123456789] * 64
        big = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [BIG_ROWS, 64],
                        "datatype": "FP32",
                        "data": row * BIG_ROWS,
                    }
                ]
            }
        ).encode()
        print(f"abuse: two callers send a {len(big) / 1e6:.0f} MB body 3 times each")
        results = [
            measure("before", before, model, big),
            measure("after", after, model, big),
            measure("after, large batch", after, model, big, ("--max-batch", "200000")),
        ]
    for r in results:
        print(
            f"  {r['label']:<20} RSS {r['idle_rss_mib']:.0f} -> peak "
            f"{r['peak_rss_mib']:.0f} MiB; big bodies {r['big']}; small calls idle "
            f"p50 {r['idle']['p50_ms']:.1f} ms, while abused p50 "
            f"{r['busy']['p50_ms']:.1f} / p95 {r['busy']['p95_ms']:.1f} / max "
            f"{r['busy']['max_ms']:.0f} ms ({r['busy']['calls']} calls)"
        )
    old, new, large = results
    print(
        f"  peak RSS after/before: {new['peak_rss_mib'] / old['peak_rss_mib']:.2f}; "
        f"small-call p95 while abused, large batch/before: "
        f"{large['busy']['p95_ms'] / old['busy']['p95_ms']:.3f}"
    )
    holds = new["peak_rss_mib"] < 300 and new["busy"]["p95_ms"] < 50
    print(f"abuse targets hold: {'yes' if holds else 'NO'}")
    return holds
