"""The workflows of docs/n8n in a real n8n (2.41, installed once into the
user's cache by tools/n8nserver.py), against a real Odoo with the job
runner at two channels and real model servers, as an n8n user sets them up:
imported through n8n's API, the two keys as n8n credentials, the Settings
node filled in. ``call-production-model`` reads the registry and calls the
production model (its answer checked against onnxruntime on the same
file); ``receive-webhooks`` takes the deployments' events the job runner
delivers, checks their signatures and routes them, and refuses what another
secret signed."""

import copy
import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import n8nserver
import numpy as np
import onnxruntime
import pytest
from test_deployments import _deploy, _validated

APPROVER = "creativeflow_mlops.group_mlops_approver"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "n8n"
REGISTRY_KEY = "Odoo API key (Authorization: Bearer ...)"
INVOKE_KEY = "MLOps invoke key (Authorization: Bearer ...)"
ANSWER = "Answer and the version that served it"


def _flow(name):
    return json.loads((DOCS / name).read_text())


@pytest.fixture(scope="module")
def approver(stack):
    return stack.user("sys_approver", [APPROVER])


@pytest.fixture(scope="module")
def n8n(stack):
    """n8n with ``receive-webhooks`` active, and the Odoo webhook that
    points at it (its secret in n8n's environment, as the README says)."""
    server = n8nserver.N8n(
        env={
            "NODE_FUNCTION_ALLOW_BUILTIN": "crypto",
            "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
        }
    )
    url = f"{server.url}/webhook/creativeflow-mlops"
    stack.admin.call(
        "ir.config_parameter",
        "set_param",
        "creativeflow_mlops.webhook_allow_private",
        "True",
    )
    hook_id = stack.admin.call(
        "mlops.webhook",
        "create",
        {"name": "n8n", "url": url, "event_types": "deployment.*"},
    )
    shown = stack.admin.button("mlops.webhook", "action_show_secret", [hook_id])
    server.extra_env["MLOPS_WEBHOOK_SECRET"] = shown["params"]["message"]
    with server:
        receiver = server.import_workflow(_flow("receive-webhooks.json"))
        server.api("POST", f"/workflows/{receiver}/activate")
        # the production URL is registered shortly after the activation;
        # unsigned, n8n's Code node refuses the request
        deadline = time.monotonic() + 60
        while (unsigned := server.post(url, {})).status == 404:
            assert time.monotonic() < deadline, "the webhook was never registered"
            time.sleep(0.5)
        assert unsigned.status == 401, unsigned
        assert json.loads(unsigned.body) == {"error": "missing webhook headers"}
        yield SimpleNamespace(
            server=server, url=url, hook_id=hook_id, receiver=receiver
        )


def _caller(n8n, odoo_url, model, registry_key, invoke_key):
    """``call-production-model`` with its two credentials and its Settings
    node filled in; the workflow's id."""
    flow = copy.deepcopy(_flow("call-production-model.json"))
    (settings,) = [node for node in flow["nodes"] if node["name"] == "Settings"]
    values = {"odoo_url": odoo_url, "model": model}
    for assignment in settings["parameters"]["assignments"]["assignments"]:
        assignment["value"] = values.pop(assignment["name"])
    assert not values
    credentials = {
        name: n8n.api(
            "POST",
            "/credentials",
            {
                "name": name,
                "type": "httpHeaderAuth",
                "data": {"name": "Authorization", "value": value},
            },
        )["id"]
        for name, value in ((REGISTRY_KEY, registry_key), (INVOKE_KEY, invoke_key))
    }
    return n8n.import_workflow(flow, credentials)


def _outputs(run, node):
    """The items ``node`` gave on its first output."""
    (ran,) = run["data"]["resultData"]["runData"][node]
    return [item["json"] for item in ran["data"]["main"][0]]


def _attempts(stack, hook_id, event_type, count, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        attempts = stack.admin.call(
            "mlops.webhook.attempt",
            "search_read",
            [("webhook_id", "=", hook_id), ("event_type", "=", event_type)],
            fields=["status_code", "ok", "excerpt", "message_id"],
            order="id",
        )
        if len(attempts) >= count or time.monotonic() > deadline:
            return attempts
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(stack, approver, n8n):
    """A model deployed to staging, then to production, while n8n listens."""
    name = f"sys-n8n-{uuid.uuid4().hex[:6]}"
    version_id, data = _validated(stack, name, "1.0.0", seed=51)
    staging = _deploy(approver, version_id, "deploy")
    assert staging["state"] == "active", staging
    production = _deploy(approver, version_id, "promote", strategy="blue_green")
    assert production["state"] == "active", production
    return SimpleNamespace(
        name=name,
        version_id=version_id,
        data=data,
        staging=staging,
        production=production,
    )


def test_n8n_calls_production_and_receives_the_deployments_events(
    stack, n8n, served, invoke
):
    name, version_id, data = served.name, served.version_id, served.data
    staging, production = served.staging, served.production

    workflow = _caller(
        n8n.server,
        stack.server.url,
        name,
        stack.rest.http.headers["Authorization"],
        invoke["Authorization"],
    )
    run = n8n.server.execute(workflow)
    assert run.get("status") == "success", json.dumps(run)[:3000]
    (answer,) = _outputs(run, ANSWER)
    assert answer["model_version"] == "1.0.0"
    # the model server's answer to the zeros the picker sent
    (picked,) = _outputs(run, "Build the request")
    assert f"-{production['environment']}/" in picked["invoke_url"]
    (given,) = picked["request"]["inputs"]
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (expected,) = session.run(
        None, {given["name"]: np.zeros(given["shape"], dtype=np.float32)}
    )
    (output,) = answer["outputs"]
    assert np.allclose(np.array(output["data"]), expected.ravel(), atol=1e-5)

    # both deployments' "active" events, delivered by the job runner, signed:
    # n8n checked them (204) and routed them as "deployment live"
    attempts = _attempts(stack, n8n.hook_id, "deployment.active", 2)
    assert [a["status_code"] for a in attempts] == [204, 204], attempts
    executions = n8n.server.api(
        "GET", f"/executions?workflowId={n8n.receiver}&includeData=true&limit=50"
    )["data"]
    live = {}
    for execution in executions:
        run_data = execution["data"]["resultData"]["runData"]
        if "By event type" in run_data:
            for item in _outputs(execution, "By event type"):
                live[item["id"]] = item["event"]
    delivered = {a["message_id"]: a for a in attempts}
    assert set(delivered) <= set(live), (delivered, live)
    assert {live[m]["resource_id"] for m in delivered} == {
        staging["id"],
        production["id"],
    }
    assert {live[m]["version_id"] for m in delivered} == {version_id}


def test_n8n_refuses_a_wrong_key_an_unknown_model_and_a_foreign_signature(
    stack, n8n, served, invoke
):
    name = served.name
    registry_key = stack.rest.http.headers["Authorization"]
    # a wrong invoke key: the call's error branch says what to look at
    wrong = _caller(
        n8n.server, stack.server.url, name, registry_key, "Bearer mik_not-a-key"
    )
    run = n8n.server.execute(wrong)
    assert run.get("status") == "error", json.dumps(run)[:3000]
    assert run["data"]["resultData"]["lastNodeExecuted"] == "The call failed"
    message = run["data"]["resultData"]["error"]["message"]
    assert "401" in message and "invoke key" in message, message

    # a model with no production entry: the picker says so
    missing = _caller(
        n8n.server,
        stack.server.url,
        f"{name}-none",
        registry_key,
        invoke["Authorization"],
    )
    run = n8n.server.execute(missing)
    assert run.get("status") == "error", json.dumps(run)[:3000]
    message = run["data"]["resultData"]["error"]["message"]
    assert f"no live production endpoint for {name}-none" in message, message

    # Send Test Event: ours is accepted; a hook whose secret n8n does not
    # know is refused, and n8n says why
    ours = stack.admin.button("mlops.webhook", "action_send_test_event", [n8n.hook_id])
    assert ours["params"]["type"] == "success", ours
    foreign = stack.admin.call(
        "mlops.webhook",
        "create",
        {"name": "foreign", "url": n8n.url, "event_types": "deployment.*"},
    )
    refused = stack.admin.button("mlops.webhook", "action_send_test_event", [foreign])
    assert refused["params"]["type"] == "danger", refused
    (attempt,) = _attempts(stack, foreign, "mlops.test", 1, timeout=0)
    assert attempt["status_code"] == 401
    assert json.loads(attempt["excerpt"]) == {"error": "signature does not match"}
    (accepted,) = _attempts(stack, n8n.hook_id, "mlops.test", 1, timeout=0)
    assert accepted["status_code"] == 204 and accepted["ok"]
