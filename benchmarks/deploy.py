"""``benchmarks/run deploy``: from an approval to the staging endpoint
answering, through the product.

A real Odoo server (queue_job runner at two channels, as ``bin/serve``
runs it), a real S3 server, the local target (model servers and the HAProxy
router). For each of N validated ONNX models (the MLP of the serve
benchmark): the time from sending ``POST /versions/<id>/deploy`` to the
first 200 from its invoke URL, with an invoke key, and to the deployment
reading ``active``; p50 and the worst. The baseline, in the same run: the
local target's adapter alone bringing the same file up (a model server
started, ready, the router told), no Odoo, no queue, no S3; the
difference is what the orchestration costs (six stage jobs, each released
by the one before's commit, the artifact read back from S3 and its hash
checked). Also: one blue-green promotion under the same clock, approval to
production answering with the new version.
"""

import contextlib
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests
import serve
import systemstack
import testservers

REPO = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("MLOPS_BENCH_DEPLOYS", "5"))
BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


def _answers(url, headers, version, deadline):
    """Poll ``url`` until it answers 200 from ``version``; the moment it did."""
    while time.monotonic() < deadline:
        try:
            answer = requests.post(url, json=BODY, headers=headers, timeout=5)
            if answer.status_code == 200 and (
                answer.headers.get("X-MLOps-Version") == version
            ):
                return time.perf_counter()
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} never answered from {version}")


def _deploy(stack, version_id, route, version, headers, **body):
    """Seconds from the request to ``active``, and to the invoke URL
    answering from ``version``."""
    started = time.perf_counter()
    answer = stack.rest.post(
        f"/versions/{version_id}/{route}", {"reason": "benchmark", **body}
    )
    answer.raise_for_status()
    deployment_id = answer.json()["deployment_id"]
    deadline = time.monotonic() + 120
    while True:
        detail = stack.rest.get(f"/deployments/{deployment_id}").json()
        if detail["state"] == "active":
            active = time.perf_counter()
            break
        if detail["state"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"deployment {deployment_id}: {detail}")
        time.sleep(0.02)
    answered = _answers(detail["endpoint_url"], headers, version, deadline)
    # the endpoint may answer before Odoo has committed ``active``
    return active - started, max(answered, started) - started


def baseline(artifacts, work):
    """Seconds for the adapter alone to bring the model up behind the router
    and answer, N times."""
    targets = serve.adapter("targets")
    target_local = serve.adapter("target_local")
    model = work / "baseline.onnx"
    model.write_bytes(artifacts.onnx_mlp(seed=5))
    target = target_local.LocalTarget(work / "baseline-target", testservers.free_port())
    token = "mik_bench-deploy"
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    try:
        for index in range(ROUNDS):
            plan = targets.ServePlan(
                f"d{index}",
                f"c1-base{index}-staging",
                f"base{index}",
                "1.0.0",
            )
            target.publish_keys(
                plan.route, {hashlib.sha256(token.encode()).hexdigest(): None}, set()
            )
            target.fetch_artifact(plan, lambda: contextlib.nullcontext(str(model)))
            started = time.perf_counter()
            target.apply(plan)
            target.switch_traffic({plan.route: [(plan.key, 100)]})
            url = f"{target.route_url(plan.route)}/v2/models/{plan.model_name}/infer"
            answered = _answers(url, headers, "1.0.0", time.monotonic() + 60)
            times.append(answered - started)
    finally:
        for key in list(target.runtime.running()):
            target.runtime.stop(key, timeout=5)
        target.router.stop()
    return times


def bench_deploy():
    artifacts = serve._artifacts()
    import validation  # noqa: PLC0415 - the benchmarks folder is on the path

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-deploy-"))
    print("baseline: the local target's adapter alone", flush=True)
    alone = baseline(artifacts, work)
    print("starting Odoo (queue_job runner at 2 channels) and SeaweedFS", flush=True)
    stack = validation._Stack(work)
    try:
        admin = stack.admin
        target = admin.call(
            "mlops.deployment.target", "search", [("code", "=", "local")]
        )
        admin.call(
            "mlops.deployment.target",
            "write",
            target,
            {"options": {"router_port": testservers.free_port()}},
        )
        wizard = admin.call(
            "mlops.invoke.key.wizard", "create", {"name": "bench", "environment": "all"}
        )
        admin.call("mlops.invoke.key.wizard", "action_generate", [wizard])
        (shown,) = admin.call("mlops.invoke.key.wizard", "read", [wizard], ["key"])
        headers = {"Authorization": f"Bearer {shown['key']}"}
        # an approver who did not upload (separation of duties)
        approver = _approver(stack)
        versions = []
        for index in range(ROUNDS + 1):
            name = f"bench-deploy-{uuid.uuid4().hex[:6]}"
            answer = stack.rest.upload(name, "1.0.0", artifacts.onnx_mlp(seed=index))
            answer.raise_for_status()
            versions.append(answer.json()["version_id"])
        settled = stack.rest.wait_settled(versions)
        assert set(settled.values()) == {"validated"}, settled
        stack.rest = approver
        to_active, to_answer = [], []
        for version_id in versions[:ROUNDS]:
            active, answered = _deploy(stack, version_id, "deploy", "1.0.0", headers)
            to_active.append(active)
            to_answer.append(answered)
        # blue-green: the last one to staging, then production
        last = versions[ROUNDS]
        _deploy(stack, last, "deploy", "1.0.0", headers)
        promoted = _deploy(
            stack, last, "promote", "1.0.0", headers, strategy="blue_green"
        )
    finally:
        stack.close()
        systemstack.stop_runtime(work / "state" / "data")
    print(f"\napproval -> staging endpoint answering, {ROUNDS} models, local target")
    print(
        f"  through Odoo   p50 {statistics.median(to_answer):5.2f} s   "
        f"worst {max(to_answer):5.2f} s   (active: p50 "
        f"{statistics.median(to_active):5.2f} s)"
    )
    print(
        f"  adapter alone  p50 {statistics.median(alone):5.2f} s   "
        f"worst {max(alone):5.2f} s"
    )
    overhead = statistics.median(to_answer) - statistics.median(alone)
    print(f"  orchestration  +{overhead:.2f} s at p50 (target: under 5 s in all)")
    print(
        f"  blue-green promotion -> production answering: {promoted[1]:.2f} s "
        f"(active after {promoted[0]:.2f} s)"
    )


def _approver(stack):
    admin = stack.admin
    (group,) = admin.call(
        "ir.model.data",
        "search_read",
        [("module", "=", "creativeflow_mlops"), ("name", "=", "group_mlops_approver")],
        fields=["res_id"],
    )
    admin.call(
        "res.users",
        "create",
        {
            "name": "Bench Approver",
            "login": "bench_approver",
            "email": "bench@example.com",
            "password": "bench-approver-pw",
            "groups_id": [(6, 0, [group["res_id"]])],
        },
    )
    session = systemstack.WebSession(
        stack.server.url, stack.dbname, "bench_approver", "bench-approver-pw"
    )
    return systemstack.RestClient(stack.server.url, session.make_api_key())
