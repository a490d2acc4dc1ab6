"""A cluster deployment as users run it: a real Odoo (job runner at two
channels) deploying to a real kube-apiserver (tools/kubeserver.py, a
thread playing the kubelet), driven only from outside: REST, JSON-RPC and
the cluster's own API. The same faces as the local target: the version's
approval, the endpoint in the registry, the events, drift and undeploy."""

import threading
import time
import uuid

import pytest
import samples
from kubeserver import Kubelet
from test_backend_buttons import DEPLOYMENTS, shoot_as_admin
from test_deployments import _wait

APPROVER = "creativeflow_mlops.group_mlops_approver"
SUPERVISOR = "creativeflow_mlops.ir_cron_runtime_supervisor"
PUBLIC = "https://models.example.com"
TARGETS = "/odoo/action-creativeflow_mlops.mlops_deployment_target_action"


@pytest.fixture(scope="module")
def cluster(stack, kube_server):
    """The target ``cluster`` on a namespace of its own, a kubelet thread
    running every pod that appears there."""
    namespace = f"sys-{uuid.uuid4().hex[:6]}"
    kube_server.create_namespace(namespace)
    kubelet = Kubelet(kube_server, node=namespace).register()
    stack.admin.call(
        "mlops.deployment.target",
        "create",
        {
            "name": "Cluster",
            "code": "cluster",
            "kind": "kubernetes",
            "options": {
                "server_url": kube_server.url,
                "ca_file": kube_server.ca_file,
                "namespace": namespace,
                "public_url": PUBLIC,
            },
        },
    )
    stop = threading.Event()

    def play():
        while not stop.is_set():
            kubelet.run(namespace)
            kubelet.let_go(namespace)
            stop.wait(0.3)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    yield namespace
    stop.set()
    thread.join(5)


def _object(kube_server, path, **labels):
    """The one object at ``path`` with ``labels`` (names carry the target's
    owner, which only Odoo knows), or None."""
    selector = ",".join(f"mlops.creativeflow.io/{k}={v}" for k, v in labels.items())
    items = kube_server.get(f"{path}?labelSelector={selector}").json()["items"]
    assert len(items) <= 1, items
    return items[0] if items else None


def test_a_version_deploys_to_the_cluster_as_to_any_target(
    stack, kube_server, cluster, name
):
    target = stack.admin.call(
        "mlops.deployment.target", "search", [("code", "=", "cluster")]
    )
    shown = stack.admin.call(
        "mlops.deployment.target", "action_test_connection", target
    )
    assert shown["params"]["type"] == "success", shown["params"]["message"]
    assert "v1.20.2" in shown["params"]["message"]

    approver = stack.user("sys_k8s_approver", [APPROVER])
    answer = stack.rest.upload(name, "1.0.0", samples.onnx_mlp(seed=3))
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"
    events_before = stack.rest.get("/events", limit=1).json()["next"]
    answer = approver.post(
        f"/versions/{version_id}/deploy",
        {"reason": "to the cluster", "target": "cluster", "replicas": 2},
    )
    assert answer.status_code == 202, answer.text
    deployment_id = answer.json()["deployment_id"]
    deployment = _wait(
        approver,
        f"/deployments/{deployment_id}",
        lambda d: d["state"] in ("active", "failed"),
    )
    assert deployment["state"] == "active", deployment
    stages = {s["name"]: s["state"] for s in deployment["pipeline_run"]["stages"]}
    assert stages == {
        "fetch_artifact": "skipped",
        "build_image": "skipped",
        "push_image": "skipped",
        "apply": "succeeded",
        "verify": "succeeded",
        "switch_traffic": "succeeded",
    }
    route = f"c1-{name}-staging"
    assert deployment["endpoint_url"] == f"{PUBLIC}/m/{route}/v2/models/{name}/infer"
    assert deployment["target"] == "cluster"
    # on the cluster: two pods' worth, the route's Service on this colour
    deployments = f"/apis/apps/v1/namespaces/{cluster}/deployments"
    services = f"/api/v1/namespaces/{cluster}/services"
    live = _object(kube_server, deployments, colour=f"d{deployment_id}")
    assert live["spec"]["replicas"] == 2
    service = _object(kube_server, services, route=route)
    assert service["spec"]["selector"]["mlops.creativeflow.io/colour"] == (
        f"d{deployment_id}"
    )
    # the registry n8n reads lists it with the cluster's invoke URL
    items = stack.rest.get("/endpoints", environment="staging").json()["items"]
    (entry,) = [e for e in items if e["model"] == name]
    assert entry["invoke_url"] == deployment["endpoint_url"]
    # the events say what happened to it
    events = stack.rest.get("/events", since=events_before, limit=200).json()["items"]
    assert any(
        e["resource"] == "deployment" and e["resource_id"] == deployment_id
        for e in events
    ), events

    # deleted by hand on the cluster: the supervisor flags it
    kube_server._call(
        "DELETE",
        f"{deployments}/{live['metadata']['name']}",
    )
    before = stack.cron_lastcall(SUPERVISOR)
    stack.set_cron(SUPERVISOR, active=True)
    stack.wait_cron_ran(SUPERVISOR, before)
    flagged = approver.get(f"/deployments/{deployment_id}").json()
    assert flagged["drift"] == "missing", flagged
    assert "is gone" in flagged["drift_detail"]
    # the target's form and the flagged deployment's (docs/screenshots)
    shoot_as_admin(
        stack,
        [
            (f"{TARGETS}/{target[0]}", ".o_form_view", "kubernetes-target"),
            (f"{DEPLOYMENTS}/{deployment_id}", ".o_form_view", "kubernetes-deployment"),
        ],
    )

    # undeploy: nothing of it left on the cluster
    answer = approver.http.delete(
        f"{approver.base}/deployments/{deployment_id}", timeout=60
    )
    assert answer.status_code in (200, 202, 204), answer.text

    def left():
        chosen = {"labelSelector": f"mlops.creativeflow.io/colour=d{deployment_id}"}
        return [
            item["metadata"]["name"]
            for path in (
                f"/apis/apps/v1/namespaces/{cluster}/replicasets",
                f"/api/v1/namespaces/{cluster}/pods",
                f"/api/v1/namespaces/{cluster}/secrets",
            )
            for item in kube_server.get(path, params=chosen).json()["items"]
        ]

    deadline = time.monotonic() + 60
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == []
    assert _object(kube_server, services, route=route) is None
