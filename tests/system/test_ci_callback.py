"""An external pipeline as it runs for real: a real Odoo with the job
runner at two channels triggers GitLab (a local server that records the
requests: GitLab cannot run here), the pipeline reports through
``POST /ci/callback`` from several threads at once, and GitLab goes away
and comes back while the trigger job waits."""

import hashlib
import hmac
import json
import threading
import time
from urllib.parse import parse_qs

import pytest
import requests
import samples
import systemstack
import testservers

APPROVER = "creativeflow_mlops.group_mlops_approver"
ENDPOINT = "https://serving.example/m/sys-ci"


@pytest.fixture(scope="module")
def gitlab():
    server = testservers.RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def approver(stack):
    return stack.user("ci_sys_approver", [APPROVER])


@pytest.fixture(scope="module")
def target(stack, gitlab):
    admin = stack.admin
    provider = admin.call(
        "mlops.ci.provider",
        "create",
        {
            "name": "GitLab (recorded)",
            "code": "syslab",
            "kind": "gitlab",
            "url": gitlab.url,
            "project": "creative/models",
        },
    )
    admin.call(
        "mlops.deployment.target",
        "create",
        {
            "name": "Cluster via GitLab",
            "code": "sysext",
            "kind": "external",
            "ci_provider_id": provider,
        },
    )
    return "sysext"


def _validated(stack, name):
    answer = stack.rest.upload(name, "1.0.0", samples.onnx_mlp(seed=3))
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"
    return version_id


def _triggers(gitlab):
    return [r for r in gitlab.requests if r["path"].endswith("/trigger/pipeline")]


def _signed(url, secret, payload, timestamp=None):
    """The body and headers of a report, as a pipeline signs it."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-MLOps-Timestamp": timestamp,
        "X-MLOps-Signature": f"sha256={digest}",
    }
    return url, body, headers


def _at_once(calls):
    """Send the (url, body, headers) requests from one thread each, released
    together; their answers, in order."""
    answers = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def send(index, url, body, headers):
        start.wait()
        answers[index] = requests.post(url, data=body, headers=headers, timeout=60)

    threads = [
        threading.Thread(target=send, args=(i, *call)) for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_reports_racing_and_a_provider_that_comes_back(
    stack, gitlab, approver, target, name, ci_token
):
    version_id = _validated(stack, name)
    callback = f"{stack.server.url}/mlops/api/v1/ci/callback"

    # GitLab is down when the trigger job runs: the job waits and tries
    # again; the run stays queued, the version approved
    port = int(gitlab.url.rsplit(":", 1)[1])
    gitlab.stop()
    answer = approver.post(
        f"/versions/{version_id}/deploy", {"target": target, "reason": "via CI"}
    )
    assert answer.status_code == 202, answer.text
    deployment_id = answer.json()["deployment_id"]
    path = f"/deployments/{deployment_id}"
    retried = systemstack.wait_for(
        lambda: [
            j
            for j in stack.jobs([("method_name", "=", "_trigger")])
            if j["retry"] >= 1 and j["state"] in ("pending", "enqueued", "started")
        ]
    )
    assert retried[0]["state"] == "pending"
    detail = stack.rest.get(path).json()
    assert detail["pipeline_run"]["state"] == "queued"
    assert stack.rest.get(f"/versions/{version_id}").json()["state"] == (
        "staging_pending"
    )

    # back on the same port: the retry triggers the pipeline
    back = testservers.RecordingServer(port=port).start()
    try:
        back.answer(201, {"id": 777, "web_url": "https://gitlab.example/p/777"})
        (trigger,) = systemstack.wait_for(lambda: _triggers(back), timeout=180)
        form = {k: v for k, (v,) in parse_qs(trigger["body"].decode()).items()}
        assert form["token"] == ci_token
        secret = form["variables[MLOPS_CALLBACK_SECRET]"]
        run_id = int(form["variables[MLOPS_RUN_ID]"])
        assert form["variables[MLOPS_CALLBACK_URL]"].endswith(
            "/mlops/api/v1/ci/callback"
        )
        detail = systemstack.wait_for(
            lambda: (
                (d := stack.rest.get(path).json())["pipeline_run"]["state"] == "running"
                and d
            )
        )
        assert detail["pipeline_run"]["external_id"] == "777"
        assert detail["state"] == "deploying"
    finally:
        back.stop()

    # eight copies of one delivery at once: one is taken, seven are replays
    replay = _signed(
        callback,
        secret,
        {"run_id": run_id, "stage": "build_image", "status": "running"},
    )
    answers = _at_once([replay] * 8)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * 7, [a.text for a in answers]
    assert [a.json()["changed"] for a in answers if a.status_code == 200] == [True]

    # six distinct reports of one stage at once: all taken, one changes it
    answers = _at_once(
        [
            _signed(
                callback,
                secret,
                {
                    "run_id": run_id,
                    "stage": "push_image",
                    "status": "succeeded",
                    "image": "registry.example/sys:1.0.0",
                    "message": f"sent by runner {i}",
                },
            )
            for i in range(6)
        ]
    )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sorted(a.json()["changed"] for a in answers) == [False] * 5 + [True]

    # the traffic switches once, however many say so
    answers = _at_once(
        [
            _signed(
                callback,
                secret,
                {
                    "run_id": run_id,
                    "stage": "switch_traffic",
                    "status": "succeeded",
                    "endpoint_url": ENDPOINT,
                    "message": f"switched by runner {i}",
                },
            )
            for i in range(4)
        ]
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert sorted(a.json()["changed"] for a in answers) == [False] * 3 + [True]
    detail = stack.rest.get(path).json()
    assert detail["state"] == "active"
    assert detail["pipeline_run"]["state"] == "succeeded"
    assert detail["pipeline_run"]["image"] == "registry.example/sys:1.0.0"
    stages = {s["name"]: s["state"] for s in detail["pipeline_run"]["stages"]}
    assert stages == {
        "fetch_artifact": "skipped",
        "build_image": "succeeded",
        "push_image": "succeeded",
        "apply": "skipped",
        "verify": "skipped",
        "switch_traffic": "succeeded",
    }
    assert stack.rest.get(f"/versions/{version_id}").json()["state"] == "staging"
    (entry,) = [
        e
        for e in stack.rest.get("/endpoints", environment="staging").json()["items"]
        if e["model"] == name
    ]
    assert detail["endpoint_url"].startswith(f"{ENDPOINT}/v2/models/")
    assert entry["invoke_url"] == detail["endpoint_url"]
    ledger = stack.admin.call(
        "mlops.promotion",
        "search_read",
        [("deployment_id", "=", deployment_id)],
        fields=["id"],
    )
    assert len(ledger) == 1

    # a stale report, and a late one: refused, and taken without effect
    stale = _signed(
        callback,
        secret,
        {"run_id": run_id, "stage": "verify", "status": "failed"},
        timestamp=int(time.time()) - 400,
    )
    assert (
        requests.post(stale[0], data=stale[1], headers=stale[2], timeout=30).status_code
        == 401
    )
    late = _signed(
        callback, secret, {"run_id": run_id, "stage": "verify", "status": "failed"}
    )
    answer = requests.post(late[0], data=late[1], headers=late[2], timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] is False
    assert stack.rest.get(path).json()["state"] == "active"
