"""The contract every target kind passes (adapters/targets.py): the same
tests on the local runtime (real model servers behind a real HAProxy) and
on a real Kubernetes API server (the tests playing the kubelet). A new kind
adds its harness here."""

import contextlib
import hashlib
import itertools
import json
import time

import pytest
import requests
from addon_artifacts import artifacts
from kubeserver import Kubelet

from odoo.addons.creativeflow_mlops.adapters import k8s_manifests as manifests
from odoo.addons.creativeflow_mlops.adapters.processes import free_port
from odoo.addons.creativeflow_mlops.adapters.target_kubernetes import KubernetesTarget
from odoo.addons.creativeflow_mlops.adapters.target_local import LocalTarget
from odoo.addons.creativeflow_mlops.adapters.targets import (
    ServePlan,
    StageNotRun,
    TargetContext,
    kinds,
)

_numbers = itertools.count(1)


class LocalHarness:
    def __init__(self, tmp_path, model_file):
        self.model_file = str(model_file)
        self.target = LocalTarget(tmp_path / "local", free_port(), watchdog=False)
        self.versions = {}  # version: colour

    def serving(self, route):
        """The colours a call to the route reaches: asked of the router with
        a key of the route, answered by the model server (its version
        header)."""
        token = "ik_contract"
        self.target.publish_key_table(
            {route: ({hashlib.sha256(token.encode()).hexdigest(): None}, set())}
        )
        model = route.split("-")[1]
        try:
            answer = requests.get(
                f"{self.target.router.base_url}/m/{route}/v2/models/{model}/ready",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
        except requests.ConnectionError:
            return set()  # no route yet: no router either
        if answer.status_code != 200:
            return set()
        return {self.versions[answer.headers["X-MLOps-Version"]]}

    def artifact_uri(self):
        return f"file://{self.model_file}"

    def opener(self):
        return contextlib.nullcontext(self.model_file)

    def come_up(self, plan):
        """The local target's apply waits for the server itself."""

    def settle(self):
        """Stopped processes are gone when ``delete`` returns."""

    def close(self):
        for key in list(self.target.runtime.running()):
            self.target.runtime.stop(key, timeout=5)
        self.target.router.stop()


class KubernetesHarness:
    def __init__(self, kube, namespace):
        kube.create_namespace(namespace)
        self.namespace = namespace
        self.kubelet = Kubelet(kube, node=f"node-{namespace}").register()
        options = KubernetesTarget.parse_options(
            {
                "namespace": namespace,
                "server_url": kube.url,
                "ca_file": kube.ca_file,
                "public_url": "https://models.example.com",
            }
        )
        self.target = KubernetesTarget.build(
            TargetContext("/nonexistent", owner="contract"),
            options,
            {"token": kube.admin_token},
        )

        self.kube = kube
        self.versions = {}

    def serving(self, route):
        """The colours the route's Service selects on the cluster."""
        answer = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/services/"
            f"{self.target.service_name(route)}"
        )
        if answer.status_code != 200:
            return set()
        selector = answer.json()["spec"]["selector"]
        pods = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/pods",
            params={"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())},
        ).json()["items"]
        return {p["metadata"]["labels"][manifests.COLOUR_LABEL] for p in pods}

    def artifact_uri(self):
        return "s3://models/mlp/model.onnx"

    def opener(self):
        raise AssertionError("the S3 source needs no local copy")

    def come_up(self, plan):
        self.kubelet.run(
            self.namespace, f"{manifests.COLOUR_LABEL}={plan.key}", expect=1
        )

    def settle(self):
        self.kubelet.let_go(self.namespace)

    def close(self):
        """The namespace goes with the session's cluster."""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mlp.onnx"
    path.write_bytes(artifacts.onnx_mlp())
    return path


@pytest.fixture(params=["local", "kubernetes"])
def harness(request, tmp_path, model_file):
    if request.param == "local":
        made = LocalHarness(tmp_path, model_file)
    else:
        kube = request.getfixturevalue("kube_server")
        made = KubernetesHarness(kube, f"contract{next(_numbers)}")
    yield made
    made.close()


def _plan(harness, model="mlp"):
    number = next(_numbers)
    key, version = f"d{number}", f"1.0.{number}"
    harness.versions[version] = key
    return ServePlan(
        key=key,
        route=f"c1-{model}-staging",
        model_name=model,
        version=version,
        artifact_uri=harness.artifact_uri(),
        artifact_sha256="0" * 64,
        labels={"model": model, "version": version, "deployment": key},
    )


def _up(harness, plan):
    """The stages before traffic, as the pipeline runs them; then ready."""
    target = harness.target
    for stage in (target.fetch_artifact, target.build_image):
        with contextlib.suppress(StageNotRun):
            assert isinstance(stage(plan, harness.opener), str)
    with contextlib.suppress(StageNotRun):
        image, log = target.push_image(plan)
        assert image and isinstance(log, str)
    status = target.apply(plan)
    assert isinstance(status.message, str) and status.message
    harness.come_up(plan)
    deadline = time.monotonic() + 30
    status = target.verify(plan)
    while not status.ready and time.monotonic() < deadline:
        assert not status.failed, status.message
        time.sleep(0.2)
        status = target.verify(plan)
    assert status.ready, status.message


# the fewest options each kind takes
MINIMAL_OPTIONS = {
    "kubernetes": {"server_url": "https://k", "public_url": "https://m"},
    "gitops": {
        "repository": "https://git.example.com/ops.git",
        "public_url": "https://m",
        "cluster": {
            "registry": "r.example.com/mlops",
            "base_image": "r.example.com/b:1",
        },
    },
}


def test_every_kind_declares_consistent_capabilities():
    for kind, cls in kinds().items():
        assert cls.kind == kind and cls.label
        options = cls.parse_options(MINIMAL_OPTIONS.get(kind, {}))
        caps = cls.capabilities(options)
        assert caps.formats, kind
        assert caps.max_replicas >= 1
        assert not set(caps.resource_refusals) & caps.resources
        assert caps.resources <= {"cpu", "memory", "gpu"}
        if caps.canary:
            assert caps.analysis and 0 < caps.traffic_step < 100


def test_a_colour_comes_up_and_takes_its_route(harness):
    plan = _plan(harness)
    json.dumps(harness.target.render(plan), default=str)
    assert not harness.target.verify(plan).ready
    _up(harness, plan)
    assert harness.serving(plan.route) == set()
    harness.target.switch_traffic({plan.route: [(plan.key, 100)]})
    assert harness.serving(plan.route) == {plan.key}
    assert harness.target.route_url(plan.route).endswith(f"/m/{plan.route}")
    found = harness.target.reconcile([plan])
    assert found.observed[plan.key].drift == "in_sync"
    assert plan.key not in found.strays
    assert isinstance(harness.target.log_tail(plan), str)


def test_reconciliation_finds_what_is_missing_and_what_nobody_wants(harness):
    kept, gone = _plan(harness, "kept"), _plan(harness, "gone")
    for plan in (kept, gone):
        _up(harness, plan)
    harness.target.switch_traffic({kept.route: [(kept.key, 100)]})
    harness.target.delete(gone)
    harness.settle()
    found = harness.target.reconcile([kept, gone])
    assert found.observed[gone.key].drift == "missing"
    assert found.observed[kept.key].drift == "in_sync"
    # what runs that no plan names is a stray, with when it started
    strays = harness.target.reconcile([]).strays
    assert kept.key in strays and strays[kept.key] > 0
    harness.target.remove_stray(kept.key)
    harness.settle()
    assert harness.target.reconcile([kept]).observed[kept.key].drift == "missing"


def test_blue_green_moves_the_route_and_keeps_the_idle_colour(harness):
    blue, green = _plan(harness), _plan(harness)
    for plan in (blue, green):
        _up(harness, plan)
    harness.target.switch_traffic({blue.route: [(blue.key, 100)]})
    assert harness.serving(blue.route) == {blue.key}
    harness.target.switch_traffic({blue.route: [(green.key, 100)]})
    assert harness.serving(blue.route) == {green.key}
    found = harness.target.reconcile([blue, green])
    assert {found.observed[p.key].drift for p in (blue, green)} == {"in_sync"}
    assert harness.target.verify(blue).ready
