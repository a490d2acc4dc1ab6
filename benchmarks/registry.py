"""``benchmarks/run registry``: registry reads at scale, ours against
MLflow 3's model registry on the same PostgreSQL, in the same run.

The same data on both: 1,000 models of 10 versions each (``MLOPS_BENCH_
MODELS``). Ours: Odoo in prefork mode as the README tells production to
run it (``--workers 2``), an API key per request; ``GET /models/<id>/
versions``, ``GET /versions/<id>`` and ``GET /endpoints`` (one live
deployment per model). MLflow: ``mlflow server --workers 2`` in its own
virtualenv (made once under ``~/.cache/creativeflow-mlops/peers``, with
uvloop and httptools as a tuned install has them); ``registered-models/
get``, ``model-versions/search`` and ``model-versions/get``. wrk at 1 and
20 connections, ``MLOPS_BENCH_SECONDS`` (10) each, ``MLOPS_BENCH_ROUNDS``
(3) times: the median of each figure (requests per second, p50/p95/p99),
and the ratios. Both databases are vacuumed and analysed once seeded, as
autovacuum would have them in production (and not vacuuming the seeded
tables while the reads are measured).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import devstack
import requests
import systemstack
from serve import _venv, wrk_figures

REPO = Path(__file__).resolve().parent.parent
MODELS = int(os.environ.get("MLOPS_BENCH_MODELS", "1000"))
VERSIONS = 10
DURATION = int(os.environ.get("MLOPS_BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "3"))

SEED = """
env = env(context=dict(env.context, tracking_disable=True, mail_notrack=True))
Model = env["mlops.model"].sudo()
models = Model.create([{"name": f"bench-{i:04d}"} for i in range(%(models)d)])
versions = env["mlops.model.version"].sudo()
for start in range(0, len(models), 100):
    batch = models[start:start + 100]
    created = versions.create([
        {"model_id": m.id, "version": f"1.{v}.0", "model_format": "onnx",
         "metrics": {"f1": 0.9}, "parameters": {"lr": 0.001}}
        for m in batch for v in range(%(versions)d)
    ])
    env.cr.commit()
target = env.ref("creativeflow_mlops.deployment_target_local")
last = versions.search([("version", "=", "1.%(last)d.0")])
deployments = env["mlops.deployment"].sudo().create([
    {"version_id": v.id, "environment": "production", "strategy": "rolling",
     "target_id": target.id, "traffic_percent": 100} for v in last
])
deployments.write({"state": "deploying"})
deployments.write({"state": "active"})
# these deployments have no artifact to serve: the runtime's supervisor
# would start (and fail) a model server for each, one a second, on the
# machine the reads are measured on
env.ref("creativeflow_mlops.ir_cron_runtime_supervisor").active = False
env.cr.commit()
print("SEEDED", models[0].id, last[0].id)
"""


def _median_wrk(url, headers, connections):
    """``_wrk`` ``ROUNDS`` times: each figure's median, the errors summed."""
    runs = [_wrk(url, headers, connections) for _ in range(ROUNDS)]
    figures = {
        name: statistics.median(run[name] for run in runs)
        for name in ("rps", "p50", "p90", "p95", "p99")
    }
    figures["errors"] = sum(run["errors"] for run in runs)
    figures["rps_range"] = (min(r["rps"] for r in runs), max(r["rps"] for r in runs))
    return figures


# wrk prints 50/75/90/99 only: the targets are p95, read off its histogram
PERCENTILES = """
done = function(summary, latency, requests)
  for _, p in ipairs({50, 95, 99}) do
    io.write(string.format("PCT %d %.3f\\n", p, latency:percentile(p) / 1000))
  end
end
"""


def _percentiles_script():
    script = Path(tempfile.gettempdir()) / "mlops-bench-percentiles.lua"
    script.write_text(PERCENTILES)
    return script


def _wrk(url, headers, connections):
    command = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections)]
    command += ["-d", f"{DURATION}s", "--latency", "--timeout", "10s"]
    command += ["-s", str(_percentiles_script())]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True
    ).stdout
    figures = wrk_figures(out)
    for percentile, ms in re.findall(r"^PCT (\d+) ([\d.]+)$", out, re.M):
        figures[f"p{percentile}"] = float(ms)
    return figures


# the targets, at 20 connections, against MLflow in the same run
TARGET_RPS_RATIO = 3.0
TARGET_P95_RATIO = 1 / 3
TARGET_P95_MS = 50.0


def verdict(figures):
    """The targets missed (empty: all met)."""
    missed = []
    for label in ("versions of a model", "one version", "endpoints"):
        mine = figures[("ours", label, 20)]
        if not mine["p95"] < TARGET_P95_MS:
            missed.append(f"{label}: p95 {mine['p95']:.1f} ms, not < {TARGET_P95_MS}")
        peer = figures.get(("mlflow", label, 20))
        if peer is None:
            continue
        if mine["rps"] < TARGET_RPS_RATIO * peer["rps"]:
            missed.append(f"{label}: {mine['rps'] / peer['rps']:.1f}x MLflow's req/s")
        if mine["p95"] > TARGET_P95_RATIO * peer["p95"]:
            missed.append(f"{label}: p95 {mine['p95'] / peer['p95']:.2f}x MLflow's")
    return missed


MLFLOW_SEED = """
import sys
from concurrent.futures import ThreadPoolExecutor
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1], sys.argv[1])
models, versions = int(sys.argv[2]), int(sys.argv[3])
def seed(i):
    name = f"bench-{i:04d}"
    client.create_registered_model(name)
    for v in range(versions):
        client.create_model_version(name, f"s3://bench/{name}/{v}", tags={"f1": "0.9"})
with ThreadPoolExecutor(8) as pool:
    list(pool.map(seed, range(models)))
print("SEEDED")
"""


def _mlflow(db_settings, work):
    python = Path(_venv("mlflow"))
    dbname = f"mlflow_bench_{uuid.uuid4().hex[:6]}"
    _sql(db_settings, f'CREATE DATABASE "{dbname}"')
    uri = (
        f"postgresql+psycopg2://{db_settings['db_user']}:{db_settings['db_password']}"
        f"@{db_settings['db_host']}:{db_settings['db_port']}/{dbname}"
    )
    port = devstack.free_port()
    log = (work / "mlflow.log").open("wb")
    server = subprocess.Popen(
        [
            str(python.with_name("mlflow")),
            "server",
            "--backend-store-uri",
            uri,
            "--default-artifact-root",
            str(work / "mlruns"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError((work / "mlflow.log").read_text()[-2000:])
    subprocess.run(
        [str(python), "-c", MLFLOW_SEED, url, str(MODELS), str(VERSIONS)],
        check=True,
        capture_output=True,
    )
    _sql(db_settings, "VACUUM ANALYZE", dbname)
    return server, url, dbname


def _sql(db_settings, statement, dbname="postgres"):
    cnx = devstack.connect(db_settings, dbname)
    try:
        cnx.autocommit = True
        cnx.cursor().execute(statement)
    finally:
        cnx.close()


def bench_registry():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-registry-"))
    db_settings = devstack.database_settings()
    os.environ["MLOPS_STATE_DIR"] = str(work / "state")
    odoo = devstack.find_odoo()
    config = devstack.write_config(odoo, db_settings, "bench-registry", 0)
    dbname = f"mlops_bench_{uuid.uuid4().hex[:6]}"
    print(f"installing the addon, seeding {MODELS} models x {VERSIONS} versions")
    devstack.install_addon(config, dbname)
    seeded = subprocess.run(
        devstack.odoo_command(config, "-d", dbname, "--no-http", subcommand="shell"),
        input=SEED % {"models": MODELS, "versions": VERSIONS, "last": VERSIONS - 1},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    model_id, version_id = map(int, re.search(r"SEEDED (\d+) (\d+)", seeded).groups())
    _sql(db_settings, "VACUUM ANALYZE", dbname)
    server = systemstack.OdooServer(
        db_settings, dbname, work / "state", workers=2, name="bench-registry"
    ).start()
    mlflow = mlflow_db = None
    try:
        admin = systemstack.WebSession(server.url, dbname, "admin", "admin")
        key = admin.make_api_key("benchmark")
        auth = {"Authorization": f"Bearer {key}"}
        base = f"{server.url}/mlops/api/v1"
        ours = {
            "versions of a model": f"{base}/models/{model_id}/versions",
            "one version": f"{base}/versions/{version_id}",
            "endpoints": f"{base}/endpoints",
        }
        # warmed on both workers (each keeps its own build of /endpoints)
        with ThreadPoolExecutor(4) as pool:
            for answer in pool.map(
                lambda url: requests.get(url, headers=auth, timeout=60),
                [url for url in ours.values() for _ in range(8)],
            ):
                answer.raise_for_status()
        figures = {}
        for label, url in ours.items():
            for connections in (1, 20):
                figures[("ours", label, connections)] = _median_wrk(
                    url, auth, connections
                )
        print("starting MLflow (--workers 2) and seeding it the same", flush=True)
        mlflow, mlflow_url, mlflow_db = _mlflow(db_settings, work)
        api = f"{mlflow_url}/api/2.0/mlflow"
        theirs = {
            "versions of a model": f"{api}/model-versions/search?filter="
            + requests.utils.quote("name='bench-0000'"),
            "one version": f"{api}/model-versions/get?name=bench-0000&version=10",
            "a model": f"{api}/registered-models/get?name=bench-0000",
        }
        for url in theirs.values():
            requests.get(url, timeout=30).raise_for_status()
        for label, url in theirs.items():
            for connections in (1, 20):
                figures[("mlflow", label, connections)] = _median_wrk(
                    url, {}, connections
                )
    finally:
        server.stop()
        if mlflow:
            os.killpg(mlflow.pid, 15)
            mlflow.wait(timeout=30)
        if mlflow_db:
            _sql(db_settings, f'DROP DATABASE IF EXISTS "{mlflow_db}"')
        devstack.drop_database(db_settings, dbname)
        # the supervisor starts the seeded deployments' router and servers
        systemstack.stop_runtime(work / "state" / "data")
    print(
        f"\nregistry reads, {MODELS} models x {VERSIONS} versions, wrk {DURATION} s, "
        f"medians of {ROUNDS}"
    )
    print(
        f"  {'':8s} {'read':22s} {'conns':>5s} {'req/s':>8s} {'(range)':>13s} "
        f"{'p50':>8s} {'p95':>8s} {'p99':>8s}"
    )
    for (who, label, connections), f in figures.items():
        low, high = f["rps_range"]
        print(
            f"  {who:8s} {label:22s} {connections:5d} {f['rps']:8.0f} "
            f"{f'({low:.0f}-{high:.0f})':>13s} "
            f"{f['p50']:7.1f}ms {f['p95']:7.1f}ms {f['p99']:7.1f}ms"
            + (f"  ({f['errors']} non-2xx)" if f["errors"] else "")
        )
    for label in ("versions of a model", "one version"):
        for connections in (1, 20):
            mine = figures[("ours", label, connections)]
            peer = figures[("mlflow", label, connections)]
            print(
                f"  {label}, {connections} conns: {mine['rps'] / peer['rps']:.1f}x "
                f"MLflow's req/s, p95 {mine['p95'] / peer['p95']:.2f}x its p95"
            )
    missed = verdict(figures)
    print(
        "  targets (20 conns: >= 3x MLflow's req/s, p95 <= 1/3 of its, < 50 ms): "
        + ("all met" if not missed else "MISSED: " + "; ".join(missed))
    )
    print(json.dumps({" ".join(map(str, k)): v for k, v in figures.items()}))
