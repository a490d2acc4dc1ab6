"""The deployment lifecycle's model-based test on a cluster target: the
program of ``test_deployment_model`` (the same seeded actions from
concurrent callers, the same invariants after every step) deploying to a
real kube-apiserver, with the cluster's own faults among the actions:

- a colour's Deployment deleted by hand, or scaled by hand (``kubectl``);
- *Re-apply* of a deployment (JSON-RPC, as the form's button), whatever its
  state or drift;
- the canary's pods failing for a while (the gates read the pods' Triton
  counters through the API server; failures make them roll back).

A thread plays the kubelet (pods bound and reported ready, pods deleted
go) and Triton's counters. After settling, what the cluster holds must be
what the database says: every colour that runs has its Deployment, or is
flagged ``missing`` by reconciliation; nothing ended keeps one; each
route's Service selects the colour that takes it whole, or every colour of
a split, scaled in the canary's ratio; the registry announces what serves.

Replay a seed with ``MLOPS_CLUSTER_SEED=<seed>``; a seed that finds a
defect joins ``test_kept_cluster_seeds``.
"""

import os
import random
import threading
import time
import uuid

import pytest
import requests
import test_deployment_model as model_test
from kubeserver import Kubelet, TritonMetrics, host_address

GROUP = "mlops.creativeflow.io"
COLOUR = f"{GROUP}/colour"
ROUTE = f"{GROUP}/route"
KEEP_RUNNING = ("active", "inactive_bluegreen", "rolling_out_canary")
ENDED = ("deleted", "failed", "rolled_back")
# the target whose token the system stack gives Odoo (tests/system/conftest.py)
CODE = "cluster"
STEPS = int(os.environ.get("MLOPS_CLUSTER_STEPS", "40"))


@pytest.fixture(scope="module")
def cluster_world(stack, invoke, kube_server):
    world = model_test.configure(stack, invoke)
    namespace = f"mbt-{uuid.uuid4().hex[:6]}"
    kube_server.create_namespace(namespace)
    address = host_address()
    metrics = TritonMetrics(address)
    metrics.p95_us = 20_000
    kubelet = Kubelet(kube_server, node=namespace, pod_ip=address).register()
    stack.admin.call(
        "mlops.deployment.target",
        "create",
        {
            "name": "MBT cluster",
            "code": CODE,
            "kind": "kubernetes",
            "options": {
                "server_url": kube_server.url,
                "ca_file": kube_server.ca_file,
                "namespace": namespace,
                "public_url": "https://models.example.com",
                "canary_replicas": 4,
                "gpu_capacity": "off",
            },
        },
    )
    player = Player(kubelet, metrics, namespace)
    player.start()
    yield world, kube_server, namespace, player
    player.stop()
    metrics.close()


class Player(threading.Thread):
    """The kubelet and Triton's counters, played: every pass binds and
    readies new pods, lets deleted ones go, and counts calls (failing ones
    while ``degraded_until`` is ahead)."""

    def __init__(self, kubelet, metrics, namespace):
        super().__init__(daemon=True)
        self.kubelet, self.metrics, self.namespace = kubelet, metrics, namespace
        self.degraded_until = 0.0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.kubelet.run(self.namespace, pending_only=True)
                self.kubelet.let_go(self.namespace)
            except requests.RequestException:
                pass  # the next pass plays it
            self.metrics.success += 5
            if time.monotonic() < self.degraded_until:
                self.metrics.failure += 5
            self.halt.wait(0.3)

    def stop(self):
        self.halt.set()
        self.join(5)


class ClusterProgram(model_test.Program):
    KINDS = tuple(
        (kind, weight)
        for kind, weight in model_test.Program.KINDS
        if kind != "kill"  # a process of the machine: the cluster's faults instead
    ) + (
        ("delete_by_hand", 1),
        ("scale_by_hand", 1),
        ("reapply", 2),
        ("degrade", 1),
    )
    ON_DEPLOYMENT = (model_test.Program.ON_DEPLOYMENT - {"kill"}) | {
        "delete_by_hand",
        "scale_by_hand",
        "reapply",
    }
    DEPLOY = {"target": CODE}

    def __init__(self, world, seed):
        base, self.kube, self.namespace, self.player = world
        super().__init__(base, seed)
        self.name = f"mbtk-{seed}"
        # the colours seen serving when settled: the program deployed
        self.served = set()

    # -- the cluster's own actions ------------------------------------------

    def _workloads(self, **labels):
        selector = ",".join(f"{GROUP}/{k}={v}" for k, v in labels.items())
        items = self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
            params={"labelSelector": selector},
        ).json()["items"]
        return [i for i in items if not i["metadata"].get("deletionTimestamp")]

    def _by_hand(self, deployment_id, how):
        found = self._workloads(colour=f"d{deployment_id}")
        if not found:
            return "nothing there"
        path = (
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{found[0]['metadata']['name']}"
        )
        if how == "delete":
            answer = self.kube._call("DELETE", path)
        else:
            answer = self.kube._call(
                "PATCH",
                f"{path}/scale?fieldManager=kubectl",
                json={"spec": {"replicas": found[0]["spec"].get("replicas", 1) + 1}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        return str(answer.status_code)

    def extra_action(self, kind, deployment, deployments):
        rnd = self.random
        if kind in ("delete_by_hand", "scale_by_hand"):
            how = kind.removesuffix("_by_hand")
            return kind, deployment, lambda: self._by_hand(deployment, how)
        if kind == "reapply":
            # mostly one that drifted, sometimes any (refusals included)
            drifted = sorted(
                i
                for i, d in deployments.items()
                if d["drift"] in ("missing", "drifted")
            )
            chosen = (
                rnd.choice(drifted) if drifted and rnd.random() < 0.8 else (deployment)
            )
            return (
                kind,
                chosen,
                lambda: self._rpc("mlops.deployment", "action_reapply", [chosen]),
            )
        if kind == "degrade":
            seconds = rnd.choice([3, 6])

            def degrade():
                self.player.degraded_until = time.monotonic() + seconds
                return "degraded"

            return kind, seconds, degrade
        return super().extra_action(kind, deployment, deployments)

    # -- settled: the cluster holds what the database says --------------------

    def _call_endpoints(self):
        """The played counters count calls on their own."""

    def serving_disagrees(self, deployments):
        wrong = []
        versions, deployments, _runs, _ledger = self.snapshot()
        entries = self._entries()
        live = {
            w["metadata"]["labels"][COLOUR]: w for w in self._workloads(model=self.name)
        }
        for deployment_id, deployment in sorted(deployments.items()):
            colour = f"d{deployment_id}"
            if deployment["state"] in KEEP_RUNNING:
                if colour not in live and deployment["drift"] != "missing":
                    wrong.append(
                        f"{colour} {deployment['state']} has no Deployment and is "
                        f"not flagged missing (drift {deployment['drift']})"
                    )
            elif deployment["state"] in ENDED and colour in live:
                wrong.append(f"{colour} {deployment['state']} left its Deployment")
        for environment in ("staging", "production"):
            serving = {
                f"d{i}": d
                for i, d in deployments.items()
                if d["environment"] == environment and d["state"] in model_test.SERVING
            }
            entry = entries.get(environment)
            if bool(serving) != bool(entry):
                wrong.append(f"{environment}: serving {sorted(serving)}, entry {entry}")
                continue
            if not serving:
                continue
            self.served |= set(serving)
            announced = {t["version"] for t in entry["traffic"]}
            expected = {versions[d["version_id"]]["version"] for d in serving.values()}
            if announced != expected:
                wrong.append(f"{environment}: announced {announced}, serves {expected}")
            services = self.kube.get(
                f"/api/v1/namespaces/{self.namespace}/services",
                params={"labelSelector": f"{ROUTE}=c1-{self.name}-{environment}"},
            ).json()["items"]
            if len(services) != 1:
                wrong.append(f"{environment}: {len(services)} route Services")
                continue
            selector = services[0]["spec"]["selector"]
            if len(serving) == 1:
                if selector.get(COLOUR) not in serving:
                    wrong.append(
                        f"{environment}: the Service selects {selector.get(COLOUR)}, "
                        f"{sorted(serving)} serves"
                    )
                continue
            if COLOUR in selector:
                wrong.append(f"{environment}: a split selects {selector[COLOUR]} only")
            replicas = {
                colour: live[colour]["spec"].get("replicas", 0)
                for colour in serving
                # scaled by hand and flagged: Re-apply's to put back
                if colour in live and serving[colour]["drift"] != "drifted"
            }
            if len(replicas) == len(serving):
                # the split's ratio: the canary's share of the pods (precision
                # of 4 pods: 25 %), every serving colour keeping one at least
                total = sum(replicas.values())
                for colour, count in replicas.items():
                    share = serving[colour]["traffic"]
                    if count < 1 or abs(count / total * 100 - share) > 25:
                        wrong.append(
                            f"{environment}: {colour} has {count} of {total} pods "
                            f"for {share} %"
                        )
        return wrong


def _run(world, seed):
    program = ClusterProgram(world, seed)
    seen = model_test.run_program(program, STEPS)
    # the cluster served: the invariants held of something
    assert program.served, f"{program.name}: nothing ever served: {seen}"
    print(f"{program.name}: {len(program.served)} colours served")
    # the cluster's actions were exercised, not only refused
    assert any(
        kind in ("delete_by_hand", "scale_by_hand", "reapply")
        for (kind, _outcome) in seen
    ), seen


def test_a_new_cluster_seed(cluster_world):
    chosen = os.environ.get("MLOPS_CLUSTER_SEED")
    _run(
        cluster_world,
        int(chosen) if chosen else random.SystemRandom().randrange(10**8),
    )
