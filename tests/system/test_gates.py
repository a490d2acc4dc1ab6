"""The gate and a deploy freeze as users meet them, on a real Odoo (job
runner at two channels, the local target): an approver promotes over REST;
a cluster's controller, speaking as Flagger does (its payload, the key in
its metadata), is let through; a Manager freezes production over JSON-RPC
and the next question is refused with the freeze's name, as is the next
promotion; the gate's answers are all kept."""

from datetime import UTC, datetime, timedelta

import requests
import samples
from test_backend_buttons import shoot_as_admin
from test_deployments import _wait

APPROVER = "creativeflow_mlops.group_mlops_approver"
USER = "creativeflow_mlops.group_mlops_user"
FREEZES = "/odoo/action-creativeflow_mlops.mlops_deploy_freeze_action"
CHECKS = "/odoo/action-creativeflow_mlops.mlops_gate_check_action"


def _flagger(stack, bot_key, name, version, phase="Progressing"):
    """What Flagger's confirm-rollout webhook POSTs: no header of its own."""
    return requests.post(
        f"{stack.rest.base}/gates/{name}/production",
        json={
            "name": name,
            "namespace": "mlops",
            "phase": phase,
            "checksum": "85d557f47b",
            "metadata": {"version": version, "api_key": bot_key},
        },
        timeout=60,
    )


def test_the_gate_follows_approvals_and_freezes(stack, name):
    approver = stack.user("sys_gate_approver", [APPROVER])
    bot = stack.user("sys_gate_bot", [USER])
    bot_key = bot.http.headers["Authorization"].removeprefix("Bearer ")
    answer = stack.rest.upload(name, "1.0.0", samples.onnx_mlp(seed=21))
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"

    # not approved for production yet: refused, and kept
    refused = _flagger(stack, bot_key, name, "1.0.0")
    assert refused.status_code == 403, refused.text
    assert refused.json()["approved"] is False
    answer = approver.post(f"/versions/{version_id}/deploy", {"reason": "soak"})
    assert answer.status_code == 202, answer.text
    _wait(approver, f"/versions/{version_id}", lambda v: v["state"] == "staging")
    answer = approver.post(
        f"/versions/{version_id}/promote",
        {"reason": "soak clean", "strategy": "blue_green"},
    )
    assert answer.status_code == 202, answer.text
    let_through = _flagger(stack, bot_key, name, "1.0.0")
    assert let_through.status_code == 200, let_through.text
    assert let_through.json()["approved_by"] == "sys_gate_approver"

    # a Manager freezes production: the gate and the next promotion refuse
    now = datetime.now(UTC).replace(tzinfo=None)
    stack.admin.call(
        "mlops.deploy.freeze",
        "create",
        {
            "name": "Launch week",
            "environment": "production",
            "date_start": (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
            "date_end": (now + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S"),
            "reason": "the launch runs on what serves now",
        },
    )
    frozen = _flagger(stack, bot_key, name, "1.0.0", phase="Promoting")
    assert frozen.status_code == 409, frozen.text
    assert frozen.json()["error"]["code"] == "frozen"
    assert "“Launch week”" in frozen.json()["error"]["message"]
    second = stack.rest.upload(name, "2.0.0", samples.onnx_mlp(seed=22))
    second_id = second.json()["version_id"]
    assert stack.rest.wait_settled([second_id])[second_id] == "validated"
    answer = approver.post(f"/versions/{second_id}/deploy", {"reason": "soak"})
    assert answer.status_code == 202, answer.text
    _wait(approver, f"/versions/{second_id}", lambda v: v["state"] == "staging")
    refused = approver.post(f"/versions/{second_id}/promote", {"reason": "now"})
    assert refused.status_code == 409, refused.text
    assert "Production is frozen" in refused.json()["error"]["message"]
    assert approver.get(f"/versions/{second_id}").json()["state"] == "staging"

    # every answer kept, with what Flagger said it was at
    checks = stack.admin.call(
        "mlops.gate.check",
        "search_read",
        [("version", "in", ["1.0.0"]), ("model_id.name", "=", name)],
        ["status", "approved", "phase", "caller_id"],
        order="id",
    )
    assert [(c["status"], c["approved"]) for c in checks] == [
        (403, False), (200, True), (409, False),
    ]  # fmt: skip
    assert checks[-1]["phase"] == "Promoting"
    assert {c["caller_id"][1] for c in checks} == {"sys_gate_bot"}
    shoot_as_admin(
        stack,
        [
            (FREEZES, ".o_list_view", "deploy-freezes"),
            (CHECKS, ".o_list_view", "gate-checks"),
        ],
    )
