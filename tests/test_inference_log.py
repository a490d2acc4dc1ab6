"""The model server's inference log (model_server/inference_log.py): the
sample it keeps, what it never keeps, and the files the local target hands
to Odoo."""

import json
import os

import pytest
import requests
from addon_artifacts import artifacts

from odoo.addons.creativeflow_mlops.adapters.processes import (
    LocalRuntime,
    ProcessSpec,
    free_port,
)
from odoo.addons.creativeflow_mlops.adapters.target_local import LocalTarget
from odoo.addons.creativeflow_mlops.model_server import inference_log
from odoo.addons.creativeflow_mlops.model_server.inference_log import (
    InferenceLog,
    scrub,
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mlp.onnx"
    path.write_bytes(artifacts.onnx_mlp())
    return path


@pytest.fixture
def runtime(tmp_path):
    runtime = LocalRuntime(tmp_path / "runtime")
    yield runtime
    for key in list(runtime.running()):
        runtime.stop(key, timeout=5)


def _records(folder):
    rows = []
    for name in sorted(os.listdir(folder)):
        assert name.endswith(".jsonl"), f"a file not whole: {name}"
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle]
    return rows


def _call(port, request_id, parameters=None, data=None):
    body = {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 64],
                "datatype": "FP32",
                "data": data if data is not None else [0.25] * 64,
            }
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return requests.post(
        f"http://127.0.0.1:{port}/v2/models/mlp/infer",
        json=body,
        headers={"X-Request-Id": request_id},
        timeout=10,
    )


def test_scrub_drops_personal_inputs_outputs_and_parameters():
    request = {
        "inputs": [
            {"name": "email", "shape": [1], "datatype": "BYTES", "data": ["a@b.c"]},
            {"name": "age", "shape": [1], "datatype": "INT32", "data": [41]},
        ],
        "parameters": {"user": "ann", "channel": "web"},
    }
    answer = {
        "outputs": [
            {"name": "score", "shape": [1], "datatype": "FP32", "data": [0.9]},
            {"name": "name", "shape": [1], "datatype": "BYTES", "data": ["Ann"]},
        ]
    }
    kept = scrub(request, answer, frozenset({"email", "user", "name"}))
    assert [t["name"] for t in kept["inputs"]] == ["age"]
    assert [t["name"] for t in kept["outputs"]] == ["score"]
    assert kept["parameters"] == {"channel": "web"}
    assert "a@b.c" not in json.dumps(kept) and "Ann" not in json.dumps(kept)


def test_files_are_whole_and_bounded(tmp_path):
    log = InferenceLog(tmp_path / "spool", 1.0, max_rows=3, max_files=2)
    for n in range(2):
        log.add({"request_id": f"r{n}"})
    # two rows, young: nothing written yet
    assert log.flush() is None and os.listdir(tmp_path / "spool") == []
    log.add({"request_id": "r2"})
    first = log.flush()
    assert first and os.listdir(tmp_path / "spool") == [f"{first}.jsonl"]
    assert [r["request_id"] for r in _records(tmp_path / "spool")] == ["r0", "r1", "r2"]
    log.add({"request_id": "r3"})
    assert log.flush(force=True)
    # two files wait: a third is dropped and counted, not written
    log.add({"request_id": "r4"})
    assert log.flush(force=True) is None
    assert log.kept == 4 and log.dropped == 1
    assert len(os.listdir(tmp_path / "spool")) == 2


def test_pending_rows_are_bounded(tmp_path):
    log = InferenceLog(tmp_path / "spool", 1.0, max_pending=5)
    for n in range(8):
        log.add({"request_id": f"r{n}"})
    assert log.dropped == 3
    log.flush(force=True)
    assert len(_records(tmp_path / "spool")) == 5


def test_the_model_server_logs_calls_without_personal_fields(
    runtime, model_file, tmp_path
):
    spool = tmp_path / "spool"
    spec = ProcessSpec(
        key="mlp-blue",
        model_path=str(model_file),
        name="mlp",
        version="1.0.0",
        port=free_port(),
        log_dir=str(spool),
        log_rate=1.0,
        log_personal=("y", "user_email"),
    )
    handle = runtime.start(spec)
    for n in range(5):
        answer = _call(
            handle.port,
            f"call-{n}",
            {"user_email": "ann@example.com", "channel": "web"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Request-Id"] == f"call-{n}"
    assert _call(handle.port, "bad-call", data=[1.0]).status_code == 400
    metrics = requests.get(f"http://127.0.0.1:{handle.port}/metrics", timeout=5).text
    assert 'mlops_inference_log_records{model="mlp",outcome="kept"' in metrics
    # stopped, the server writes what waits
    runtime.stop("mlp-blue", timeout=10)
    rows = {row["request_id"]: row for row in _records(spool)}
    assert set(rows) == {f"call-{n}" for n in range(5)} | {"bad-call"}
    row = rows["call-3"]
    assert row["status"] == 200 and row["model"] == "mlp" and row["version"] == "1.0.0"
    assert row["latency_ms"] > 0 and row["at"].endswith("Z")
    assert row["inputs"][0]["name"] == "x" and row["inputs"][0]["data"] == [0.25] * 64
    # the personal output and parameter were never written
    assert row["outputs"] == [] and row["parameters"] == {"channel": "web"}
    assert "ann@example.com" not in (spool / os.listdir(spool)[0]).read_text()
    assert (
        rows["bad-call"]["status"] == 400
        and "fill the shape" in rows["bad-call"]["error"]
    )


def test_the_rate_is_a_sample(runtime, model_file, tmp_path):
    spool = tmp_path / "spool"
    spec = ProcessSpec(
        key="mlp-green",
        model_path=str(model_file),
        name="mlp",
        version="1.0.0",
        port=free_port(),
        log_dir=str(spool),
        log_rate=0.2,
    )
    handle = runtime.start(spec)
    with requests.Session() as session:
        for n in range(400):
            session.post(
                f"http://127.0.0.1:{handle.port}/v2/models/mlp/infer",
                json={
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [1, 64],
                            "datatype": "FP32",
                            "data": [0.0] * 64,
                        }
                    ]
                },
                headers={"X-Request-Id": f"c{n}"},
                timeout=10,
            )
    runtime.stop("mlp-green", timeout=10)
    logged = len(_records(spool))
    # binomial(400, 0.2): mean 80, sd 8; five sd either side
    assert 40 <= logged <= 120, logged


def test_without_a_rate_nothing_is_logged(runtime, model_file, tmp_path):
    spool = tmp_path / "spool"
    spec = ProcessSpec(
        key="mlp-none",
        model_path=str(model_file),
        name="mlp",
        version="1.0.0",
        port=free_port(),
        log_dir=str(spool),
        log_rate=0.0,
    )
    handle = runtime.start(spec)
    assert _call(handle.port, "c1").status_code == 200
    runtime.stop("mlp-none", timeout=10)
    assert not spool.exists() or _records(spool) == []


def test_the_local_target_hands_whole_files_and_forgets_them(tmp_path):
    target = LocalTarget(tmp_path / "target", free_port(), watchdog=False)
    assert target.logged_files() == {}
    folder = target.log_folder("d7")
    folder.mkdir(parents=True)
    (folder / "100-a-00000001.jsonl").write_text('{"request_id": "r1"}\n')
    (folder / "100-a-00000002.part").write_text('{"request_id": "r2"}')
    files = target.logged_files()
    assert list(files) == ["d7"]
    assert [name for name, _path in files["d7"]] == ["100-a-00000001"]
    target.forget_logged("d7", "100-a-00000001")
    target.forget_logged("d7", "100-a-00000001")  # twice: no error
    assert target.logged_files() == {}


def test_stamps_are_utc_with_milliseconds():
    assert inference_log.stamp(0.5) == "1970-01-01T00:00:00.500Z"
