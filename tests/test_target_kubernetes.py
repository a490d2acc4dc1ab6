"""The ``kubernetes`` target against a real kube-apiserver, etcd and
kube-controller-manager (tools/kubeserver.py), the tests playing the
kubelet; its manifests against Kubernetes' current schemas
(kubernetes-validate) and the InferenceService CRD the tests install."""

import base64
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubeserver import (
    LIMITED_USER,
    KServeController,
    Kubelet,
    TritonMetrics,
    host_address,
)
from test_image_signing import _keys

from odoo.addons.creativeflow_mlops.adapters import k8s_manifests as manifests
from odoo.addons.creativeflow_mlops.adapters import k8s_revisions as revisions
from odoo.addons.creativeflow_mlops.adapters.target_kubernetes import KubernetesTarget
from odoo.addons.creativeflow_mlops.adapters.targets import (
    ServePlan,
    StageNotRun,
    TargetContext,
    TargetFailed,
    TargetUnavailable,
)

CRD = Path(__file__).parent / "k8s" / "inferenceservice_crd.yaml"
# the newest Kubernetes whose schemas kubernetes-validate ships
SCHEMA_VERSION = kubernetes_validate.latest_version()
_numbers = itertools.count(1)
IMAGE_SOURCE = {
    "registry": "registry.local/mlops",
    "base_image": "registry.local/base/busybox:1",
}


def options(kube=None, **values):
    base = {
        "namespace": "mlops",
        "model_source": "s3",
        "public_url": "https://models.example.com",
    }
    if kube:
        base.update(server_url=kube.url, ca_file=kube.ca_file)
    else:
        base.update(server_url="https://127.0.0.1:1")
    base.update(values)
    return KubernetesTarget.parse_options(base)


def make_target(kube, token=None, owner="", **values):
    return KubernetesTarget.build(
        TargetContext("/nonexistent", owner=owner),
        options(kube, **values),
        {
            "token": token or kube.admin_token,
            "s3_access_key": "ak",
            "s3_secret_key": "sk",
        },
    )


def make_plan(key=None, model="mlp", environment="production", **values):
    key = key or f"d{next(_numbers)}"
    base = {
        "key": key,
        "route": f"c1-{model}-{environment}",
        "model_name": model,
        "version": "1.0.0",
        "artifact_uri": f"s3://models/{model}/model.onnx",
        "artifact_sha256": "0" * 64,
        "environment": environment,
        "labels": {
            "model": model,
            "version": "1.0.0",
            "deployment": key,
            "environment": environment,
            "company": "1",
        },
    }
    base.update(values)
    return ServePlan(**base)


@pytest.fixture
def namespace(kube_server):
    name = f"t{next(_numbers)}"
    kube_server.create_namespace(name)
    return name


@pytest.fixture
def kubelet(kube_server):
    node = f"node-{next(_numbers)}"
    return Kubelet(kube_server, node=node).register()


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------


def _validate(obj):
    kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def test_plain_manifests_validate_against_the_current_schema():
    """Deployment, HPA (autoscaling/v2), PDB (policy/v1), Secret and the
    route's Service, with GPUs, node selector and tolerations: valid for the
    newest Kubernetes schema, non-root and read-only, probes on the OIP
    health routes."""
    opts = options(
        max_replicas=6,
        node_selector={"pool": "gpu"},
        tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ],
    )
    plan = make_plan(
        replicas=2,
        resources={"gpu": 1, "gpu_type": "NVIDIA-A10G", "cpu": "4", "memory": "16Gi"},
    )
    objects = manifests.colour_objects(
        plan, opts, {"autoscaling": "v2", "policy": "v1"}, {"AWS_ACCESS_KEY_ID": "a"}
    )
    assert [o["kind"] for o in objects] == [
        "Secret", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
    ]  # fmt: skip
    for obj in [*objects, manifests.route_service(plan.route, plan.key)]:
        _validate(obj)
    deployment = objects[1]
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-A10G",
    }
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for name in ("model", "version", "deployment", "environment"):
        assert labels[manifests.LABELS[name]] == plan.labels[name]
    assert labels[manifests.COLOUR_LABEL] == plan.key
    # the S3 init container reads its credentials from the deployment's Secret
    init = pod["initContainers"][0]
    assert init["envFrom"] == [{"secretRef": {"name": manifests.secret_name(plan)}}]
    # AWS by default; the store the cluster's pods reach when named
    assert {e["name"] for e in init["env"]} == {"ARTIFACT_URI", "MODEL_PATH", "HOME"}
    store = options(s3_endpoint="http://minio.storage:9000", s3_region="eu-west-3")
    (secret, deployment, *_rest) = manifests.colour_objects(plan, store, {}, {})
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-3"
    # as KServe's storage initializer reads a Secret
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.storage:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "eu-west-3",
    }
    with pytest.raises(ValueError, match="s3_endpoint"):
        options(s3_endpoint="minio:9000")


def test_modelcar_and_older_api_versions():
    """A ModelCar image copied by an init container; the v2beta2 and
    v1beta1 versions an older cluster serves."""
    opts = options(model_source="image", max_replicas=3, **IMAGE_SOURCE)
    plan = make_plan(replicas=2, image="registry.local/mlp@sha256:" + "a" * 64)
    objects = manifests.colour_objects(
        plan, opts, {"autoscaling": "v2beta2", "policy": "v1beta1"}
    )
    assert [o["apiVersion"] for o in objects] == [
        "apps/v1", "autoscaling/v2beta2", "policy/v1beta1",
    ]  # fmt: skip
    init = objects[0]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == plan.image
    _validate(objects[0])
    with pytest.raises(ValueError, match="not built"):
        manifests.colour_objects(make_plan(), opts, {})


def test_inference_services_validate_against_the_crd():
    """KServe mode: predictor.model with modelFormat, protocol v2, an oci://
    or s3:// storageUri, GPUs, replicas; checked with the CRD's schema."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    plan = make_plan(replicas=2, resources={"gpu": 1})
    for source, image in (("s3", ""), ("image", "reg.local/m@sha256:" + "b" * 64)):
        opts = options(
            mode="kserve",
            model_source=source,
            max_replicas=4,
            **(IMAGE_SOURCE if source == "image" else {}),
        )
        (isvc,) = [
            o
            for o in manifests.colour_objects(
                dataclasses.replace(plan, image=image), opts, {}
            )
            if o["kind"] == "InferenceService"
        ]
        jsonschema.validate(isvc, schema)
        if source == "s3":
            # the storage initializer's keys: a ServiceAccount naming the Secret
            account = objects_of(plan, opts, "ServiceAccount")
            _validate(account)
            assert account["secrets"] == [{"name": manifests.secret_name(plan)}]
            assert (
                isvc["spec"]["predictor"]["serviceAccountName"]
                == (account["metadata"]["name"])
            )
        else:
            assert "serviceAccountName" not in isvc["spec"]["predictor"]
        model = isvc["spec"]["predictor"]["model"]
        assert model["protocolVersion"] == "v2"
        assert model["modelFormat"] == {"name": "onnx"}
        assert model["storageUri"] == (f"oci://{image}" if image else plan.artifact_uri)
        assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert isvc["spec"]["predictor"]["minReplicas"] == 2
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["model"]["storageUri"] = "ftp://x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def objects_of(plan, opts, kind):
    (found,) = [
        o
        for o in manifests.colour_objects(plan, opts, {}, {"AWS_ACCESS_KEY_ID": "a"})
        if o["kind"] == kind
    ]
    return found


def test_options_are_checked_by_the_kind():
    with pytest.raises(ValueError, match="server_url"):
        KubernetesTarget.parse_options({"namespace": "x"})
    with pytest.raises(ValueError, match="namespace"):
        options(namespace="Not_A_Label")
    with pytest.raises(ValueError, match="mode"):
        options(mode="knative")
    with pytest.raises(ValueError, match="kserve_deployment_mode"):
        options(mode="kserve", kserve_deployment_mode="Fast")
    with pytest.raises(ValueError, match="not an option"):
        options(routerport=1)
    caps = KubernetesTarget.capabilities(options(canary_replicas=20))
    assert caps.traffic_step == 5 and "gpu" in caps.resources


# ---------------------------------------------------------------------------
# Against the API server
# ---------------------------------------------------------------------------


def test_test_connection_names_the_version_and_every_refused_verb(
    kube_server, namespace
):
    info = make_target(kube_server, namespace=namespace).check()
    assert info["server"] == "v1.20.2"
    assert info["access"].startswith("all ")
    limited = make_target(kube_server, kube_server.limited_token, namespace=namespace)
    with pytest.raises(TargetFailed, match="refused: get deployments.apps") as refused:
        limited.check()
    assert "patch deployments/scale.apps" in str(refused.value)
    kube_server.grant(
        LIMITED_USER,
        namespace,
        [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}],
    )
    with pytest.raises(TargetFailed) as fewer:
        limited.check()
    assert "deployments.apps" not in str(fewer.value).split("refused:")[1].split(",")[0]
    assert "get services" in str(fewer.value)
    # everything in the namespace: what is left is the GPU check's reading
    # of the whole cluster, unless that check is off
    kube_server.grant(
        LIMITED_USER,
        namespace,
        [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        name="everything",
    )
    with pytest.raises(TargetFailed) as cluster_wide:
        limited.check()
    assert str(cluster_wide.value).split("refused: ")[1] == (
        "list nodes (cluster-wide), list pods (cluster-wide)"
    )
    unchecked = make_target(
        kube_server, kube_server.limited_token, namespace=namespace, gpu_capacity="off"
    )
    assert unchecked.check()["access"].startswith("all ")


def test_forbidden_names_the_verb_and_resource(kube_server, namespace):
    limited = make_target(kube_server, kube_server.limited_token, namespace=namespace)
    with pytest.raises(TargetFailed, match='cannot patch resource "secrets"'):
        limited.apply(make_plan())


def test_apply_then_verify_reads_the_real_rollout(kube_server, namespace, kubelet):
    """apply submits (dry run first) and returns; verify says not ready
    until the pods are Ready, then ready with the counts."""
    target = make_target(kube_server, namespace=namespace, max_replicas=4)
    plan = make_plan(replicas=2)
    status = target.apply(plan)
    assert not status.ready and "Deployment mlops-" in status.message
    deployment = kube_server.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.colour_name(plan)}"
    ).json()
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "creativeflow-mlops" in managers
    # the cluster serves autoscaling/v2beta2 and policy/v1beta1: chosen
    assert kube_server.get(
        f"/apis/autoscaling/v2beta2/namespaces/{namespace}/horizontalpodautoscalers/"
        f"{manifests.colour_name(plan)}"
    ).ok
    assert kube_server.get(
        f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets/"
        f"{manifests.colour_name(plan)}"
    ).ok
    assert not target.verify(plan).ready
    kubelet.run(namespace, f"{manifests.COLOUR_LABEL}={plan.key}", expect=2)
    status = _until(lambda: target.verify(plan), lambda s: s.ready)
    assert status.message.startswith("2/2 ready")


def test_a_crash_looping_server_fails_verify_with_its_reason(
    kube_server, namespace, kubelet
):
    target = make_target(kube_server, namespace=namespace)
    plan = make_plan()
    target.apply(plan)
    kubelet.crash(namespace, f"{manifests.COLOUR_LABEL}={plan.key}")
    status = _until(lambda: target.verify(plan), lambda s: s.failed)
    assert "CrashLoopBackOff" in status.message


def test_an_image_pull_fails_the_run_only_when_the_registry_refuses(
    kube_server, namespace, kubelet
):
    """A pull that timed out is the kubelet's to retry: verify waits and
    says why; a pull refused (unknown, unauthorized) fails at once."""
    target = make_target(kube_server, namespace=namespace)
    plan = make_plan()
    target.apply(plan)
    chosen = f"{manifests.COLOUR_LABEL}={plan.key}"
    kubelet.crash(namespace, chosen, "ErrImagePull", message="dial tcp: i/o timeout")
    status = _until(lambda: target.verify(plan), lambda s: "ErrImagePull" in s.message)
    assert not status.ready and not status.failed
    kubelet.crash(
        namespace,
        chosen,
        "ImagePullBackOff",
        message='pull access denied for "reg.local/mlp": unauthorized',
    )
    status = _until(lambda: target.verify(plan), lambda s: s.failed)
    assert "unauthorized" in status.message


def test_an_invalid_object_applies_nothing(kube_server, namespace):
    """The API's 422 names the field; the dry run came first, so not even
    the Secret before it was created."""
    target = make_target(
        kube_server, namespace=namespace, node_selector={"pool": "not a label value!"}
    )
    plan = make_plan()
    with pytest.raises(TargetFailed, match="refused the object.*nodeSelector"):
        target.apply(plan)
    assert (
        kube_server.get(
            f"/api/v1/namespaces/{namespace}/secrets",
            params={"labelSelector": f"{manifests.COLOUR_LABEL}={plan.key}"},
        ).json()["items"]
        == []
    )


def test_a_conflict_with_another_manager_is_reported_not_overwritten(
    kube_server, namespace
):
    """Someone edits the image by hand: a plain apply is refused with the
    other manager named; reconciliation flags it; Re-apply overwrites."""
    target = make_target(kube_server, namespace=namespace)
    plan = make_plan()
    target.apply(plan)
    name = manifests.colour_name(plan)
    edited = kube_server.json(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}?fieldManager=kubectl-edit",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "server", "image": "evil:1"}]}
                }
            }
        },
        content_type="application/strategic-merge-patch+json",
    )
    assert edited["spec"]["template"]["spec"]["containers"][0]["image"] == "evil:1"
    with pytest.raises(TargetFailed, match="conflict.*kubectl-edit"):
        target.apply(plan)
    observed = target.reconcile([plan]).observed[plan.key]
    assert observed.drift == "drifted" and "kubectl-edit" in observed.detail
    target.reapply(plan)
    assert target.reconcile([plan]).observed[plan.key].drift == "in_sync"
    image = kube_server.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    ).json()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == manifests.DEFAULT_SERVER_IMAGE
    # a field Odoo never sets, added by hand: not a conflict, but drift, and
    # Re-apply makes the object exactly Odoo's again
    kube_server.json(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}?fieldManager=kubectl-edit",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "server", "env": [{"name": "DEBUG", "value": "1"}]}
                        ]
                    }
                }
            }
        },
        content_type="application/strategic-merge-patch+json",
    )
    target.apply(plan)
    observed = target.reconcile([plan]).observed[plan.key]
    assert observed.drift == "drifted" and ".env" in observed.detail
    status = target.reapply(plan)
    assert f"replaced Deployment {name} whole" in status.message
    assert target.reconcile([plan]).observed[plan.key].drift == "in_sync"
    server = kube_server.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    ).json()["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in server
    # and a Re-apply of what is already Odoo's replaces nothing
    assert "replaced" not in target.reapply(plan).message


def _service(kube, namespace, route):
    return kube.get(
        f"/api/v1/namespaces/{namespace}/services/{manifests.service_name(route)}"
    ).json()


def _replicas(kube, namespace, plan):
    return kube.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.colour_name(plan)}"
    ).json()["spec"]["replicas"]


def test_blue_green_then_canary_split_then_back(kube_server, namespace):
    """Blue-green: one patch of the Service's selector. A canary: the
    route's pods in the ratio of the shares (precision 100 / canary_replicas),
    then each colour back to its own replicas."""
    target = make_target(kube_server, namespace=namespace, canary_replicas=10)
    blue, green = make_plan(replicas=2), make_plan(replicas=2)
    target.apply(blue)
    target.apply(green)
    target.switch_traffic({blue.route: [(blue.key, 100)]})
    selector = _service(kube_server, namespace, blue.route)["spec"]["selector"]
    assert selector[manifests.COLOUR_LABEL] == blue.key
    target.switch_traffic({blue.route: [(green.key, 100)]})
    selector = _service(kube_server, namespace, blue.route)["spec"]["selector"]
    assert selector[manifests.COLOUR_LABEL] == green.key
    # the idle colour keeps its pods for an instant switch back
    assert _replicas(kube_server, namespace, blue) == 2
    target.switch_traffic({blue.route: [(blue.key, 90), (green.key, 10)]})
    selector = _service(kube_server, namespace, blue.route)["spec"]["selector"]
    assert manifests.COLOUR_LABEL not in selector
    assert (
        _replicas(kube_server, namespace, blue),
        _replicas(kube_server, namespace, green),
    ) == (9, 1)
    target.switch_traffic({blue.route: [(green.key, 100)]})
    assert (
        _replicas(kube_server, namespace, blue),
        _replicas(kube_server, namespace, green),
    ) == (2, 2)
    # a route no longer in the table loses its Service
    target.switch_traffic({})
    assert (
        kube_server.get(
            f"/api/v1/namespaces/{namespace}/services/{manifests.service_name(blue.route)}"
        ).status_code
        == 404
    )


def test_a_split_keeps_the_stable_capacity_and_pins_autoscalers(kube_server, namespace):
    """A stable colour of 12 pods split in tens: 20 pods (never fewer than
    it had), 18 and 2; their autoscalers pinned to those counts while the
    route is split, then back to their own bounds."""
    target = make_target(
        kube_server, namespace=namespace, canary_replicas=10, max_replicas=30
    )
    stable, canary = make_plan(replicas=12), make_plan(replicas=12)
    target.apply(stable)
    target.apply(canary)
    hpa = f"/apis/autoscaling/v2beta2/namespaces/{namespace}/horizontalpodautoscalers"

    def bounds(plan):
        spec = kube_server.get(f"{hpa}/{manifests.colour_name(plan)}").json()["spec"]
        return spec["minReplicas"], spec["maxReplicas"]

    target.switch_traffic({stable.route: [(stable.key, 90), (canary.key, 10)]})
    assert (
        _replicas(kube_server, namespace, stable),
        _replicas(kube_server, namespace, canary),
    ) == (18, 2)
    assert (bounds(stable), bounds(canary)) == ((18, 18), (2, 2))
    target.switch_traffic({stable.route: [(canary.key, 100)]})
    assert _replicas(kube_server, namespace, canary) == 12
    assert (bounds(stable), bounds(canary)) == ((12, 30), (12, 30))


def test_canary_gates_read_the_pods_through_the_api_server(kube_server, namespace):
    """No Prometheus: the gates read each Triton pod's /metrics through the
    API server's proxy (the pods need not be reachable from Odoo) and take
    the window's difference."""
    address = host_address()
    triton = TritonMetrics(address)
    try:
        kubelet = Kubelet(kube_server, node=f"node-{namespace}", pod_ip=address)
        kubelet.register()
        target = make_target(kube_server, namespace=namespace, max_replicas=2)
        assert target.capabilities(target.options).analysis
        plan = make_plan(replicas=2)
        target.apply(plan)
        kubelet.run(namespace, f"{manifests.COLOUR_LABEL}={plan.key}", expect=2)
        triton.success, triton.failure = 40, 1
        since = target.reading(plan)
        assert len(since["pods"]) == 2
        triton.success, triton.failure, triton.p95_us = 140, 6, 42000
        total, errors, p95, now = target.analysis(plan, since)
        # both pods answer from the one played server: twice its difference
        assert (total, errors, p95) == (210, 10, 0.042)
        assert set(now["pods"]) == set(since["pods"])
        assert triton.requests == ["/metrics"] * 4
        # a server restarted since (its counters from zero again)
        triton.success, triton.failure = 3, 0
        total, errors, _p95, _now = target.analysis(plan, now)
        assert (total, errors) == (6, 0)
    finally:
        triton.close()


def test_the_gateway_is_placed_on_the_cluster_and_rolls_when_keys_change(
    kube_server, namespace
):
    """The invoke-key gateway's ConfigMap (hashes only), Deployment and
    Service, valid for the current schema; a key revoked changes the pod
    template's checksum (its pods roll); the routes' Services stay apart
    from the gateway's."""
    target = make_target(kube_server, namespace=namespace)
    good, other = "a" * 64, "b" * 64
    table = {
        "c1-mlp-production": ({good: None}, {other}),
        "c1-x-staging": ({other: None}, set()),
    }
    target.publish_key_table(table)
    objects = manifests.gateway_objects(namespace, table, target.options)
    for obj in objects:
        _validate(obj)
    base = (
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.gateway_name()}"
    )
    first = kube_server.get(base).json()
    config = kube_server.get(
        f"/api/v1/namespaces/{namespace}/configmaps/{manifests.gateway_name()}"
    ).json()["data"]
    assert f"{good}:c1-mlp-production 1" in config["grants.map"]
    assert "c1-x-staging" in config["routes.map"]
    assert kube_server.get(
        f"/api/v1/namespaces/{namespace}/services/{manifests.gateway_name()}"
    ).ok
    # the routes' pods take calls from the gateway's alone (metrics: anyone)
    policy = kube_server.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/"
        f"{manifests.gateway_name()}"
    ).json()["spec"]
    assert policy["podSelector"]["matchExpressions"] == [
        {"key": manifests.ROUTE_LABEL, "operator": "Exists"}
    ]
    callers, metrics = policy["ingress"]
    assert (
        callers["from"][0]["podSelector"]["matchLabels"][f"{manifests.GROUP}/component"]
        == "gateway"
    )
    assert [p["port"] for p in callers["ports"]] == [8000, 8080]
    assert "from" not in metrics
    # the same table again (another worker's, say): sent, and nothing rolls
    calls = sum(target.cluster.calls.values())
    target.publish_key_table(table)
    assert sum(target.cluster.calls.values()) > calls
    again = kube_server.get(base).json()
    assert again["metadata"]["generation"] == first["metadata"]["generation"]
    # revoked: the gateway rolls
    target.publish_key_table({**table, "c1-mlp-production": ({}, {good, other})})
    second = kube_server.get(base).json()
    key = f"{manifests.GROUP}/config"
    assert (
        second["spec"]["template"]["metadata"]["annotations"][key]
        != first["spec"]["template"]["metadata"]["annotations"][key]
    )
    assert second["metadata"]["generation"] == first["metadata"]["generation"] + 1
    # a routing table without the gateway's name keeps its Service
    target.switch_traffic({})
    assert kube_server.get(
        f"/api/v1/namespaces/{namespace}/services/{manifests.gateway_name()}"
    ).ok


def test_gpu_capacity_is_checked_before_pods_are_added(kube_server, namespace):
    """Allocatable GPUs minus what pods request, on the nodes the colour may
    run on: refused with the numbers, or a warning when so configured."""
    kubelet = Kubelet(
        kube_server, node=f"gpu-{namespace}", gpus=2, labels={"pool": namespace}
    ).register()
    target = make_target(
        kube_server, namespace=namespace, node_selector={"pool": namespace}
    )
    serving = make_plan(replicas=2, resources={"gpu": 1})
    target.apply(serving)
    kubelet.run(namespace, f"{manifests.COLOUR_LABEL}={serving.key}", expect=2)
    green = make_plan(replicas=1, resources={"gpu": 1}, strategy="blue_green")
    with pytest.raises(
        TargetFailed,
        match=r"1 GPUs needed .* 0 free: 2 allocatable on 1 nodes matching "
        r"pool=.*2 requested",
    ):
        target.apply(green)
    assert (
        kube_server.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.colour_name(green)}"
        ).status_code
        == 404
    )
    warned = make_target(
        kube_server,
        namespace=namespace,
        node_selector={"pool": namespace},
        gpu_capacity="warn",
    )
    assert "warning, not enough GPUs" in warned.apply(green).message
    kubelet.report(gpus=4)
    third = make_plan(replicas=1, resources={"gpu": 1}, strategy="canary")
    assert "GPU" not in target.apply(third).message


def test_reconciliation_lists_by_label_in_constant_calls(
    kube_server, namespace, kubelet
):
    """Missing, drifted and stray colours found with the same few list
    calls for 3 or 30 deployments."""
    target = make_target(kube_server, namespace=namespace)
    plans = [make_plan(model=f"m{i}") for i in range(30)]
    for plan in plans:
        target.apply(plan)
    target.switch_traffic({p.route: [(p.key, 100)] for p in plans})
    stray = make_plan()
    target.apply(stray)
    few = target.reconcile(plans[:3])
    many = target.reconcile(plans)
    assert sum(few.requests.values()) == sum(many.requests.values()) <= 3
    assert {o.drift for o in many.observed.values()} == {"in_sync"}
    assert stray.key in many.strays and not many.republish
    # deleted by hand, and scaled by hand
    kube_server._call(
        "DELETE",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.colour_name(plans[0])}",
    )
    kube_server.json(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{manifests.colour_name(plans[1])}/scale?fieldManager=kubectl",
        {"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
    )
    kube_server._call(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/services/{manifests.service_name(plans[2].route)}",
    )
    found = target.reconcile(plans)
    # Odoo wants more replicas than were applied (a scale not yet sent)
    wanted = target.reconcile([dataclasses.replace(plans[3], replicas=2)])
    assert wanted.observed[plans[3].key].detail == (
        "applied for 1 replicas where 2 are wanted"
    )
    assert found.observed[plans[0].key].drift == "missing"
    assert found.observed[plans[1].key].drift == "drifted"
    assert found.observed[plans[1].key].detail == "5 replicas where 1 were applied"
    assert found.republish


def test_two_targets_sharing_a_namespace_keep_apart(kube_server, namespace):
    """Two Odoos (or two targets) deploying the same deployment number and
    route into one namespace: each its own objects, gateway and Service,
    and neither takes the other's for a stray."""
    first = make_target(kube_server, namespace=namespace, owner="0123456789abcdef")
    second = make_target(kube_server, namespace=namespace, owner="fedcba9876543210")
    plan = make_plan(key="d7")
    for target in (first, second):
        target.apply(plan)
        target.switch_traffic({plan.route: [(plan.key, 100)]})
        target.publish_key_table({plan.route: ({"a" * 64: None}, set())})
    names = {first.object_name(plan), second.object_name(plan)}
    assert names == {"mlops-d7-01234567", "mlops-d7-fedcba98"}
    listed = kube_server.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments"
    ).json()["items"]
    assert names | {first.gateway_name(), second.gateway_name()} <= {
        item["metadata"]["name"] for item in listed
    }
    services = {
        item["metadata"]["name"]
        for item in kube_server.get(f"/api/v1/namespaces/{namespace}/services").json()[
            "items"
        ]
    }
    assert {first.service_name(plan.route), second.service_name(plan.route)} <= services
    for target in (first, second):
        found = target.reconcile([plan])
        assert found.observed[plan.key].drift == "in_sync"
        assert not found.strays
    # each gateway sends the route to its own Service
    config = kube_server.get(
        f"/api/v1/namespaces/{namespace}/configmaps/{second.gateway_name()}"
    ).json()["data"]["haproxy.cfg"]
    assert f"{second.service_name(plan.route)}.{namespace}.svc" in config


def test_undeploy_leaves_nothing_on_the_cluster(kube_server, namespace, kubelet):
    target = make_target(kube_server, namespace=namespace, max_replicas=3)
    plan = make_plan(replicas=2)
    target.apply(plan)
    kubelet.run(namespace, f"{manifests.COLOUR_LABEL}={plan.key}", expect=2)
    target.delete(plan)

    def left():
        kubelet.let_go(namespace)
        chosen = {"labelSelector": f"{manifests.COLOUR_LABEL}={plan.key}"}
        paths = [
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            f"/apis/apps/v1/namespaces/{namespace}/replicasets",
            f"/api/v1/namespaces/{namespace}/pods",
            f"/api/v1/namespaces/{namespace}/secrets",
            f"/apis/autoscaling/v2beta2/namespaces/{namespace}/horizontalpodautoscalers",
            f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets",
        ]
        return [
            item["metadata"]["name"]
            for path in paths
            for item in kube_server.get(path, params=chosen).json()["items"]
        ]

    assert _until(left, lambda names: not names, timeout=30) == []


def test_an_unreachable_server_is_transient(kube_server):
    target = KubernetesTarget.build(
        TargetContext("/nonexistent"), options(None, timeout_seconds=2), {"token": "x"}
    )
    with pytest.raises(TargetUnavailable, match="cannot be reached"):
        target.apply(make_plan())
    with pytest.raises(TargetUnavailable):
        target.reconcile([make_plan()])


def test_a_modelcar_is_built_pushed_and_served_by_digest(
    kube_server, namespace, oci_registry, tmp_path
):
    """model_source image: build_image writes the model layer (the
    artifact's SHA-256 checked), push_image pushes it on the base and
    returns the pinned reference, which the init container then runs."""
    target = KubernetesTarget.build(
        TargetContext(str(tmp_path), owner="modelcar"),
        options(
            kube_server,
            namespace=namespace,
            model_source="image",
            registry=f"{oci_registry.host}/mlops",
            base_image=oci_registry.base,
            registry_insecure=True,
        ),
        {
            "token": kube_server.admin_token,
            "registry_username": oci_registry.username,
            "registry_password": oci_registry.password,
        },
    )
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx, but bytes to carry")
    plan = make_plan(artifact_sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    with pytest.raises(StageNotRun):
        target.fetch_artifact(plan, None)
    log = target.build_image(plan, lambda: contextlib.nullcontext(str(model)))
    assert "/models/mlp/1/model.onnx" in log
    build = tmp_path / "images" / plan.key
    assert (build / "layer.json").exists()
    image, log = target.push_image(plan)
    assert not build.exists()  # pushed: the build's copy is gone
    assert image.startswith(f"{oci_registry.host}/mlops/mlp@sha256:")
    assert "uploaded" in log and "mounted" in log
    served = dataclasses.replace(plan, image=image)
    target.apply(served)
    pod = kube_server.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{target.object_name(plan)}"
    ).json()["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == image
    # the kubelet pulls it with the registry's credentials, the colour's own
    (pull,) = pod["imagePullSecrets"]
    secret = kube_server.get(
        f"/api/v1/namespaces/{namespace}/secrets/{pull['name']}"
    ).json()
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert auths[oci_registry.host]["username"] == oci_registry.username
    # or a Secret the namespace already holds, by name
    named = dataclasses.replace(target.options, image_pull_secret="team-registry")
    objects = manifests.colour_objects(served, named, {}, {}, target.pull_credentials)
    assert [o["kind"] for o in objects] == ["Deployment"]
    assert objects[0]["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "team-registry"}
    ]
    # a tampered artifact is not built
    bad = dataclasses.replace(plan, artifact_sha256="0" * 64)
    with pytest.raises(TargetFailed, match="SHA-256"):
        target.build_image(bad, lambda: contextlib.nullcontext(str(model)))
    # a wrong registry password: the push stage fails with the registry's answer
    target.build_image(plan, lambda: contextlib.nullcontext(str(model)))
    refused = KubernetesTarget.build(
        TargetContext(str(tmp_path), owner="modelcar"),
        target.options,
        {"registry_username": oci_registry.username, "registry_password": "nope"},
    )
    with pytest.raises(TargetFailed, match="UNAUTHORIZED"):
        refused.push_image(plan)
    # verify_signatures: this image was pushed unsigned, so apply refuses it
    # before anything reaches the cluster
    _private, public = _keys()
    strict = KubernetesTarget.build(
        TargetContext(str(tmp_path), owner="modelcar"),
        dataclasses.replace(target.options, verify_signatures=True),
        {
            "token": kube_server.admin_token,
            "registry_username": oci_registry.username,
            "registry_password": oci_registry.password,
            "signing_public_key": public,
        },
    )
    unsigned = dataclasses.replace(served, key="d7001")
    with pytest.raises(TargetFailed, match="is not signed"):
        strict.apply(unsigned)
    assert (
        kube_server.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/"
            f"{target.object_name(unsigned)}"
        ).status_code
        == 404
    )


def test_kserve_mode_reads_the_inference_service_status(kube_server, namespace):
    """KServe's controller played: conditions, then lastFailureInfo."""
    target = make_target(kube_server, namespace=namespace, mode="kserve")
    plan = make_plan(replicas=1)
    _until(lambda: _try_apply(target, plan), lambda ok: ok, timeout=20)
    path = (
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/"
        f"inferenceservices/{manifests.colour_name(plan)}"
    )
    assert not target.verify(plan).ready

    def status(body):
        kube_server.json(
            "PATCH",
            f"{path}/status",
            {"status": body},
            content_type="application/merge-patch+json",
        )

    status({"conditions": [{"type": "Ready", "status": "True"}]})
    assert target.verify(plan).ready
    status(
        {
            "conditions": [{"type": "Ready", "status": "False"}],
            "modelStatus": {
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "bad onnx"}
            },
        }
    )
    failed = target.verify(plan)
    assert failed.failed and "ModelLoadFailed: bad onnx" in failed.message
    # the route reaches the predictor's port; S3 keys through its account
    target.switch_traffic({plan.route: [(plan.key, 100)]})
    service = kube_server.get(
        f"/api/v1/namespaces/{namespace}/services/{target.service_name(plan.route)}"
    ).json()
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    account = f"/api/v1/namespaces/{namespace}/serviceaccounts/"
    assert kube_server.get(account + target.object_name(plan)).ok
    target.delete(plan)
    # foreground: going (a deletion mark) until the garbage collector ends it
    gone = _until(
        lambda: kube_server.get(account + target.object_name(plan)),
        lambda a: a.status_code == 404 or a.json()["metadata"].get("deletionTimestamp"),
        30,
    )
    assert gone.status_code == 404 or gone.json()["metadata"]["deletionTimestamp"]
    # foreground: gone once the garbage collector has seen it has no dependents
    gone = _until(lambda: kube_server.get(path).status_code, lambda c: c == 404, 60)
    assert gone == 404


def _try_apply(target, plan):
    # a CRD takes a moment to be served
    try:
        target.apply(plan)
    except TargetFailed as error:
        if "404" in str(error) or "not found" in str(error).lower():
            return False
        raise
    return True


def _until(read, done, timeout=20):
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def _company_plan(company, model="shared", **values):
    plan = make_plan(model=model, route=f"c{company}-{model}-production", **values)
    return dataclasses.replace(plan, labels={**plan.labels, "company": str(company)})


def test_a_namespace_per_company(kube_server, kubelet):
    """Two companies' deployments of a model with the same name: each in its
    company's namespace, made by the target with the policy letting the
    gateway (in the target's namespace) reach it; the gateway names each
    route's Service in its namespace; reconciliation still lists once per
    kind; undeploying and strays find the right namespace."""
    base = f"pc{next(_numbers)}"
    kube_server.create_namespace(base)
    owner = hashlib.sha256(base.encode()).hexdigest()[:16]
    target = make_target(kube_server, namespace=base, owner=owner,
                         namespace_per_company=True)  # fmt: skip
    first, second = _company_plan(1), _company_plan(2)
    for plan in (first, second):
        assert f"in {base}-c{plan.labels['company']}" in target.apply(plan).message
    target.switch_traffic({p.route: [(p.key, 100)] for p in (first, second)})
    for plan in (first, second):
        namespace = f"{base}-c{plan.labels['company']}"
        made = kube_server.get(f"/api/v1/namespaces/{namespace}").json()
        assert made["metadata"]["labels"][manifests.OWNER_LABEL] == owner
        live = kube_server.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/"
            f"{target.object_name(plan)}"
        )
        assert live.status_code == 200, live.text
        service = kube_server.get(
            f"/api/v1/namespaces/{namespace}/services/{target.service_name(plan.route)}"
        ).json()
        assert service["spec"]["selector"][manifests.COLOUR_LABEL] == plan.key
        policy = kube_server.get(
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/"
            f"{target.gateway_name()}"
        ).json()
        (source,) = policy["spec"]["ingress"][0]["from"]
        assert source["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": base
        }
        # the pods of the company's namespace run and verify
        kubelet.run(namespace, f"{manifests.COLOUR_LABEL}={plan.key}", expect=1)
        assert _until(lambda plan=plan: target.verify(plan), lambda s: s.ready).ready
    # nothing of theirs in the target's own namespace
    here = kube_server.get(f"/apis/apps/v1/namespaces/{base}/deployments").json()
    assert here["items"] == []
    target.publish_key_table(
        {p.route: ({"a" * 64: None}, set()) for p in (first, second)}
    )
    config = kube_server.get(
        f"/api/v1/namespaces/{base}/configmaps/{target.gateway_name()}"
    ).json()["data"]["haproxy.cfg"]
    for plan in (first, second):
        namespace = f"{base}-c{plan.labels['company']}"
        upstream = f"{target.service_name(plan.route)}.{namespace}.svc.cluster.local"
        assert upstream in config
    # one list per kind for both companies; a stray in a company found
    stray = _company_plan(2, model="gone")
    target.apply(stray)
    found = target.reconcile([first, second])
    assert {o.drift for o in found.observed.values()} == {"in_sync"}
    assert stray.key in found.strays and not found.republish
    assert found.requests["list Deployment"] == 1
    target.remove_stray(stray.key)
    target.delete(first)
    deployments = [
        (d["metadata"]["namespace"], d["metadata"]["labels"][manifests.COLOUR_LABEL])
        for d in kube_server.get(
            "/apis/apps/v1/deployments",
            params={
                "labelSelector": f"{manifests.OWNER_LABEL}={owner},"
                f"{manifests.COLOUR_LABEL}"
            },
        ).json()["items"]
        if not d["metadata"].get("deletionTimestamp")
    ]
    assert deployments == [(f"{base}-c2", second.key)]


def test_test_connection_with_a_namespace_per_company_asks_cluster_wide(
    kube_server, namespace
):
    limited = make_target(
        kube_server, kube_server.limited_token, namespace=namespace,
        namespace_per_company=True,
    )  # fmt: skip
    with pytest.raises(TargetFailed) as refused:
        limited.check()
    assert "create namespaces (cluster-wide)" in str(refused.value)
    assert "list deployments.apps (cluster-wide)" in str(refused.value)
    info = make_target(kube_server, namespace=namespace,
                       namespace_per_company=True).check()  # fmt: skip
    assert info["namespace"] == f"{namespace} (and one per company)"
    with pytest.raises(ValueError, match="50 characters"):
        options(namespace="n" * 51, namespace_per_company=True)


def _route_isvc(kube, namespace, target, route):
    answer = kube.get(
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/"
        f"{target.service_name(route)}"
    )
    return answer.json() if answer.ok else None


def test_kserve_serverless_canary_is_kserves_own_split(kube_server, namespace):
    """kserve mode, Serverless: a route is one InferenceService whose
    revisions are its colours. A canary comes up without calls, takes its
    share as ``canaryTrafficPercent``, is promoted by removing it (KServe
    rolls it out) or rolled back by 0; an idle colour switched back to is
    its revision again; reconciliation reads the route's InferenceService.
    KServe's controller is played (tools/kubeserver.py)."""
    controller = KServeController(kube_server)
    prometheus = "http://127.0.0.1:1"
    target = make_target(
        kube_server, namespace=namespace, mode="kserve",
        kserve_deployment_mode="Serverless", prometheus_url=prometheus,
    )  # fmt: skip
    caps = KubernetesTarget.capabilities(target.options)
    assert caps.traffic_step == 1 and caps.canary
    stable = make_plan(model="kn", version="1.0.0")
    canary = make_plan(
        model="kn", version="2.0.0", strategy="canary",
        artifact_uri="s3://models/kn/2/model.onnx",
    )  # fmt: skip
    route = stable.route

    def isvc():
        return _route_isvc(kube_server, namespace, target, route)

    def settled(plan):
        controller.play(namespace)
        return _until(lambda: target.verify(plan), lambda s: s.ready or s.failed)

    # the route's first colour: all its calls, no split
    rendered = target.render(stable)
    assert [o["kind"] for o in rendered] == [
        "Secret", "ServiceAccount", "ConfigMap", "InferenceService",
    ]  # fmt: skip
    crd = yaml.safe_load(CRD.read_text())
    jsonschema.validate(
        rendered[-1], crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    )
    target.apply(stable)
    live = isvc()
    assert live["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "Serverless"
    )
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert not target.verify(stable).ready  # KServe has not answered yet
    assert (
        settled(stable).message
        == f"revision {target.service_name(route)}-predictor-00001 ready"
    )
    target.switch_traffic({route: [(stable.key, 100)]})

    # the canary: a new revision with no calls, then its share
    target.apply(canary)
    predictor = isvc()["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0
    assert predictor["model"]["storageUri"] == "s3://models/kn/2/model.onnx"
    assert settled(canary).ready
    assert target.verify(stable).ready
    target.switch_traffic({route: [(stable.key, 90), (canary.key, 10)]})
    assert isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 10
    controller.play(namespace)
    traffic = isvc()["status"]["components"]["predictor"]["traffic"]
    assert sorted(t["percent"] for t in traffic) == [10, 90]
    # the gates read the canary's revision's pods from Prometheus
    assert target.revisions.revision(target._at(canary), target._owned(canary)) == (
        f"{target.service_name(route)}-predictor-00002"
    )

    # promoted: canaryTrafficPercent removed, KServe rolls it out
    target.switch_traffic({route: [(canary.key, 100)]})
    live = isvc()
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["metadata"]["annotations"][revisions.STABLE] == canary.key
    controller.play(namespace)
    assert isvc()["status"]["components"]["predictor"]["latestRolledoutRevision"] == (
        f"{target.service_name(route)}-predictor-00002"
    )
    # the old colour goes: the route stays, its predictor ConfigMap goes
    target.delete(stable)
    assert isvc() is not None
    assert target.reconcile([canary]).observed[canary.key].drift == "in_sync"

    # a third colour aborted: 0 hands every call back, then it goes
    third = make_plan(model="kn", version="3.0.0", strategy="canary")
    target.apply(third)
    assert settled(third).ready
    target.switch_traffic({route: [(canary.key, 80), (third.key, 20)]})
    target.switch_traffic({route: [(canary.key, 100)]})
    assert isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 0
    target.delete(third)
    live = isvc()
    assert live["metadata"]["annotations"][revisions.LATEST] == ""
    assert live["metadata"]["annotations"][revisions.STABLE] == canary.key
    assert settled(canary).ready

    # blue-green: a fourth takes it all, then the route switches back to
    # the idle colour, which is its revision again
    fourth = make_plan(model="kn", version="4.0.0", strategy="blue_green")
    target.apply(fourth)
    assert settled(fourth).ready
    target.switch_traffic({route: [(fourth.key, 100)]})
    assert target.verify(canary).message == (
        "idle: no revision until it takes the route"
    )
    target.switch_traffic({route: [(canary.key, 100)]})
    live = isvc()
    assert live["metadata"]["annotations"][revisions.LATEST] == canary.key
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == (
        "s3://models/kn/2/model.onnx"
    )
    # three colours on one route: refused, KServe splits between two
    with pytest.raises(TargetFailed, match="two revisions"):
        target.switch_traffic(
            {route: [(canary.key, 50), (fourth.key, 25), (third.key, 25)]}
        )

    # reconciliation: the route's InferenceService deleted by hand
    found = target.reconcile([canary, fourth])
    assert {o.drift for o in found.observed.values()} == {"in_sync"}
    kube_server._call(
        "DELETE",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/"
        f"{target.service_name(route)}",
    )
    found = target.reconcile([canary, fourth])
    assert found.observed[canary.key].drift == "missing"
    assert "is gone" in found.observed[canary.key].detail
    # Re-apply brings it back with the colour's predictor
    target.reapply(canary)
    assert isvc()["metadata"]["annotations"][revisions.LATEST] == canary.key
    # the last colours go, and the route's InferenceService with them
    target.delete(fourth)
    target.delete(canary)
    assert _until(isvc, lambda found: found is None) is None
