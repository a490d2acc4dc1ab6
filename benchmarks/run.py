#!/usr/bin/env python3
"""Benchmarks, each against a baseline measured in the same run.

    benchmarks/run            all of them
    benchmarks/run upload     1 GiB through Odoo's upload endpoint and the
                              direct multipart path, against the minio SDK's
                              fput_object to the same S3 server; and the
                              integrity job's read-back of such an object
    benchmarks/run pickle     the pickle scanner against modelscan and
                              fickling on ~500 MB of arrays and 2M tuples
    benchmarks/run validation validation rounds through a real Odoo with two
                              job channels (50 small and 4 100 MiB ONNX
                              models) against the scans alone
                              (benchmarks/validation.py)
    benchmarks/run deploy     approval to the staging endpoint answering,
                              through a real Odoo, against the local target's
                              adapter alone (benchmarks/deploy.py)
    benchmarks/run registry   registry reads with 1,000 models and 10,000
                              versions, ours in prefork mode against MLflow 3
                              (benchmarks/registry.py)
    benchmarks/run serve      one ONNX model through our invoke URL, our model
                              server alone, a bare stdlib server, a lean
                              uvicorn app, KServe and MLServer (wrk, 1 and 20
                              connections; benchmarks/serve.py)
    benchmarks/run k8s        the kubernetes target on a real API server:
                              approval to manifests applied (p50, p95), one
                              reconciliation pass over 500 deployments, a
                              100 MiB ModelCar pushed against a plain blob
                              upload (benchmarks/k8s.py)
    benchmarks/run gitops     the gitops target on a local git server:
                              approval to commit pushed and to pull request
                              opened (p50, p95) through Odoo, against the
                              adapter alone; 100 promotions in a row on one
                              repository (benchmarks/gitops.py)
    benchmarks/run monitor    drift on 100,000 rows x 50 features against
                              Evidently's DataDriftPreset; the inference
                              log's cost at 20 connections; its ingestion
                              into S3 and PostgreSQL (benchmarks/monitor.py)
    benchmarks/run abuse      the model server while 48 MB bodies arrive:
                              peak memory and small calls' latency, now
                              against the server before its body caps and
                              worker threads (benchmarks/abuse.py)

Needs what bin/test needs (an installed Odoo 18, PostgreSQL), plus
requests-toolbelt. Figures are printed; nothing is asserted.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests"))

import devstack  # noqa: E402
import testservers  # noqa: E402

MiB = 1024 * 1024
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "3"))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss(threading.Thread):
    """Samples a process's RSS every 20 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_mib(pid)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self._halt.set()
        self.join()
        return self.peak


def child_peak(cmd, **kwargs):
    """Run ``cmd``: (seconds, peak RSS MiB of the child, completed process)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )
    elapsed = time.perf_counter() - started
    numbers = [line for line in result.stderr.splitlines() if line.strip().isdigit()]
    peak_kib = int(numbers[-1]) if numbers else 0
    return elapsed, peak_kib / 1024, result


# ---------------------------------------------------------------------------
# Upload
# ---------------------------------------------------------------------------

SETUP = """
import datetime
backend = env["mlops.storage.backend"].create({{
    "name": "bench", "code": "bench", "kind": "s3", "endpoint": "{endpoint}",
    "bucket": "{bucket}", "secure": False}})
env.ref("creativeflow_mlops.storage_backend_local").is_default = False
backend.is_default = True
backend._get_store().ensure_bucket()
env["ir.config_parameter"].set_param("creativeflow_mlops.max_upload_gb", "8")
admin = env.ref("base.user_admin")
key = env["res.users.apikeys"].with_user(admin)._generate(
    None, "bench", datetime.datetime.now() + datetime.timedelta(days=1))
env.cr.commit()
print("KEY=" + key)
"""


def bench_upload(size_mib):
    import requests
    from requests_toolbelt import MultipartEncoder

    odoo = devstack.find_odoo()
    db_settings = devstack.database_settings()
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    artifact = work / "artifact.bin"
    print(f"writing a {size_mib} MiB artifact", flush=True)
    with open(artifact, "wb") as handle:
        block = os.urandom(4 * MiB)
        for _ in range(size_mib // 4):
            handle.write(block)
    size = artifact.stat().st_size
    with testservers.SeaweedS3(work / "s3") as s3:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        env = dict(
            os.environ,
            MLOPS_STORAGE_BENCH_ACCESS_KEY=testservers.ACCESS_KEY,
            MLOPS_STORAGE_BENCH_SECRET_KEY=testservers.SECRET_KEY,
            MLOPS_STATE_DIR=str(work / "state"),
        )
        os.environ.update(MLOPS_STATE_DIR=env["MLOPS_STATE_DIR"])
        port = testservers.free_port()
        config = devstack.write_config(odoo, db_settings, "bench", port)
        dbname = "mlops_bench"
        devstack.drop_database(db_settings, dbname)
        devstack.install_addon(config, dbname)
        shell = subprocess.run(
            [
                sys.executable,
                "-m",
                "odoo",
                "shell",
                "-c",
                str(config),
                "-d",
                dbname,
                "--log-level=warn",
                "--no-http",
            ],
            input=SETUP.format(endpoint=s3.endpoint, bucket=bucket),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        key = next(
            line[4:] for line in shell.stdout.splitlines() if line.startswith("KEY=")
        )
        server = subprocess.Popen(
            devstack.odoo_command(
                config, "-d", dbname, "--log-level=warn", "--workers=0"
            ),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/mlops/api/v1"
        headers = {"Authorization": f"Bearer {key}"}
        try:
            for _ in range(240):
                try:
                    requests.get(f"{base}/models", headers=headers, timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.5)
            client = testservers.minio_client(s3.endpoint)

            sdk_keys = []

            def sdk():
                sdk_keys.append(f"sdk/{uuid.uuid4().hex}")
                started = time.perf_counter()
                client.fput_object(
                    bucket, sdk_keys[-1], str(artifact), part_size=16 * MiB
                )
                return time.perf_counter() - started

            def integrity():
                """What the queued verification does to a stored object."""
                store = load_storage_adapter().S3Store(
                    s3.endpoint,
                    testservers.ACCESS_KEY,
                    testservers.SECRET_KEY,
                    bucket,
                )
                started = time.perf_counter()
                store.hash_object(sdk_keys[0])
                return time.perf_counter() - started

            def through_odoo(version):
                baseline = rss_mib(server.pid)
                sampler = PeakRss(server.pid)
                sampler.start()
                started = time.perf_counter()
                with open(artifact, "rb") as handle:
                    encoder = MultipartEncoder(
                        {
                            "metadata": json.dumps(
                                {
                                    "model": "bench",
                                    "version": version,
                                    "model_format": "other",
                                }
                            ),
                            "file": (
                                "artifact.bin",
                                handle,
                                "application/octet-stream",
                            ),
                        }
                    )
                    response = requests.post(
                        f"{base}/models/upload",
                        data=encoder,
                        headers={**headers, "Content-Type": encoder.content_type},
                        timeout=600,
                    )
                elapsed = time.perf_counter() - started
                peak = sampler.stop()
                response.raise_for_status()
                return elapsed, peak - baseline

            def direct(version, threads=3):
                started = time.perf_counter()
                answer = requests.post(
                    f"{base}/uploads",
                    headers=headers,
                    json={
                        "model": "bench",
                        "version": version,
                        "filename": "artifact.bin",
                        "size": size,
                        "metadata": {"model_format": "other"},
                    },
                    timeout=60,
                ).json()
                part_size = answer["part_size"]
                sessions = threading.local()  # keep-alive, as the SDK has

                def put(part):
                    with open(artifact, "rb") as handle:
                        handle.seek((part["part_number"] - 1) * part_size)
                        data = handle.read(part_size)
                    if not hasattr(sessions, "http"):
                        sessions.http = requests.Session()
                    reply = sessions.http.put(part["url"], data=data, timeout=600)
                    reply.raise_for_status()
                    return {
                        "part_number": part["part_number"],
                        "etag": reply.headers["ETag"],
                    }

                with ThreadPoolExecutor(threads) as pool:
                    etags = list(pool.map(put, answer["parts"]))
                parts_done = time.perf_counter() - started
                done = requests.post(
                    f"{base}/uploads/{answer['upload_id']}/complete",
                    headers=headers,
                    json={"parts": etags},
                    timeout=600,
                )
                done.raise_for_status()
                return parts_done, time.perf_counter() - started

            mb = size / 1e6
            # interleaved rounds: drift of the machine or of the S3 server's
            # volumes touches every path alike
            sdk_times, odoo_runs, direct_runs = [], [], []
            for i in range(ROUNDS):
                sdk_times.append(sdk())
                odoo_runs.append(through_odoo(f"1.0.{i}"))
                direct_runs.append(direct(f"2.0.{i}"))
            verify = min(integrity() for _ in range(2))
            sdk_best = min(sdk_times)
            odoo_best = min(t for t, _ in odoo_runs)
            print(f"\nupload of {size_mib} MiB to SeaweedFS S3 (best of {ROUNDS})")
            print(
                f"  minio SDK fput_object        {mb / sdk_best:7.1f} MB/s  (baseline)"
            )
            print(
                f"  POST /models/upload (Odoo)   {mb / odoo_best:7.1f} MB/s  "
                f"ratio {sdk_best / odoo_best:.2f}x  Odoo RSS growth "
                f"{max(g for _, g in odoo_runs):.0f} MiB"
            )
            parts_best = min(p for p, _ in direct_runs)
            total_best = min(t for _, t in direct_runs)
            print(
                f"  direct multipart, parts      {mb / parts_best:7.1f} MB/s  "
                f"ratio {sdk_best / parts_best:.2f}x"
            )
            print(
                f"  direct multipart + complete  {mb / total_best:7.1f} MB/s  "
                f"ratio {sdk_best / total_best:.2f}x  (until the 202 answer)"
            )
            print(
                f"  + verification job (queued)  {mb / verify:7.1f} MB/s  "
                f"{verify:.1f} s reading the object back and hashing it"
            )
            registered = total_best + verify
            print(
                f"  direct, until registered     {mb / registered:7.1f} MB/s  "
                f"ratio {sdk_best / registered:.2f}x  (the client is done at 202; "
                "the version leaves draft after the job)"
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
            devstack.drop_database(db_settings, dbname)


def load_storage_adapter():
    """The addon's S3 store alone: the adapters package is plain Python,
    loaded without Odoo."""
    from serve import adapter  # noqa: PLC0415 - numpy only when needed

    return adapter("storage_s3")


# ---------------------------------------------------------------------------
# Pickle scanning
# ---------------------------------------------------------------------------

# the scanners package is plain Python: load it alone, without the addon
OURS = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('scanners', {init!r}, "
    "submodule_search_locations=[{folder!r}]); "
    "module = importlib.util.module_from_spec(spec); sys.modules['scanners'] = module; "
    "spec.loader.exec_module(module); "
    "from scanners import pickle_scan; "
    "r = pickle_scan.scan_file(sys.argv[1]); print(r.state, r.summary)"
)


def bench_pickle():
    import pickle_corpus

    work = Path(tempfile.mkdtemp(prefix="mlops-pickle-bench-"))
    shapes = {
        "arrays (~500 MB)": work / "arrays.pkl",
        "2M tuples": work / "tuples.pkl",
    }
    print("writing the pickles", flush=True)
    pickle_corpus.write_large_arrays(shapes["arrays (~500 MB)"], 500)
    pickle_corpus.write_two_million_tuples(shapes["2M tuples"])
    folder = REPO / "creativeflow_mlops" / "scanners"
    ours = OURS.format(init=str(folder / "__init__.py"), folder=str(folder))
    tools = {
        "creativeflow": lambda p: [sys.executable, "-c", ours, str(p)],
        "modelscan": lambda p: ["modelscan", "scan", "-p", str(p)],
        "fickling": lambda p: ["fickling", "--check-safety", str(p)],
    }
    for shape, path in shapes.items():
        print(f"\n{shape}: {path.stat().st_size / 1e6:.0f} MB")
        figures = {}
        for name, cmd in tools.items():
            # in the scratch folder: fickling writes safety_results.json where
            # it runs
            elapsed, peak, result = child_peak(cmd(path), cwd=work)
            if name == "creativeflow":
                verdict = result.stdout.split()[0] if result.stdout else "error"
                alarm = verdict != "passed"
            else:
                alarm = result.returncode != 0
            figures[name] = elapsed
            print(
                f"  {name:13s} {elapsed:7.1f} s  peak RSS {peak:7.0f} MiB  "
                f"{'ALARM (false: the file is benign)' if alarm else 'clean'}"
            )
        mine = figures["creativeflow"]
        print(
            f"  speed vs modelscan: {figures['modelscan'] / mine:.1f}x, "
            f"vs fickling: {figures['fickling'] / mine:.1f}x"
        )


def _bench_validation():
    from validation import bench_validation

    bench_validation()


def _bench_registry():
    from registry import bench_registry

    bench_registry()


def _bench_deploy():
    from deploy import bench_deploy

    bench_deploy()


def _bench_serve():
    from serve import bench_serve

    bench_serve()


def _bench_k8s():
    from k8s import bench_k8s

    bench_k8s()


def _bench_gitops():
    from gitops import bench_gitops

    bench_gitops()


def _bench_monitor():
    from monitor import bench_monitor

    bench_monitor()


def _bench_abuse():
    from abuse import bench_abuse

    bench_abuse()


BENCHMARKS = {
    "pickle": bench_pickle,
    "upload": lambda: bench_upload(int(os.environ.get("MLOPS_BENCH_MIB", "1024"))),
    "validation": _bench_validation,
    "registry": _bench_registry,
    "deploy": _bench_deploy,
    "serve": _bench_serve,
    "abuse": _bench_abuse,
    "k8s": _bench_k8s,
    "gitops": _bench_gitops,
    "monitor": _bench_monitor,
}


def main(argv):
    """Run the benchmark ``argv[0]`` names, or every one (``all``, the
    default); a name it does not know is an error that lists the choices."""
    what = argv[0] if argv else "all"
    if what != "all" and what not in BENCHMARKS:
        print(
            f"benchmarks/run: no benchmark {what!r}; choose one of: "
            f"{', '.join(BENCHMARKS)}, or all",
            file=sys.stderr,
        )
        return 2
    for name, bench in BENCHMARKS.items():
        if what in (name, "all"):
            bench()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
