"""Deployments as users run them: a real Odoo with the job runner at two
channels, real S3, real model servers and router; driven through REST and
a generic OIP client (Triton's) only."""

import json
import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import onnxruntime
import pytest
import requests
import samples
import tritonclient.http as triton

APPROVER = "creativeflow_mlops.group_mlops_approver"


@pytest.fixture(scope="module")
def approver(stack):
    return stack.user("sys_approver", [APPROVER])


@pytest.fixture(scope="module")
def auth(invoke):
    return invoke


def _wait(rest, path, done, timeout=120, every=None):
    """``path``'s body once ``done`` says so; ``every``: called between
    reads (a cron asked again, say)."""
    deadline = time.monotonic() + timeout
    while True:
        body = rest.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} after {timeout} s: {body}")
        if every:
            every()
        time.sleep(0.5)


def _validated(stack, name, version, seed):
    data = samples.onnx_mlp(seed=seed)
    answer = stack.rest.upload(name, version, data)
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"
    return version_id, data


def _deploy(rest, version_id, route, **body):
    answer = rest.post(
        f"/versions/{version_id}/{route}", {"reason": "system test", **body}
    )
    assert answer.status_code == 202, answer.text
    deployment_id = answer.json()["deployment_id"]
    return _wait(
        rest,
        f"/deployments/{deployment_id}",
        lambda d: d["state"] in ("active", "failed"),
    )


def _entry(rest, name, environment):
    items = rest.get("/endpoints", environment=environment).json()["items"]
    (entry,) = [e for e in items if e["model"] == name]
    return entry


BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]
}


def test_upload_to_production_with_a_blue_green_switch_under_load(
    stack, approver, auth, name
):
    first, data = _validated(stack, name, "1.0.0", seed=11)
    staged = _deploy(approver, first, "deploy")
    assert staged["state"] == "active", staged
    assert approver.get(f"/versions/{first}").json()["state"] == "staging"
    staging = _entry(stack.rest, name, "staging")

    # a client nobody here wrote, through the invoke URL
    base = staging["invoke_url"].split("://", 1)[1].rsplit("/v2/", 1)[0]
    client = triton.InferenceServerClient(base)
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    tensor = triton.InferInput("x", [1, 64], "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    slug = staging["slug"].rsplit("-staging", 1)[0]
    result = client.infer(
        slug,
        [tensor],
        outputs=[triton.InferRequestedOutput("y", binary_data=False)],
        headers=auth,
    )
    # without the key: refused
    assert (
        requests.post(staging["invoke_url"], json=BODY, timeout=10).status_code == 401
    )
    session = onnxruntime.InferenceSession(data)
    np.testing.assert_allclose(
        result.as_numpy("y"), session.run(None, {"x": x})[0], rtol=1e-5
    )

    produced = _deploy(approver, first, "promote", strategy="blue_green")
    assert produced["state"] == "active", produced
    production = _entry(stack.rest, name, "production")
    assert production["version"] == "1.0.0"
    url = production["invoke_url"]

    # version 2 through staging, then switched in under constant load
    second, _ = _validated(stack, name, "2.0.0", seed=12)
    assert _deploy(approver, second, "deploy")["state"] == "active"
    failures, served, stop = [], Counter(), threading.Event()

    def load():
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    answer = http.post(url, json=BODY, headers=auth, timeout=10)
                except requests.RequestException as error:
                    failures.append(repr(error))
                    continue
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                served[answer.headers.get("X-MLOps-Version")] += 1

    def under_load(action):
        failures.clear()
        served.clear()
        stop.clear()
        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            return action()
        finally:
            time.sleep(1)
            stop.set()
            for thread in threads:
                thread.join(20)

    switched = under_load(
        lambda: _deploy(approver, second, "promote", strategy="blue_green")
    )
    assert switched["state"] == "active", switched
    assert not failures, failures[:5]
    assert served["1.0.0"] > 0 and served["2.0.0"] > 0, served
    after = _entry(stack.rest, name, "production")
    assert after["invoke_url"] == url  # n8n's URL never changes
    assert after["version"] == "2.0.0"
    assert (
        requests.post(url, json=BODY, headers=auth, timeout=10).headers[
            "X-MLOps-Version"
        ]
        == "2.0.0"
    )
    assert approver.get(f"/versions/{first}").json()["state"] == "deprecated"
    old = approver.get(
        "/deployments", version_id=first, environment="production"
    ).json()
    assert [d["state"] for d in old["items"]] == ["inactive_bluegreen"]

    # roll back in one action, under the same load: version 1's idle colour
    # takes the traffic again at once
    def rollback():
        answer = approver.post(
            f"/deployments/{switched['id']}/rollback", {"reason": "p95 doubled"}
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    back = under_load(rollback)
    assert back["state"] == "active", back
    assert not failures, failures[:5]
    assert served["1.0.0"] > 0, served
    assert _entry(stack.rest, name, "production")["version"] == "1.0.0"
    assert approver.get(f"/versions/{first}").json()["state"] == "production"
    assert approver.get(f"/versions/{second}").json()["state"] == "deprecated"
    assert not stack.server.errors()


BATCH2 = {
    "inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 128}]
}


def _settings(stack, **values):
    for name, value in values.items():
        stack.admin.call(
            "ir.config_parameter", "set_param", f"creativeflow_mlops.{name}", str(value)
        )


def _production(stack, approver, name, version, seed):
    version_id, _ = _validated(stack, name, version, seed=seed)
    assert _deploy(approver, version_id, "deploy")["state"] == "active"
    return version_id


def test_canaries_share_traffic_and_a_failing_gate_rolls_back(
    stack, approver, auth, name
):
    _settings(
        stack,
        # the promotion's canary_percent (10) comes before these steps
        canary_steps="20,100",
        canary_step_seconds=25,
        canary_min_requests=20,
        canary_max_error_rate=0.05,
    )
    first = _production(stack, approver, name, "1.0.0", 21)
    assert (
        _deploy(approver, first, "promote", strategy="blue_green")["state"] == "active"
    )
    url = _entry(stack.rest, name, "production")["invoke_url"]

    # a good canary: 10 percent of the calls, then all of them
    second = _production(stack, approver, name, "2.0.0", 22)
    answer = approver.post(
        f"/versions/{second}/promote",
        {"reason": "canary", "strategy": "canary", "canary_percent": 10},
    )
    assert answer.status_code == 202, answer.text
    canary_id = answer.json()["deployment_id"]
    _wait(
        approver,
        f"/deployments/{canary_id}",
        lambda d: d["state"] == "rolling_out_canary",
    )
    # promoting again while it runs: 409, nothing changed
    again = approver.post(f"/versions/{second}/promote", {"reason": "x"})
    assert again.status_code == 409, again.text
    registry = _entry(stack.rest, name, "production")
    assert sorted(t["percent"] for t in registry["traffic"]) == [10, 90]
    seen = Counter()
    with requests.Session() as http:
        while sum(seen.values()) < 2000:
            reply = http.post(url, json=BODY, headers=auth, timeout=10)
            assert reply.status_code == 200, reply.text
            seen[reply.headers["X-MLOps-Version"]] += 1
    assert (
        approver.get(f"/deployments/{canary_id}").json()["state"]
        == "rolling_out_canary"
    )
    share = seen["2.0.0"] / sum(seen.values())
    assert abs(share - 0.10) <= 0.03, seen
    # an Approver moves the share by hand (PATCH); the gates go on
    moved = approver.http.patch(
        f"{approver.base}/deployments/{canary_id}",
        json={"canary_percent": 50},
        timeout=30,
    )
    assert moved.status_code == 200, moved.text
    registry = _entry(stack.rest, name, "production")
    assert sorted(t["percent"] for t in registry["traffic"]) == [50, 50]
    promoted = _wait(
        approver,
        f"/deployments/{canary_id}",
        lambda d: d["state"] != "rolling_out_canary",
        90,
    )
    assert promoted["state"] == "active", promoted
    assert approver.get(f"/versions/{second}").json()["state"] == "production"

    # a canary whose answers fail: its gate rolls it back, production goes on
    bad_data = samples.onnx_mlp(seed=23, fail=True)
    answer = stack.rest.upload(name, "3.0.0", bad_data)
    third = answer.json()["version_id"]
    assert stack.rest.wait_settled([third])[third] == "validated"
    assert _deploy(approver, third, "deploy")["state"] == "active"
    answer = approver.post(
        f"/versions/{third}/promote", {"reason": "canary", "strategy": "canary"}
    )
    bad_id = answer.json()["deployment_id"]
    _wait(
        approver, f"/deployments/{bad_id}", lambda d: d["state"] == "rolling_out_canary"
    )
    by_version = Counter()
    failed_on_production = []
    stop = threading.Event()

    def load():
        with requests.Session() as http:
            while not stop.is_set():
                reply = http.post(url, json=BATCH2, headers=auth, timeout=10)
                version = reply.headers.get("X-MLOps-Version")
                by_version[(version, reply.status_code)] += 1
                if version == "2.0.0" and reply.status_code != 200:
                    failed_on_production.append(reply.status_code)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        ended = _wait(
            approver,
            f"/deployments/{bad_id}",
            lambda d: d["state"] != "rolling_out_canary",
            120,
        )
    finally:
        stop.set()
        thread.join(20)
    assert ended["state"] == "rolled_back", ended
    assert "error rate" in ended["message"], ended
    assert by_version[("3.0.0", 500)] > 0, by_version
    assert not failed_on_production, failed_on_production
    assert approver.get(f"/versions/{third}").json()["state"] == "staging"
    assert approver.get(f"/versions/{second}").json()["state"] == "production"
    after = _entry(stack.rest, name, "production")
    assert after["traffic"] == [{"version": "2.0.0", "percent": 100}], after
    reply = requests.post(url, json=BATCH2, headers=auth, timeout=10)
    assert reply.status_code == 200 and reply.headers["X-MLOps-Version"] == "2.0.0"
    assert not stack.server.errors()


def test_a_canary_under_junk_calls_is_neither_promoted_nor_rolled_back(
    stack, approver, auth, name
):
    """300 calls without a key and 300 malformed ones are no answers of the
    model: the canary's step stays inconclusive (held), neither promoted by
    the 401s nor rolled back by the 400s; real calls then promote it."""
    _settings(
        stack,
        canary_steps="50,100",
        canary_step_seconds=4,
        canary_min_requests=30,
        canary_inconclusive_tries=50,
    )
    first = _production(stack, approver, name, "1.0.0", 41)
    _deploy(approver, first, "promote", strategy="blue_green")
    url = _entry(stack.rest, name, "production")["invoke_url"]
    second = _production(stack, approver, name, "2.0.0", 42)
    answer = approver.post(
        f"/versions/{second}/promote", {"reason": "canary", "strategy": "canary"}
    )
    assert answer.status_code == 202, answer.text
    canary_id = answer.json()["deployment_id"]
    _wait(
        approver,
        f"/deployments/{canary_id}",
        lambda d: d["state"] == "rolling_out_canary",
    )
    malformed = {
        "inputs": [{"name": "x", "shape": [1, 5], "datatype": "INT64", "data": [1] * 5}]
    }
    answered = Counter()
    with requests.Session() as http:
        for _ in range(300):
            answered[http.post(url, json=BODY, timeout=10).status_code] += 1
            answered[
                http.post(url, json=malformed, headers=auth, timeout=10).status_code
            ] += 1
    assert answered == {401: 300, 400: 300}, answered
    # two more windows of the step pass with nothing the model answered
    time.sleep(10)
    held = approver.get(f"/deployments/{canary_id}").json()
    assert held["state"] == "rolling_out_canary", held
    assert held["traffic_percent"] == 50, held
    # real calls: the gates pass and the canary is promoted
    with requests.Session() as http:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert http.post(url, json=BODY, headers=auth, timeout=10).ok
            if approver.get(f"/deployments/{canary_id}").json()["state"] == "active":
                break
            time.sleep(0.05)
    assert approver.get(f"/deployments/{canary_id}").json()["state"] == "active"
    assert approver.get(f"/versions/{second}").json()["state"] == "production"


SUPERVISOR = "creativeflow_mlops.ir_cron_runtime_supervisor"


def _runtime_state(stack, deployment_id):
    """What an operator sees on the machine: the model server's pid file."""
    (state,) = (stack.server.state_dir / "data" / "mlops_runtime").rglob(
        f"runtime/d{deployment_id}.json"
    )
    return json.loads(state.read_text())


def _answers(url, auth, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = requests.post(url, json=BODY, headers=auth, timeout=5)
            if reply.status_code == 200:
                return reply
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def test_a_crashed_model_server_and_an_odoo_restart(stack, approver, auth, name):
    version_id, _ = _validated(stack, name, "1.0.0", seed=31)
    deployment = _deploy(approver, version_id, "deploy")
    url = _entry(stack.rest, name, "staging")["invoke_url"]
    before = _runtime_state(stack, deployment["id"])

    # the model server is killed: the supervisor starts it again
    os.kill(before["pid"], signal.SIGKILL)
    last = stack.cron_lastcall(SUPERVISOR)
    stack.set_cron(SUPERVISOR, active=True, minutes=1)
    try:
        _answers(url, auth)
        stack.wait_cron_ran(SUPERVISOR, last)
    finally:
        stack.set_cron(SUPERVISOR, active=False)
    restarted = _runtime_state(stack, deployment["id"])
    assert restarted["pid"] != before["pid"]

    # Odoo is killed: the endpoint goes on answering (Odoo is not on the
    # path of a call), and the Odoo that comes back adopts the same server
    stack.server.kill()
    assert requests.post(url, json=BODY, headers=auth, timeout=5).status_code == 200
    stack.server.start()
    stack.login()
    last = stack.cron_lastcall(SUPERVISOR)
    stack.set_cron(SUPERVISOR, active=True, minutes=1)
    try:
        # a whole pass of the supervisor, after the restart, left it alone
        stack.wait_cron_ran(SUPERVISOR, last)
        assert requests.post(url, json=BODY, headers=auth, timeout=5).status_code == 200
    finally:
        stack.set_cron(SUPERVISOR, active=False)
    assert _runtime_state(stack, deployment["id"])["pid"] == restarted["pid"]
    detail = approver.get(f"/deployments/{deployment['id']}").json()
    assert detail["state"] == "active" and detail["live"]["ready"], detail
