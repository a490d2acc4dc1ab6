"""Monitoring as users run it: a real Odoo with the job runner, real model
servers and router under load. A production SLO breached by a version whose
answers fail is rolled back by itself, and no call that both versions
answer fails while it happens."""

import threading
import time
from collections import Counter

import pytest
import requests
import samples
import systemstack
from test_backend_buttons import DEPLOYMENTS, shoot_as_admin
from test_deployments import _deploy, _validated, _wait

APPROVER = "creativeflow_mlops.group_mlops_approver"
COLLECT = "creativeflow_mlops.ir_cron_metrics_collect"
BOOK_COSTS = "creativeflow_mlops.ir_cron_book_costs"
COSTS = "/odoo/action-creativeflow_mlops.mlops_cost_line_action"
METRICS = "/odoo/action-creativeflow_mlops.mlops_deployment_metric_action"
SLOS = "/odoo/action-creativeflow_mlops.mlops_slo_action"
ONE_ROW = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}
TWO_ROWS = {
    "inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 128}]
}


@pytest.fixture(scope="module")
def approver(stack):
    return stack.user("sys_slo_approver", [APPROVER])


def _in_production(stack, approver, name, version, data):
    answer = stack.rest.upload(name, version, data)
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"
    for route, body in (("deploy", {}), ("promote", {"strategy": "blue_green"})):
        answer = approver.post(
            f"/versions/{version_id}/{route}", {"reason": "slo test", **body}
        )
        assert answer.status_code == 202, answer.text
        deployment = _wait(
            approver,
            f"/deployments/{answer.json()['deployment_id']}",
            lambda d: d["state"] in ("active", "failed"),
        )
        assert deployment["state"] == "active", deployment
    return version_id, deployment["id"]


def test_an_slo_breach_rolls_production_back_without_a_failed_call(
    stack, approver, invoke, name
):
    first, blue = _in_production(
        stack, approver, name, "1.0.0", samples.onnx_mlp(seed=31)
    )
    second, green = _in_production(
        stack, approver, name, "2.0.0", samples.onnx_mlp(seed=32, fail=True)
    )
    (model_id,) = stack.admin.call("mlops.model", "search", [("name", "=", name)])
    slo = stack.admin.call(
        "mlops.slo",
        "create",
        {
            "name": f"{name} errors",
            "environment": "production",
            "model_id": model_id,
            "max_error_rate": 0.05,
            "max_p95_ms": 0,
            "min_requests": 20,
            "window_minutes": 5,
            "auto_rollback": True,
        },
    )
    url = approver.get(f"/deployments/{green}").json()["endpoint_url"]
    events_before = stack.rest.get("/events", limit=1).json()["next"]
    failed_good, answered, stop = [], Counter(), threading.Event()

    def load(body, good):
        with requests.Session() as http:
            while not stop.is_set():
                reply = http.post(url, json=body, headers=invoke, timeout=10)
                answered[(reply.headers.get("X-MLOps-Version"), reply.status_code)] += 1
                if good and reply.status_code != 200:
                    failed_good.append(reply.status_code)

    threads = [
        threading.Thread(target=load, args=(ONE_ROW, True)),
        threading.Thread(target=load, args=(TWO_ROWS, False)),
    ]
    cron = stack.record_id(COLLECT)
    for thread in threads:
        thread.start()
    try:
        # the collector as its cron runs it, asked now and again: the first
        # pass reads where the window starts, a later one sees the 5xx
        rolled = _wait(
            approver,
            f"/deployments/{green}",
            lambda d: d["state"] != "active",
            timeout=120,
            every=lambda: stack.admin.call("ir.cron", "method_direct_trigger", [cron]),
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert rolled["state"] == "rolled_back", rolled
    assert not failed_good, failed_good
    assert answered[("2.0.0", 500)] > 0, answered
    assert approver.get(f"/deployments/{blue}").json()["state"] == "active"
    assert approver.get(f"/versions/{first}").json()["state"] == "production"
    assert approver.get(f"/versions/{second}").json()["state"] == "deprecated"
    reply = requests.post(url, json=TWO_ROWS, headers=invoke, timeout=10)
    assert (reply.status_code, reply.headers["X-MLOps-Version"]) == (200, "1.0.0")
    # what was kept, and what was said
    items = approver.get(f"/deployments/{green}/metrics", window=60, step=60).json()[
        "items"
    ]
    assert sum(i["errors_5xx"] for i in items) >= 20, items
    events, cursor = [], events_before
    while True:
        page = stack.rest.get("/events", since=cursor, limit=500).json()
        if not page["items"]:
            break
        events += page["items"]
        cursor = page["next"]
    (breach,) = [
        e for e in events if e["type"] == "slo.breached" and e["resource_id"] == green
    ]
    assert breach["data"]["slo"] == f"{name} errors"
    (line,) = stack.admin.call(
        "mlops.promotion",
        "search_read",
        [("deployment_id", "=", blue), ("kind", "=", "rollback")],
        fields=["reason"],
    )
    assert "automatic rollback" in line["reason"] and "error rate" in line["reason"]
    assert not stack.server.errors()
    # the breached deployment, the metrics kept, the SLO (docs/screenshots)
    shoot_as_admin(
        stack,
        [
            (f"{DEPLOYMENTS}/{green}", ".o_form_view", "slo-breached-deployment"),
            (METRICS, ".o_graph_renderer", "deployment-metrics"),
            (f"{SLOS}/{slo}", ".o_form_view", "slo"),
        ],
    )


def test_what_pods_cost_is_booked_by_the_jobs_once(stack, approver, name):
    """The cost cron through the real runner: twice, a minute apart; the
    lines of one deployment follow each other without a gap or an overlap,
    and add up to the time it ran, at the target's prices."""
    (local,) = stack.admin.call(
        "mlops.deployment.target", "search", [("code", "=", "local")]
    )
    # the admin reads analytic lines as analytic accounting does
    stack.admin.call(
        "res.users",
        "write",
        [stack.record_id("base.user_admin")],
        {"groups_id": [(4, stack.record_id("analytic.group_analytic_accounting"))]},
    )
    prices = {"cost_gpu_hour": 0, "cost_cpu_hour": 60.0, "cost_memory_gib_hour": 0}
    stack.admin.call("mlops.deployment.target", "write", [local], prices)
    version_id, _data = _validated(stack, name, "1.0.0", seed=51)
    deployment = _deploy(approver, version_id, "deploy", resources={"cpu": "2"})
    assert deployment["state"] == "active", deployment
    cron = stack.record_id(BOOK_COSTS)
    lines = []
    for _round in range(2):
        # a minute more of running, then the cron and the jobs it queues
        time.sleep(61)
        stack.admin.call("ir.cron", "method_direct_trigger", [cron])
        systemstack.wait_for(
            lambda: (
                not stack.jobs(
                    [("method_name", "=", "_book_cost"), ("state", "!=", "done")]
                )
            ),
            timeout=60,
        )
        lines = stack.admin.call(
            "account.analytic.line",
            "search_read",
            [("mlops_deployment_id", "=", deployment["id"])],
            fields=["mlops_period_start", "mlops_period_end", "unit_amount", "amount"],
            order="mlops_period_start",
        )
    assert len(lines) == 2, lines
    assert lines[0]["mlops_period_end"] == lines[1]["mlops_period_start"], lines
    hours = sum(line["unit_amount"] for line in lines)
    # it ran from its deployment to the last booking, within a minute
    assert 1.0 / 60 < hours < 3.1 / 60, hours
    # one replica of 2 CPUs at 60 an hour, each line rounded to the cent
    assert abs(-sum(line["amount"] for line in lines) - hours * 2 * 60) <= 0.011
    (booked,) = stack.admin.call(
        "mlops.deployment", "read", [deployment["id"]], ["cost_booked_until"]
    )
    assert booked["cost_booked_until"] == lines[1]["mlops_period_end"]
    # the costs per model and version (docs/screenshots)
    shoot_as_admin(
        stack, [(f"{COSTS}?view_type=pivot", ".o_pivot", "deployment-costs")]
    )
    stack.admin.call(
        "mlops.deployment.target",
        "write",
        [local],
        dict.fromkeys(prices, 0),
    )
