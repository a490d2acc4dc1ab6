"""The feedback loop as users run it: a real Odoo with the job runner, a real
model server logging its calls, real S3. Calls are answered and logged,
feedback names them by request id, the export joins the two in the object
store (read back through its download URL and compared with what was asked
and answered), and the next version names the export in its lineage."""

import json
import uuid

import pytest
import requests
import samples
import systemstack
from test_backend_buttons import shoot_as_admin
from test_deployments import _deploy, _validated, _wait

APPROVER = "creativeflow_mlops.group_mlops_approver"
COLLECT = "creativeflow_mlops.ir_cron_inference_log_collect"
RATE = "creativeflow_mlops.inference_log_rate"
EXPORTS = "/odoo/action-creativeflow_mlops.mlops_feedback_export_action"
FEEDBACK = "/odoo/action-creativeflow_mlops.mlops_feedback_action"


@pytest.fixture(scope="module")
def approver(stack):
    return stack.user("sys_feedback_approver", [APPROVER])


@pytest.fixture
def every_call_logged(stack):
    before = stack.admin.call("ir.config_parameter", "get_param", RATE) or "0.01"
    stack.admin.call("ir.config_parameter", "set_param", RATE, "1.0")
    yield
    stack.admin.call("ir.config_parameter", "set_param", RATE, before)


def test_feedback_exported_with_its_calls_and_named_by_the_next_version(
    stack, approver, invoke, name, every_call_logged
):
    version_id, _data = _validated(stack, name, "1.0.0", seed=41)
    deployment = _deploy(approver, version_id, "deploy")
    assert deployment["state"] == "active", deployment
    (model_id,) = stack.admin.call("mlops.model", "search", [("name", "=", name)])
    # calls, each with its own request id; what was asked and answered
    asked, answered = {}, {}
    with requests.Session() as http:
        for n in range(6):
            request_id = f"fb-{uuid.uuid4().hex[:12]}"
            body = {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": [n / 10] * 64,
                    }
                ]
            }
            reply = http.post(
                deployment["endpoint_url"],
                json=body,
                headers={**invoke, "X-Request-Id": request_id},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["X-Request-Id"] == request_id
            asked[request_id], answered[request_id] = body, reply.json()
    # the log reaches the store as the cron collects it
    cron = stack.record_id(COLLECT)

    def logged():
        try:
            stack.admin.call("ir.cron", "method_direct_trigger", [cron])
        except systemstack.RpcError as error:
            # the cron runner has it now: it runs all the same
            assert "currently being executed" in str(error), error
        return stack.admin.call(
            "mlops.inference.record",
            "search_count",
            [("request_id", "in", list(asked))],
        ) == len(asked)

    systemstack.wait_for(logged, timeout=120, every=2)
    # feedback on four of the calls, and one on a call never made
    rated = list(asked)[:4]
    for rating, request_id in enumerate(rated, start=2):
        reply = approver.post(
            "/feedback",
            {
                "deployment_id": deployment["id"],
                "rating": rating,
                "generation_request_id": request_id,
            },
        )
        assert reply.status_code == 201, reply.text
    reply = approver.post(
        "/feedback",
        {"version_id": version_id, "rating": 1, "generation_request_id": "never"},
    )
    assert reply.status_code == 201, reply.text
    # the export, as a retraining pipeline asks for it
    reply = approver.post("/feedback/export", {"model_id": model_id})
    assert reply.status_code == 202, reply.text
    export_id = reply.json()["export_id"]
    export = _wait(
        approver,
        f"/feedback/export/{export_id}",
        lambda e: e["state"] != "queued",
        timeout=120,
    )
    assert export["state"] == "done", export
    assert (export["lines"], export["logged_lines"]) == (5, 4)
    assert export["artifact"]["uri"].startswith("s3://")
    download = approver.http.get(
        f"{stack.server.url}{export['artifact']['download_url']}", timeout=60
    )
    assert download.status_code == 200, download.text
    lines = [json.loads(line) for line in download.content.splitlines()]
    assert len(download.content) == export["artifact"]["size"]
    by_request = {line["request_id"]: line for line in lines}
    assert set(by_request) == {*rated, "never"}
    for rating, request_id in enumerate(rated, start=2):
        line = by_request[request_id]
        assert line["rating"] == rating
        assert line["version"] == "1.0.0"
        call = line["call"]
        assert call["inputs"] == asked[request_id]["inputs"]
        assert [o["data"] for o in call["outputs"]] == [
            o["data"] for o in answered[request_id]["outputs"]
        ]
    assert by_request["never"]["call"] is None
    # the next version, trained on it
    reply = stack.rest.upload(
        name,
        "2.0.0",
        samples.onnx_mlp(seed=42),
        lineage={"feedback_export": export_id},
    )
    assert reply.status_code == 202, reply.text
    trained = reply.json()["version_id"]
    version = approver.get(f"/versions/{trained}").json()
    assert version["lineage"]["feedback_export"] == export_id
    assert approver.get(f"/feedback/export/{export_id}").json()["versions"] == [trained]
    assert not stack.server.errors()
    # the export and the ratings per version (docs/screenshots)
    shoot_as_admin(
        stack,
        [
            (f"{EXPORTS}/{export_id}", ".o_form_view", "feedback-export"),
            (f"{FEEDBACK}?view_type=pivot", ".o_pivot", "feedback-pivot"),
        ],
    )
