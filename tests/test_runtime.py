"""The local model server (model_server/server.py) and its supervisor
(adapters/processes.py), as real processes: inference checked against a
direct onnxruntime call and through Triton's OIP client, metrics, invoke
keys and their revocation, bad input, a model that cannot load, a port in
use, draining on stop, adoption by a new supervisor, a crash."""

import contextlib
import hashlib
import json
import os
import signal
import socket
import threading
import time

import numpy as np
import onnxruntime
import pytest
import requests
import tritonclient.http as triton
from addon_artifacts import artifacts

from odoo.addons.creativeflow_mlops.adapters.processes import (
    LocalRuntime,
    PortInUse,
    ProcessSpec,
    RuntimeFailed,
    free_port,
)
from odoo.addons.creativeflow_mlops.adapters.target_local import LocalTarget
from odoo.addons.creativeflow_mlops.adapters.targets import (
    ServePlan,
    counters_window,
    parse_metrics,
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


def _spec_for(model_file, key="mlp-blue", version="1.0.0", **kwargs):
    return ProcessSpec(
        key=key,
        model_path=str(model_file),
        name="mlp",
        version=version,
        port=free_port(),
        **kwargs,
    )


def _infer(port, data, headers=None, name="mlp"):
    return requests.post(
        f"http://127.0.0.1:{port}/v2/models/{name}/infer",
        json={
            "id": "r1",
            "inputs": [
                {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": data}
            ],
        },
        headers=headers,
        timeout=10,
    )


def test_inference_matches_onnxruntime_and_is_counted(runtime, model_file):
    handle = runtime.start(_spec_for(model_file))
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(model_file)).run(None, {"x": x})[0]
    answer = _infer(handle.port, x.ravel().tolist())
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-MLOps-Version"] == "1.0.0"
    body = answer.json()
    assert body["model_name"] == "mlp" and body["model_version"] == "1.0.0"
    assert body["id"] == "r1"
    output = body["outputs"][0]
    assert output["name"] == "y" and output["shape"] == [1, 10]
    assert output["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(output["data"]), expected.ravel(), rtol=1e-5)
    # metadata, readiness
    base = f"http://127.0.0.1:{handle.port}/v2"
    meta = requests.get(f"{base}/models/mlp", timeout=5).json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert requests.get(f"{base}/models/mlp/ready", timeout=5).status_code == 200
    assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
    # a bad request is an OIP error, counted as a client error
    bad = _infer(handle.port, [1.0, 2.0])
    assert bad.status_code == 400
    assert "do not fill the shape" in bad.json()["error"]
    metrics = requests.get(f"http://127.0.0.1:{handle.port}/metrics", timeout=5).text
    labels = 'model="mlp",version="1.0.0"'
    assert f'mlops_inference_requests_total{{code="200",{labels}}} 1.0' in metrics
    assert f'mlops_inference_requests_total{{code="400",{labels}}} 1.0' in metrics
    assert f'mlops_inference_errors_total{{kind="client",{labels}}} 1.0' in metrics
    assert f"mlops_inference_latency_seconds_count{{{labels}}} 2.0" in metrics


def test_every_answer_carries_a_request_id(runtime, model_file):
    """The caller's own X-Request-Id is echoed; without one, or with one
    too odd to echo, a new one is made, on errors and health answers too."""
    handle = runtime.start(_spec_for(model_file))
    mine = _infer(handle.port, [0.5] * 64, headers={"X-Request-Id": "n8n-run-42"})
    assert mine.headers["X-Request-Id"] == "n8n-run-42"
    made = {_infer(handle.port, [0.5] * 64).headers["X-Request-Id"] for _i in range(3)}
    assert len(made) == 3 and all(len(rid) == 32 for rid in made)
    odd = _infer(handle.port, [0.5] * 64, headers={"X-Request-Id": "x" * 129})
    assert odd.headers["X-Request-Id"] != "x" * 129
    spaced = _infer(handle.port, [0.5] * 64, headers={"X-Request-Id": "a b"})
    assert len(spaced.headers["X-Request-Id"]) == 32
    bad = _infer(handle.port, [1.0], headers={"X-Request-Id": "bad-call"})
    assert bad.status_code == 400 and bad.headers["X-Request-Id"] == "bad-call"
    health = requests.get(f"http://127.0.0.1:{handle.port}/v2/health/live", timeout=5)
    assert len(health.headers["X-Request-Id"]) == 32


def test_a_generic_oip_client_works_unchanged(runtime, model_file):
    handle = runtime.start(_spec_for(model_file))
    client = triton.InferenceServerClient(f"127.0.0.1:{handle.port}")
    assert client.is_server_live() and client.is_model_ready("mlp")
    assert client.get_model_metadata("mlp")["inputs"][0]["name"] == "x"
    x = np.random.default_rng(2).standard_normal((1, 64)).astype(np.float32)
    tensor = triton.InferInput("x", [1, 64], "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client.infer(
        "mlp", [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=False)]
    )
    expected = onnxruntime.InferenceSession(str(model_file)).run(None, {"x": x})[0]
    np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)


def _inputs(name="x", shape=(1, 64), datatype="FP32", data=None):
    tensor = {"name": name, "shape": list(shape), "datatype": datatype}
    if data is not None:
        tensor["data"] = data
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "'inputs' list"),
        (_inputs(datatype="FP99"), "datatype"),
        (_inputs(name="z", shape=[1], data=[1]), "no input"),
        (_inputs(shape=[-1], data=[]), "shape"),
        (_inputs(data=[["a"]]), "x"),
        (b'{"inputs": []}', "missing inputs"),
        # what the model does not take: a 400 before onnxruntime's 500
        (_inputs(datatype="INT64", data=[0] * 64), "takes FP32, not INT64"),
        (_inputs(datatype="FP16", data=[0.0] * 64), "takes FP32, not FP16"),
        (_inputs(shape=[1, 5], data=[0.0] * 5), "takes shape [-1, 64]"),
        (_inputs(shape=[64], data=[0.0] * 64), "takes shape [-1, 64]"),
        (_inputs(datatype="INT8", shape=[1], data=[1000]), "x"),
        (_inputs(datatype="UINT64", shape=[1], data=[-1]), "x"),
        (_inputs(datatype="INT64", shape=[1], data=[2**63]), "x"),
    ],
)
def test_malformed_requests_get_oip_errors(runtime, model_file, body, message):
    handle = runtime.start(_spec_for(model_file))
    answer = requests.post(
        f"http://127.0.0.1:{handle.port}/v2/models/mlp/infer", data=body, timeout=5
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert message in answer.json()["error"]
    assert (
        requests.get(
            f"http://127.0.0.1:{handle.port}/v2/models/other", timeout=5
        ).status_code
        == 404
    )


def test_what_one_request_may_cost_is_bounded(runtime, model_file):
    """The MLP takes [-1, 64]: 64 rows of it in JSON is its body cap; more
    rows, a larger body, or a huge name are refused with a short answer."""
    handle = runtime.start(_spec_for(model_file))
    url = f"http://127.0.0.1:{handle.port}/v2/models/mlp/infer"
    # at the cap: 64 rows of the longest floats are accepted
    rows = {"name": "x", "shape": [64, 64], "datatype": "FP32"}
    full = json.dumps({"inputs": [{**rows, "data": [-1.2345678901234567e-30] * 4096}]})
    assert requests.post(url, data=full, timeout=10).status_code == 200
    # one row more is refused by its shape, before the model runs
    more = {**rows, "shape": [65, 64], "data": [0.0] * 65 * 64}
    refused = requests.post(url, json={"inputs": [more]}, timeout=10)
    assert refused.status_code == 400 and "more than the 64" in refused.text
    # a valid body past the model's cap: 413 as soon as its length is known
    big = json.dumps(
        {"inputs": [{**rows, "shape": [4096, 64], "data": [0.5] * 262144}]}
    )
    assert len(big) > 1_000_000
    answer = requests.post(url, data=big, timeout=10)
    assert answer.status_code == 413, answer.text
    assert "this model takes" in answer.json()["error"]
    # and when it is streamed without a length
    chunked = requests.post(
        url,
        data=iter([big.encode()[i : i + 65536] for i in range(0, len(big), 65536)]),
        timeout=10,
    )
    assert chunked.status_code == 413
    # an error never echoes what was sent: a 100 KB name, a short answer
    named = requests.post(
        url,
        json={
            "inputs": [
                {**rows, "name": "n" * 100_000, "shape": [1, 64], "data": [0] * 64}
            ]
        },
        timeout=10,
    )
    assert named.status_code == 400 and len(named.content) < 1200, len(named.content)
    # the server still answers
    assert _infer(handle.port, [0.0] * 64).status_code == 200


def test_invoke_keys_and_their_revocation(runtime, model_file, tmp_path):
    keys = tmp_path / "keys.json"
    good, expired = "ik_good", "ik_old"

    def write(allowed):
        keys.write_text(json.dumps({"keys": allowed}))

    digest = {k: hashlib.sha256(k.encode()).hexdigest() for k in (good, expired)}
    write({digest[good]: None, digest[expired]: time.time() - 10})
    handle = runtime.start(_spec_for(model_file, keys_file=str(keys)))
    data = [0.0] * 64
    assert _infer(handle.port, data).status_code == 401
    assert (
        _infer(handle.port, data, {"Authorization": "Bearer nope"}).status_code == 401
    )
    refused = _infer(handle.port, data, {"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401 and "expired" in refused.json()["error"]
    assert _infer(handle.port, data, {"Authorization": f"Bearer {good}"}).ok
    # the refusals name no version and are no request the model served:
    # only the one it answered is in the figures the gates read
    assert "X-MLOps-Version" not in _infer(handle.port, data).headers
    base = f"http://127.0.0.1:{handle.port}"
    counted = parse_metrics(
        requests.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {good}"}, timeout=5
        ).text
    )
    assert counted["requests"] == {"200": 1.0}
    assert counted["count"] == 1
    # only health needs no key: the figures, the model, the server, and
    # what is not here are nobody's business without one, and name no version
    assert requests.get(f"{base}/v2/health/ready", timeout=5).ok
    for path in ("/metrics", "/v2", "/v2/models/mlp", "/v2/models/mlp/ready", "/x"):
        refused = requests.get(f"{base}{path}", timeout=5)
        assert refused.status_code == 401, (path, refused.text)
        assert "X-MLOps-Version" not in refused.headers, path
    other = requests.get(
        f"{base}/v2/models/other",
        headers={"Authorization": f"Bearer {good}"},
        timeout=5,
    )
    assert other.status_code == 404 and "X-MLOps-Version" not in other.headers
    # the platform's key (Odoo's) reads the metrics, and nothing else
    platform = "pk_platform"
    keys.write_text(
        json.dumps(
            {
                "keys": {digest[good]: None},
                "platform": hashlib.sha256(platform.encode()).hexdigest(),
            }
        )
    )
    time.sleep(1.2)
    as_platform = {"Authorization": f"Bearer {platform}"}
    assert requests.get(f"{base}/metrics", headers=as_platform, timeout=5).ok
    assert _infer(handle.port, data, as_platform).status_code == 401
    # revoked: refused within seconds
    write({})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if (
            _infer(handle.port, data, {"Authorization": f"Bearer {good}"}).status_code
            == 401
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail("a revoked key was still accepted after 3 s")


def test_a_model_that_cannot_load_fails_with_its_reason(runtime, tmp_path):
    broken = tmp_path / "secret-dir" / "broken.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeFailed) as failure:
        runtime.start(_spec_for(broken))
    message = str(failure.value)
    assert "exited (3)" in message and "broken.onnx" in message
    assert "secret-dir" not in message
    assert not runtime.running()


def test_a_port_in_use_is_refused(runtime, model_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = _spec_for(model_file)
        spec.port = taken.getsockname()[1]
        with pytest.raises(PortInUse):
            runtime.start(spec)


def test_stop_finishes_the_requests_in_flight(runtime, model_file):
    handle = runtime.start(_spec_for(model_file, drain_seconds=10))
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}
            ]
        }
    ).encode()
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    sock.sendall(
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    time.sleep(0.2)
    stopper = threading.Thread(target=runtime.stop, args=("mlp-blue",))
    stopper.start()
    time.sleep(0.5)
    # still there for the request in flight, no longer taking new ones
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{handle.port}/v2/health/ready", timeout=2)
    sock.sendall(body[10:])
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    sock.close()
    stopper.join(15)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["model_version"] == "1.0.0"
    assert not runtime.running()


def test_a_new_supervisor_adopts_running_servers_and_sees_crashes(runtime, model_file):
    handle = runtime.start(_spec_for(model_file))
    # Odoo restarted: a new supervisor on the same folder finds the process
    again = LocalRuntime(runtime.root)
    found = again.find("mlp-blue")
    assert found and found.pid == handle.pid and again.ready(found)
    assert list(again.running()) == ["mlp-blue"]
    assert "serving mlp 1.0.0" in again.log_tail("mlp-blue")
    # a crash: the process is gone, nothing pretends it runs
    os.kill(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while again.find("mlp-blue") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again.find("mlp-blue") is None
    assert not again.stop("mlp-blue")


def test_the_local_target_runs_as_many_threads_as_cpus_asked():
    def threads(**resources):
        plan = ServePlan("d1", "r", "m", "1", resources=resources)
        return LocalTarget.threads(plan)

    cores = os.cpu_count()
    assert threads() == 1
    assert threads(cpu="500m") == 1
    assert threads(cpu="1500m") == min(2, cores)
    assert threads(cpu="0.25") == 1
    # never more than this machine has
    assert threads(cpu="64") == cores


def test_keys_published_by_concurrent_writers_stay_whole(tmp_path):
    """Two deploy pipelines publish a route's keys at once: each writes its
    own temporary file, so neither finds the other's renamed away."""
    target = LocalTarget(tmp_path, router_port=free_port())
    failures = []
    start = threading.Barrier(8)

    def publish(writer):
        start.wait()
        for round_ in range(50):
            try:
                target.publish_keys(
                    "m-production", {f"{writer:02d}{round_:02d}" * 16: None}, []
                )
            except OSError as error:  # the shared .tmp name lost a race here
                failures.append(error)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    published = json.loads((tmp_path / "keys" / "m-production.json").read_text())
    assert len(published["keys"]) == 1
    assert not list((tmp_path / "keys").glob("*.tmp"))


def test_a_gate_counts_only_what_the_model_answered():
    """300 malformed calls (400) fill no canary gate's minimum and are no
    error of the model; its own 5xx are."""
    before = {"requests": {"200": 5.0}, "buckets": [[0.1, 5.0]], "count": 5.0}
    after = {
        "requests": {"200": 15.0, "400": 300.0, "500": 2.0},
        "buckets": [[0.1, 317.0]],
        "count": 317.0,
    }
    total, server_errors, _p95 = counters_window(before, after)
    assert (total, server_errors) == (12.0, 2.0)


BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


def _answers_within(url, headers, seconds):
    """Seconds until ``url`` answers 200 again, or None."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if requests.post(url, json=BODY, headers=headers, timeout=2).ok:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return None


def test_the_watchdog_brings_back_a_killed_server_and_router(tmp_path, model_file):
    """Killed outright, the model server and the router answer again
    within seconds, without Odoo's cron; stopped on purpose, they stay
    stopped."""
    target = LocalTarget(tmp_path / "local", router_port=free_port())
    plan = ServePlan(
        key="d1",
        route="c1-mlp-production",
        model_name="mlp",
        version="1.0.0",
    )
    token = "ik_watchdog"
    target.publish_keys(
        plan.route, {hashlib.sha256(token.encode()).hexdigest(): None}, []
    )
    try:
        target.fetch_artifact(plan, lambda: contextlib.nullcontext(str(model_file)))
        target.apply(plan)
        target.switch_traffic({plan.route: [("d1", 100)]})
        url = f"{target.route_url(plan.route)}/v2/models/mlp/infer"
        auth = {"Authorization": f"Bearer {token}"}
        assert _answers_within(url, auth, 10) is not None
        # a second apply starts no second watchdog
        assert target.ensure_watchdog() is False
        server = target.runtime.find("d1")
        target.stop_watchdog()
        os.kill(server.pid, signal.SIGKILL)
        while target.runtime.find("d1"):
            time.sleep(0.05)
        # a table published while it is down keeps its route (found by the
        # model-based test: once the server was back, nothing published it)
        target.switch_traffic({plan.route: [("d1", 100)]})
        assert _answers_within(url, auth, 10) is not None, "the server stayed down"
        again = target.runtime.find("d1")
        assert again.pid != server.pid and again.port == server.port
        for pid in target.router.pids():
            os.kill(pid, signal.SIGKILL)
        assert _answers_within(url, auth, 15) is not None, "the router stayed down"
        assert "the watchdog started it again" in target.runtime.log_tail("d1")
        # stopped on purpose: not revived
        target.runtime.stop("d1", timeout=5)
        target.router.stop()
        time.sleep(2)
        assert not target.runtime.find("d1") and not target.router.running()
    finally:
        target.stop_watchdog()
        target.runtime.stop("d1", timeout=5)
        target.router.stop()
