"""``benchmarks/run monitor``: what monitoring costs.

1. Drift on 100,000 logged rows of 50 features (10 of them shifted by half
   a standard deviation, 5 by a twentieth) against a reference of as many:
   ours (``adapters/drift.py``, numpy and scipy) against Evidently's
   ``DataDriftPreset`` (0.4.40, in its own virtualenv under
   ``$MLOPS_BENCH_PEERS``) on the same data, each in a process of its own
   loading the same ``.npy`` files: wall time (the best of three runs),
   memory (the process's peak, ``ru_maxrss``, less what it held once the
   data was loaded: the memory the drift takes; the whole peak is printed
   too), and both verdicts, feature by feature, which must be the same.
2. The inference log's cost on the model server: requests per second at
   20 connections (wrk) without a log and at a 1 % sampling rate (and at
   100 %, for scale), in interleaved rounds, the median of each.
3. Ingestion: inference log files stored and indexed through the product's
   own path (``services.inference_log.store``: the object store on a real
   S3, the batch, the index rows in PostgreSQL), in calls per second, in an
   ``odoo shell`` on a fresh database.

Its last line says whether the targets hold: drift at least 3x faster than
Evidently at no more than a third of its memory, with the same verdicts;
the log at a 1 % rate costs under 5 % of throughput.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("MLOPS_BENCH_DRIFT_ROWS", "100000"))
FEATURES = 50
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("MLOPS_BENCH_SECONDS", "8"))
EVIDENTLY = ["evidently==0.4.40", "pandas<2.2", "numpy<2"]

OURS = textwrap.dedent(
    """
    import importlib.util, json, resource, sys, time
    import numpy as np
    spec = importlib.util.spec_from_file_location("drift", sys.argv[1])
    drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift)
    def rss_mib():
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    reference, current = np.load(sys.argv[2]), np.load(sys.argv[3])
    names = [f"f{j}" for j in range(reference.shape[1])]
    loaded = rss_mib()
    best = None
    for _ in range(3):
        started = time.perf_counter()
        report = drift.dataset_drift(
            {n: reference[:, j] for j, n in enumerate(names)},
            {n: current[:, j] for j, n in enumerate(names)},
        )
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    print(json.dumps({
        "seconds": best,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loaded_mib": loaded,
        "dataset": report.drifted,
        "features": {f.name: f.drifted for f in report.features},
        "methods": sorted({f.method for f in report.features}),
    }))
    """
)

THEIRS = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np, pandas as pd
    from evidently.metric_preset import DataDriftPreset
    from evidently.report import Report
    def rss_mib():
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    reference, current = np.load(sys.argv[1]), np.load(sys.argv[2])
    names = [f"f{j}" for j in range(reference.shape[1])]
    loaded = rss_mib()
    best = None
    for _ in range(3):
        started = time.perf_counter()
        report = Report(metrics=[DataDriftPreset()])
        report.run(
            reference_data=pd.DataFrame(reference, columns=names),
            current_data=pd.DataFrame(current, columns=names),
        )
        result = report.as_dict()
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    columns = result["metrics"][1]["result"]["drift_by_columns"]
    print(json.dumps({
        "seconds": best,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loaded_mib": loaded,
        "dataset": result["metrics"][0]["result"]["dataset_drift"],
        "features": {n: c["drift_detected"] for n, c in columns.items()},
        "methods": sorted({c["stattest_name"] for c in columns.values()}),
    }))
    """
)


def _venv():
    root = Path(
        os.environ.get("MLOPS_BENCH_PEERS")
        or Path.home() / ".cache" / "creativeflow-mlops" / "peers"
    )
    python = root / "evidently" / "bin" / "python"
    if not python.exists():
        print(f"  making the evidently virtualenv (once) under {root}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(root / "evidently")], check=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EVIDENTLY], check=True
        )
    return str(python)


def _run(python, script, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [python, handle.name, *map(str, args)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    return json.loads(out.strip().splitlines()[-1])


def drift(work):
    rng = np.random.default_rng(2026)
    reference = rng.standard_normal((ROWS, FEATURES))
    current = rng.standard_normal((ROWS, FEATURES))
    current[:, :10] += 0.5  # moved
    current[:, 10:15] += 0.05  # barely: under the 0.1 distance
    np.save(work / "reference.npy", reference)
    np.save(work / "current.npy", current)
    ours = _run(
        sys.executable,
        OURS,
        REPO / "creativeflow_mlops" / "adapters" / "drift.py",
        work / "reference.npy",
        work / "current.npy",
    )
    theirs = _run(_venv(), THEIRS, work / "reference.npy", work / "current.npy")
    return ours, theirs


def log_cost(work):
    """Median requests per second at 20 connections: no log, 1 %, 100 %."""
    import serve  # noqa: PLC0415 - the benchmarks folder is on the path

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    processes = serve.adapter("processes")
    artifacts = serve._artifacts()
    model = work / "mlp.onnx"
    model.write_bytes(artifacts.onnx_mlp())
    runtime = processes.LocalRuntime(work / "runtime")
    rates = {"no log": 0.0, "1 %": 0.01, "100 %": 1.0}
    urls = {}
    try:
        for label, rate in rates.items():
            key = f"log{int(rate * 100)}"
            handle = runtime.start(
                processes.ProcessSpec(
                    key=key,
                    model_path=str(model),
                    name="mlp",
                    version="1",
                    port=processes.free_port(),
                    log_dir=str(work / "spool" / key),
                    log_rate=rate,
                )
            )
            urls[label] = f"http://127.0.0.1:{handle.port}/v2/models/mlp/infer"
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": [0.5] * 64,
                    }
                ]
            }
        )
        figures = {label: [] for label in rates}
        for _round in range(ROUNDS):
            for label, url in urls.items():
                result = serve._wrk(url, body, {}, 20, SECONDS)
                if result["errors"] or result["socket_errors"]:
                    raise RuntimeError(f"{label}: calls failed under load: {result}")
                figures[label].append(result["rps"])
    finally:
        for key in list(runtime.running()):
            runtime.stop(key, timeout=10)
    logged = sum(
        sum(1 for _line in open(path, encoding="utf-8"))
        for path in (work / "spool").rglob("*.jsonl")
    )
    return {label: statistics.median(v) for label, v in figures.items()}, logged


INGEST = textwrap.dedent(
    """
    import time, uuid, orjson
    from odoo.addons.creativeflow_mlops.services import inference_log
    FILES, ROWS = {files}, {rows}
    model = env["mlops.model"].create({{"name": "ingest-" + uuid.uuid4().hex[:6]}})
    version = env["mlops.model.version"].create(
        {{"model_id": model.id, "version": "1", "state": "validating"}}
    )
    deployment = env["mlops.deployment"].create({{"version_id": version.id}})
    row = {{
        "at": "2026-12-05T00:00:00.000Z", "status": 200, "latency_ms": 1.5,
        "model": "m", "version": "1",
        "inputs": [{{"name": "x", "shape": [1, 64], "datatype": "FP32",
                    "data": [0.5] * 64}}],
        "outputs": [{{"name": "y", "shape": [1, 10], "datatype": "FP32",
                     "data": [0.1] * 10}}],
    }}
    files = [
        b"".join(
            orjson.dumps({{**row, "request_id": f"{{f}}-{{n}}"}}) + b"\\n"
            for n in range(ROWS)
        )
        for f in range(FILES)
    ]
    env.cr.commit()
    started = time.perf_counter()
    for f, data in enumerate(files):
        inference_log.store(deployment, f"bench-{{f}}", data, "runtime")
        env.cr.commit()
    elapsed = time.perf_counter() - started
    count = env["mlops.inference.record"].search_count(
        [("deployment_id", "=", deployment.id)]
    )
    print("INGEST", FILES * ROWS / elapsed, count, elapsed)
    """
)


def ingestion(work, files=50, rows=1000):
    """Calls per second stored and indexed, through an ``odoo shell``."""
    import devstack  # noqa: PLC0415
    import validation  # noqa: PLC0415

    stack = validation._Stack(work / "odoo")
    try:
        config = devstack.write_config(
            devstack.find_odoo(), stack.db_settings, "bench-ingest", 0
        )
        out = subprocess.run(
            devstack.odoo_command(
                config, "-d", stack.dbname, "--no-http", subcommand="shell"
            ),
            input=INGEST.format(files=files, rows=rows),
            capture_output=True,
            text=True,
            check=True,
            env={
                **os.environ,
                "MLOPS_STORAGE_BENCH_ACCESS_KEY": validation.testservers.ACCESS_KEY,
                "MLOPS_STORAGE_BENCH_SECRET_KEY": validation.testservers.SECRET_KEY,
            },
        ).stdout
    finally:
        stack.close()
    line = next(x for x in out.splitlines() if x.startswith("INGEST"))
    _tag, rate, count, seconds = line.split()
    return float(rate), int(count), float(seconds)


def bench_monitor():
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-monitor-"))
    missed = []
    print(f"drift: {ROWS:,} rows x {FEATURES} features against as many", flush=True)
    ours, theirs = drift(work)
    for name, figures in (("ours", ours), ("Evidently DataDriftPreset", theirs)):
        figures["work_mib"] = figures["peak_mib"] - figures["loaded_mib"]
        print(
            f"  {name}: {figures['seconds']:.2f} s; peak {figures['peak_mib']:.0f} "
            f"MiB, {figures['loaded_mib']:.0f} of them with the data loaded, "
            f"{figures['work_mib']:.0f} for the drift; "
            f"{sum(figures['features'].values())} features drifted, dataset "
            f"{'drifted' if figures['dataset'] else 'not drifted'} "
            f"({', '.join(figures['methods'])})"
        )
    speed = theirs["seconds"] / ours["seconds"]
    # the memory the drift itself takes: both hold the same data first
    memory = ours["work_mib"] / theirs["work_mib"]
    print(
        f"  ours: {speed:.1f}x faster; {memory:.2f}x the memory the drift takes "
        f"({ours['peak_mib'] / theirs['peak_mib']:.2f}x the whole process's peak)"
    )
    differ = sorted(
        n for n in ours["features"] if ours["features"][n] != theirs["features"].get(n)
    )
    if differ or ours["dataset"] != theirs["dataset"]:
        missed.append(f"verdicts differ from Evidently's on {differ or 'the dataset'}")
    if speed < 3:
        missed.append(f"drift {speed:.1f}x Evidently's speed (target >= 3x)")
    if memory > 1 / 3:
        missed.append(f"drift at {memory:.2f}x Evidently's memory (target <= 0.33x)")
    print(
        f"inference log on the model server, 20 connections, {ROUNDS} rounds",
        flush=True,
    )
    rps, logged = log_cost(work)
    for label, value in rps.items():
        print(f"  {label}: {value:,.0f} req/s")
    cost = 1 - rps["1 %"] / rps["no log"]
    print(
        f"  a 1 % log costs {100 * cost:.1f} % of throughput ({logged:,} calls logged)"
    )
    if cost >= 0.05:
        missed.append(f"the 1 % log costs {100 * cost:.1f} % (target < 5 %)")
    print("ingestion through the product (S3 + PostgreSQL), 50 files of 1,000 calls")
    rate, count, seconds = ingestion(work)
    print(f"  {rate:,.0f} calls/s stored and indexed ({count:,} in {seconds:.1f} s)")
    if count != 50 * 1000:
        missed.append(f"ingestion indexed {count} calls of 50,000")
    print(
        "targets (drift >= 3x Evidently's speed at <= 1/3 its memory, same "
        "verdicts; 1 % log < 5 % of throughput): "
        + ("all met" if not missed else "MISSED: " + "; ".join(missed))
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "tools"))
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    bench_monitor()
