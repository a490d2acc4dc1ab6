"""``benchmarks/run validation``: validation rounds through the product.

A real Odoo server (queue_job runner at two channels, as ``bin/serve``
runs it), a real S3 server; N small ONNX models uploaded over REST by four
clients at once, then a few large ones. For each version: from the 202 of
its upload to the moment its round settled (the version's write date when
it became validated), p50/p95, and validations per minute over the whole
batch. The baseline, measured in the same run: the same scans called
directly, one artifact after another in one process (no Odoo, no queue,
no S3), scaled to two channels; the ratio says what the orchestration
(HTTP, S3 reads, queue_job, the database, the settle job) costs.
"""

import hashlib
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import devstack
import systemstack
import testservers

REPO = Path(__file__).resolve().parent.parent
SMALL = int(os.environ.get("MLOPS_BENCH_VALIDATIONS", "50"))
LARGE = int(os.environ.get("MLOPS_BENCH_LARGE", "4"))
LARGE_MIB = 100


def _scanners():
    """The addon's scanners package alone: plain Python, no Odoo."""
    folder = REPO / "creativeflow_mlops" / "scanners"
    spec = importlib.util.spec_from_file_location(
        "scanners", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["scanners"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("scanners.catalog")


def onnx_model(rows, cols, seed):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((rows, cols), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cols])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


def baseline(catalog, artifacts, work):
    """Seconds to run every scan of the ONNX policy on each artifact, one
    after another, in this process: the work a round consists of."""
    started = time.perf_counter()
    for index, data in enumerate(artifacts):
        path = work / f"baseline-{index}.onnx"
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        ctx = catalog.ScanContext(
            model_format="onnx",
            filename=path.name,
            path=str(path),
            measure=lambda d=data, s=sha: (len(d), s),
            expected_size=len(data),
            expected_sha256=sha,
        )
        for scan_type in catalog.SPECS:
            if catalog.default_mode("onnx", scan_type) != catalog.OFF:
                catalog.run(scan_type, ctx)
        path.unlink()
    return time.perf_counter() - started


def _percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def through_odoo(stack, artifacts, label):
    """Upload every artifact (four clients at once), then wait for every
    round; returns (seconds from each 202 to its settlement, wall seconds)."""
    accepted = {}

    def send(item):
        index, data = item
        model = f"bench-{label}-{uuid.uuid4().hex[:6]}"
        response = stack.rest.upload(model, "1.0.0", data)
        response.raise_for_status()
        accepted[response.json()["version_id"]] = datetime.now(timezone.utc)

    started = datetime.now(timezone.utc)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, enumerate(artifacts)))
    settled = {}
    while len(settled) < len(accepted):
        rows = stack.admin.call(
            "mlops.model.version",
            "search_read",
            [("id", "in", list(accepted)), ("state", "!=", "validating")],
            fields=["state", "write_date"],
        )
        for row in rows:
            if row["state"] != "validated":
                raise RuntimeError(f"version {row['id']} is {row['state']}")
            settled[row["id"]] = _parse(row["write_date"])
        time.sleep(1)
    latencies = [max(0.0, (settled[v] - accepted[v]).total_seconds()) for v in accepted]
    wall = (max(settled.values()) - started).total_seconds()
    return latencies, wall


class _Stack:
    """The product on a fresh database, as the system tests drive it."""

    def __init__(self, work, env=None):
        self.db_settings = devstack.database_settings()
        os.environ["MLOPS_STATE_DIR"] = str(work / "state")
        odoo = devstack.find_odoo()
        config = devstack.write_config(odoo, self.db_settings, "bench-install", 0)
        self.dbname = f"mlops_bench_{uuid.uuid4().hex[:6]}"
        devstack.install_addon(config, self.dbname)
        self.s3 = testservers.SeaweedS3(work / "s3").start()
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        testservers.minio_client(self.s3.endpoint).make_bucket(bucket)
        self.server = systemstack.OdooServer(
            self.db_settings,
            self.dbname,
            work / "state",
            env={
                "MLOPS_STORAGE_BENCH_ACCESS_KEY": testservers.ACCESS_KEY,
                "MLOPS_STORAGE_BENCH_SECRET_KEY": testservers.SECRET_KEY,
                **(env or {}),
            },
            name="bench-validation",
        ).start()
        self.admin = systemstack.WebSession(
            self.server.url, self.dbname, "admin", "admin"
        )
        local = self.admin.call(
            "mlops.storage.backend", "search", [("is_default", "=", True)]
        )
        self.admin.call("mlops.storage.backend", "write", local, {"is_default": False})
        self.admin.call(
            "mlops.storage.backend",
            "create",
            {
                "name": "Bench S3",
                "code": "bench",
                "kind": "s3",
                "endpoint": self.s3.endpoint,
                "bucket": bucket,
                "secure": False,
                "is_default": True,
            },
        )
        self.rest = systemstack.RestClient(self.server.url, self.admin.make_api_key())

    def close(self):
        self.server.stop()
        self.s3.__exit__(None, None, None)
        devstack.drop_database(self.db_settings, self.dbname)


def bench_validation():
    catalog = _scanners()
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-validation-"))
    small = [onnx_model(8 + n % 24, 2 + n % 7, n) for n in range(SMALL)]
    side = int((LARGE_MIB * 1024 * 1024 / 4) ** 0.5)
    print(f"writing {LARGE} ONNX models of {LARGE_MIB} MiB ({side}x{side})", flush=True)
    large = [onnx_model(side, side, 1000 + n) for n in range(LARGE)]
    print("starting Odoo (queue_job runner at 2 channels) and SeaweedFS", flush=True)
    stack = _Stack(work)
    try:
        for label, artifacts in (("small", small), ("large", large)):
            serial = baseline(catalog, artifacts, work)
            latencies, wall = through_odoo(stack, artifacts, label)
            count = len(artifacts)
            ideal = serial / 2  # two channels, no overhead
            size = sum(map(len, artifacts)) / count
            size = (
                f"{size / 1024**2:.0f} MiB"
                if size > 1024**2
                else f"{size / 1024:.1f} KiB"
            )
            print(f"\n{count} ONNX models of {size} each, 2 job channels")
            print(
                f"  upload 202 -> validated   p50 {statistics.median(latencies):6.2f} s"
                f"   p95 {_percentile(latencies, 0.95):6.2f} s  (to the second)"
            )
            print(
                f"  throughput                {count / wall * 60:6.1f} validations/min"
                f"  ({wall:.1f} s for the batch)"
            )
            print(
                f"  baseline: the scans alone {count / ideal * 60:6.1f} validations/min"
                f"  ({serial:.1f} s serial, halved for 2 channels)"
            )
            print(f"  ratio                     {ideal / wall:6.2f}x of the baseline")
    finally:
        stack.close()
