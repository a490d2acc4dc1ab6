# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A ``kubernetes`` target in Odoo, against a real kube-apiserver, etcd and
kube-controller-manager (tools/kubeserver.py), the test playing the kubelet:
approvals deploy through the same pipeline, ledger and registry as on the
local target; reconciliation records drift; undeploy leaves nothing."""

import io
import os
import time
import uuid
from pathlib import Path
from unittest.mock import patch

from odoo.exceptions import ValidationError

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.tests.common import trap_jobs

from ..adapters import k8s_manifests as manifests
from ..adapters import k8s_revisions as revisions
from ..exceptions import BackendUnavailable, InvalidInput
from ..lifecycle import PIPELINE_STAGES
from ..services import artifacts as artifact_service
from ..services import canary as canary_service
from ..services import serving
from . import artifacts
from .common import MlopsCase
from .common_storage import s3_backend

PUBLIC = "https://models.example.com"


class KubernetesCase(MlopsCase):
    """A kubernetes target on the session's control plane, a namespace of
    its own and a played kubelet."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import kubeserver  # noqa: PLC0415 - tools/ is on the path under bin/test

        cls.kube = kubeserver.shared()
        cls.namespace = f"odoo-{uuid.uuid4().hex[:8]}"
        cls.kube.create_namespace(cls.namespace)
        cls.kubelet = kubeserver.Kubelet(cls.kube, node=cls.namespace).register()
        cls._token = os.environ.get("MLOPS_TARGET_CLUSTER_TOKEN")
        os.environ["MLOPS_TARGET_CLUSTER_TOKEN"] = cls.kube.admin_token
        cls.target = cls.env["mlops.deployment.target"].create(
            {
                "name": "Cluster",
                "code": "cluster",
                "kind": "kubernetes",
                "options": {
                    "server_url": cls.kube.url,
                    "ca_file": cls.kube.ca_file,
                    "namespace": cls.namespace,
                    "public_url": PUBLIC,
                },
            }
        )

    @classmethod
    def tearDownClass(cls):
        if cls._token is None:
            os.environ.pop("MLOPS_TARGET_CLUSTER_TOKEN", None)
        else:
            os.environ["MLOPS_TARGET_CLUSTER_TOKEN"] = cls._token
        super().tearDownClass()

    def _validated(self, version="1.0.0"):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": "cluster-model", "version": version, "model_format": "onnx"},
                io.BytesIO(artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(record.state, "validated")
        return record

    def _run_pipeline(self, trap, pods=1):
        """The run's stages in order, each in a savepoint as a job runs in a
        transaction of its own; verify is asked again (a retry) until the
        played kubelet has made the pods Ready."""
        deployment = None
        order = [name for name, _label in PIPELINE_STAGES]
        stages = sorted(
            (j for j in trap.enqueued_jobs if j.method_name == "_run_stage"),
            key=lambda j: order.index(j.args[0]),
        )
        for job in stages:
            for _try in range(60):
                try:
                    with self.env.cr.savepoint():
                        job.perform()
                    break
                except RetryableJobError:
                    # not ready: the kubelet runs the pods, the controller
                    # reports them ready a moment later
                    deployment = job.recordset.deployment_id
                    self._play(deployment, pods)
                    time.sleep(0.1)
            else:
                self.fail(f"{job.method_name} never finished")
        trap.enqueued_jobs = []
        return deployment

    def _play(self, deployment, pods):
        """The cluster's part while a run waits: the kubelet's."""
        self.kubelet.run(
            self.namespace, f"{manifests.COLOUR_LABEL}=d{deployment.id}", expect=pods
        )

    def _before_apply(self, trap, version, reason):
        """Approve ``version`` for staging on the cluster and run its stages
        before ``apply``; {stage: its job}."""
        version.with_user(self.approver).action_approve_staging(
            reason=reason, target="cluster"
        )
        jobs = {
            j.args[0]: j for j in trap.enqueued_jobs if j.method_name == "_run_stage"
        }
        for name in ("fetch_artifact", "build_image", "push_image"):
            jobs[name].perform()
        return jobs

    def _name(self, deployment):
        """The name of ``deployment``'s objects on the cluster (with its
        target's owner)."""
        return self.target._get_client().object_name(serving.plan(deployment))

    def _service(self, route):
        return self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/services/"
            f"{self.target._get_client().service_name(route)}"
        )


class TestKubernetesTarget(KubernetesCase):
    def test_the_kind_checks_its_options_and_declares_what_it_can(self):
        Target = self.env["mlops.deployment.target"]
        self.assertIn(
            "kubernetes", dict(Target._fields["kind"]._description_selection(self.env))
        )
        with self.assertRaisesRegex(ValidationError, "mode: plain or kserve"):
            Target.create(
                {
                    "name": "x",
                    "code": "bad_mode",
                    "kind": "kubernetes",
                    "options": {
                        "server_url": "https://k",
                        "public_url": PUBLIC,
                        "mode": "x",
                    },
                }
            )
        with self.assertRaisesRegex(ValidationError, "replicas: not an option"):
            Target.create(
                {
                    "name": "x",
                    "code": "typo",
                    "kind": "local",
                    "options": {"replicas": 2},
                }
            )
        # plain mode: a canary by replica ratio, its gates reading the pods
        # through the API server; kserve mode: no split of its own here
        self.assertIn("Canary: yes", self.target.capabilities_text)
        self.assertIn("in steps of 10 %", self.target.capabilities_text)
        self.assertIn("gpu", self.target.capabilities_text)
        kserve = Target.create(
            {
                "name": "KServe",
                "code": "kserve_caps",
                "kind": "kubernetes",
                "options": {**self.target.options, "mode": "kserve"},
            }
        )
        self.assertIn("Canary: no", kserve.capabilities_text)
        local = self.env.ref("creativeflow_mlops.deployment_target_local")
        self.assertIn("Canary: yes", local.capabilities_text)

    def test_test_connection_shows_the_server(self):
        answer = self.target.with_user(self.manager).action_test_connection()
        self.assertEqual(
            answer["params"]["type"], "success", answer["params"]["message"]
        )
        self.assertIn("server: v1.20.2", answer["params"]["message"])
        self.assertIn("verbs allowed", answer["params"]["message"])

    def test_what_the_cluster_cannot_do_is_refused_at_approval(self):
        version = self._validated("0.9.0")
        kserve = self.env["mlops.deployment.target"].create(
            {
                "name": "KServe",
                "code": "kserve_refuses",
                "kind": "kubernetes",
                "options": {**self.target.options, "mode": "kserve"},
            }
        )
        with self.assertRaisesRegex(InvalidInput, "canary needs a target"):
            version._check_can_deploy("production", "canary", kserve)
        local = self.env.ref("creativeflow_mlops.deployment_target_local")
        with self.assertRaisesRegex(InvalidInput, "at most 1 replicas"):
            version._check_can_deploy("staging", "rolling", local, replicas=3)
        with self.assertRaisesRegex(InvalidInput, "runs models on the CPU"):
            version._check_can_deploy("staging", "rolling", local, {"gpu": 1})
        # the cluster gives GPUs
        version._check_can_deploy("staging", "rolling", self.target, {"gpu": 1}, 3)

    def test_an_artifact_the_cluster_cannot_read_fails_the_run(self):
        """Stored in Odoo's local store: the S3 init container has nothing
        to read; the run fails at apply with why, the version returns."""
        version = self._validated("0.8.0")
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(
                reason="try", target="cluster"
            )
            self._run_pipeline(trap)
        deployment = version.deployment_ids
        self.assertEqual(deployment.state, "failed")
        self.assertIn("reads artifacts from S3", deployment.message)
        self.assertEqual(version.state, "validated")

    def test_approval_deploys_on_the_cluster_and_reconciliation_keeps_watch(self):
        with s3_backend(self.env, code="k8s_s3", default=True):
            version = self._validated()
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(
                reason="to the cluster", target="cluster", replicas=2,
                resources={"gpu": 1, "cpu": "2", "memory": "8Gi"},
            )  # fmt: skip
            deployment = self._run_pipeline(trap, pods=2)
        self.assertEqual(deployment.state, "active", deployment.message)
        self.assertEqual(version.state, "staging")
        stages = {s.name: s for s in deployment.stage_ids}
        self.assertEqual(stages["fetch_artifact"].state, "skipped")
        self.assertEqual(stages["build_image"].state, "skipped")
        self.assertIn("Deployment mlops-", stages["apply"].log)
        self.assertIn("2/2 ready", stages["verify"].log)
        route = serving.plan(deployment).route
        self.assertEqual(
            deployment.endpoint_url,
            f"{PUBLIC}/m/{route}/v2/models/{version.model_id.slug}/infer",
        )
        service = self._service(route).json()
        self.assertEqual(
            service["spec"]["selector"][manifests.COLOUR_LABEL], f"d{deployment.id}"
        )
        pod = self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{self._name(deployment)}"
        ).json()["spec"]["template"]["spec"]
        self.assertEqual(
            pod["containers"][0]["resources"]["limits"],
            {"nvidia.com/gpu": "1", "cpu": "2", "memory": "8Gi"},
        )
        # the ledger says so, as on any target
        ledger = self.env["mlops.promotion"]._current(version.model_id, "staging")
        self.assertEqual(ledger.deployment_id, deployment)
        # the invoke-key gateway in front of the cluster serves the route
        gateway = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/configmaps/"
            f"{self.target._get_client().gateway_name()}"
        ).json()
        self.assertIn(route, gateway["data"]["routes.map"])
        self.assertIn(
            f"{self.target._get_client().service_name(route)}"
            f".{self.namespace}.svc.cluster.local:80",
            gateway["data"]["haproxy.cfg"],
        )

        # reconciliation: in sync, then deleted by hand
        serving.supervise(self.env)
        self.assertEqual(deployment.drift, "in_sync")
        self.kube._call(
            "DELETE",
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{self._name(deployment)}",
        )
        done = serving.supervise(self.env)
        self.assertIn(f"d{deployment.id}", done["drifted"])
        self.assertEqual(deployment.drift, "missing")
        self.assertIn("is gone", deployment.drift_detail)
        self.assertIn("is missing on Cluster", deployment.message_ids[0].body)
        drifted = self.env["mlops.event"].search(
            [("type", "=", "deployment.drifted"), ("resource_id", "=", deployment.id)]
        )
        self.assertEqual(len(drifted), 1)
        self.assertEqual(drifted.data["drift"], "missing")
        self.assertEqual(drifted.state, "active")
        self.assertTrue(
            version.activity_ids.filtered(
                lambda a: (
                    a.user_id == deployment.deployed_by_id
                    and "missing on Cluster" in a.summary
                )
            )
        )
        # a second pass does not say it again
        messages = len(deployment.message_ids)
        serving.supervise(self.env)
        self.assertEqual(len(deployment.message_ids), messages)
        # Re-apply brings it back
        deployment.with_user(self.approver).action_reapply()
        serving.supervise(self.env)
        self.assertEqual(deployment.drift, "in_sync")
        # scaled by an Approver: the cluster follows at once, still in sync
        deployment.with_user(self.approver).action_set_replicas(3)
        live = self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{self._name(deployment)}"
        ).json()
        self.assertEqual(live["spec"]["replicas"], 3)
        self.assertEqual(
            live["metadata"]["annotations"][manifests.REPLICAS_ANNOTATION], "3"
        )
        serving.supervise(self.env)
        self.assertEqual(deployment.drift, "in_sync")

        # undeploy leaves nothing of it on the cluster (foreground: the
        # pods first, then what owns them)
        deployment.with_user(self.approver).action_undeploy()
        chosen = {"labelSelector": f"{manifests.COLOUR_LABEL}=d{deployment.id}"}
        paths = [
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
            f"/apis/apps/v1/namespaces/{self.namespace}/replicasets",
            f"/api/v1/namespaces/{self.namespace}/pods",
            f"/api/v1/namespaces/{self.namespace}/secrets",
        ]
        left = ["?"]
        for _try in range(100):
            self.kubelet.let_go(self.namespace)
            left = [
                item["metadata"]["name"]
                for path in paths
                for item in self.kube.get(path, params=chosen).json()["items"]
            ]
            if not left:
                break
            time.sleep(0.1)
        self.assertEqual(left, [])
        self.assertEqual(
            self._service(route).status_code, 404, self._service(route).text
        )
        # its objects back (a delete that half failed, a restore from a
        # backup): with nothing left to run on the target, the supervisor
        # still removes them
        self.target._get_client().apply(serving.plan(deployment))
        done = serving.supervise(self.env)
        self.assertIn(f"d{deployment.id}", done["stopped"])
        workloads = self.kube.get(paths[0], params=chosen).json()["items"]
        self.assertTrue(
            all(w["metadata"].get("deletionTimestamp") for w in workloads),
            workloads,
        )

    def test_an_api_server_out_of_reach_is_retried_and_nothing_recorded(self):
        """apply while the API server cannot be reached: the job asks to be
        retried, its stage stays pending and nothing says it was applied;
        once the server is back, the same job applies. Forbidden by RBAC:
        the run fails with the verb and resource the cluster named."""
        with s3_backend(self.env, code="k8s_fault", default=True):
            version = self._validated("3.0.0")
            other = self._validated("3.1.0")
        options = dict(self.target.options)
        self.target.options = {**options, "server_url": "https://127.0.0.1:9"}
        with trap_jobs() as trap:
            jobs = self._before_apply(trap, version, "out of reach")
            with self.assertRaisesRegex(RetryableJobError, "cannot be reached"):
                with self.env.cr.savepoint():
                    jobs["apply"].perform()
            deployment = version.deployment_ids
            apply = deployment.stage_ids.filtered(lambda s: s.name == "apply")
            self.assertEqual(apply.state, "pending")
            self.assertEqual(deployment.state, "deploying")
            self.assertEqual(
                self.kube.get(
                    f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
                    f"{self._name(deployment)}"
                ).status_code,
                404,
            )
            self.target.options = options
            jobs["apply"].perform()
            self.assertEqual(apply.state, "succeeded")
        # out of reach again: undeploy is a 503 that changes nothing, and a
        # read of the deployment says the cluster cannot be asked
        self.target.options = {**options, "server_url": "https://127.0.0.1:9"}
        with self.assertRaises(BackendUnavailable):
            with self.env.cr.savepoint():
                deployment.with_user(self.approver).action_undeploy()
        self.assertEqual(deployment.state, "deploying")
        # keys are still created and revoked: the cluster gets its table
        # on the supervisor's next pass, and refuses what it does not know
        key, _token = (
            self.env["mlops.invoke.key"]
            .with_user(self.manager)
            ._generate({"name": "meanwhile", "environment": "all"})
        )
        key.with_user(self.manager).action_archive()
        self.assertFalse(key.active)
        live = deployment._live_status()
        self.assertIsNone(live["ready"])
        self.assertIn("cannot be reached", live["message"])
        self.target.options = options
        deployment.with_user(self.approver).action_undeploy()
        # RBAC says no: a clear failure, not a retry
        os.environ["MLOPS_TARGET_CLUSTER_TOKEN"] = self.kube.limited_token
        try:
            with trap_jobs() as trap:
                other.with_user(self.approver).action_approve_staging(
                    reason="forbidden", target="cluster"
                )
                self._run_pipeline(trap)
        finally:
            os.environ["MLOPS_TARGET_CLUSTER_TOKEN"] = self.kube.admin_token
        failed = other.deployment_ids
        self.assertEqual(failed.state, "failed")
        self.assertIn('cannot patch resource "configmaps"', failed.message)

    def test_odoo_killed_mid_rollout_resumes_from_the_cluster(self):
        """The process dies in the middle of apply (one object sent, the
        transaction lost) and again while the rollout runs: a new process
        (no client kept) runs the same jobs again, apply sends what is
        missing over what is there, and verify reads the rollout where the
        cluster has it."""
        from ..adapters.k8s_client import Cluster  # noqa: PLC0415

        class Killed(BaseException):
            """The process ending: no handler of the addon's catches it."""

        with s3_backend(self.env, code="k8s_killed", default=True):
            version = self._validated("5.0.0")
        with trap_jobs() as trap:
            jobs = self._before_apply(trap, version, "killed")
        deployment = version.deployment_ids
        sent = []
        real_apply = Cluster.apply

        def apply_then_die(cluster, obj, dry_run=False, force=False):
            answer = real_apply(cluster, obj, dry_run=dry_run, force=force)
            if not dry_run and obj["kind"] != "ConfigMap":
                sent.append(obj["kind"])
                if obj["kind"] == "Secret":
                    raise Killed()
            return answer

        with patch.object(Cluster, "apply", apply_then_die):
            with self.assertRaises(Killed):
                with self.env.cr.savepoint():
                    jobs["apply"].perform()
        self.assertIn("Secret", sent)
        apply = deployment.stage_ids.filtered(lambda s: s.name == "apply")
        self.assertEqual((apply.state, deployment.state), ("pending", "deploying"))
        # restarted: a new process builds its clients anew
        type(self.target)._clients.clear()
        jobs["apply"].perform()
        self.assertEqual(apply.state, "succeeded")
        with self.assertRaises(RetryableJobError):
            with self.env.cr.savepoint():
                jobs["verify"].perform()
        # killed again while the pods come up, which they do meanwhile
        type(self.target)._clients.clear()
        self.kubelet.run(
            self.namespace, f"{manifests.COLOUR_LABEL}=d{deployment.id}", expect=1
        )
        for _try in range(50):
            try:
                with self.env.cr.savepoint():
                    jobs["verify"].perform()
                break
            except RetryableJobError:
                time.sleep(0.1)
        jobs["switch_traffic"].perform()
        self.assertEqual(deployment.state, "active", deployment.message)
        workloads = self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
            params={"labelSelector": f"{manifests.COLOUR_LABEL}=d{deployment.id}"},
        ).json()["items"]
        self.assertEqual(len(workloads), 1)
        deployment.with_user(self.approver).action_undeploy()


class KubernetesCanaryCase(KubernetesCase):
    """A canary's versions through staging and production on the cluster,
    the gates reading a Prometheus HTTP API the test answers for."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import kubeserver  # noqa: PLC0415

        cls.prometheus = kubeserver.PrometheusApi()
        cls.target.options = {
            **cls.target.options,
            "prometheus_url": cls.prometheus.url,
            "canary_replicas": 10,
        }

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.close()
        super().tearDownClass()

    def _replicas(self, deployment):
        return self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{self._name(deployment)}"
        ).json()["spec"]["replicas"]

    def _in_staging(self, version):
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(
                reason="staging", target="cluster"
            )
            self._run_pipeline(trap)
        deployment = self.env["mlops.deployment"].search(
            [("version_id", "=", version.id)], order="id desc", limit=1
        )
        self.assertEqual(version.state, "staging", deployment.message)
        return version

    def _canary(self, *more):
        """(stable, canary, analyses), and the versions ``more`` names
        validated too."""
        with s3_backend(self.env, code="canary_s3", default=True):
            stable_version = self._validated("1.0.0")
            version = self._validated("2.0.0")
            self.more = [self._validated(name) for name in more]
        self._in_staging(stable_version)
        with trap_jobs() as trap:
            stable_version.with_user(self.approver).action_promote(reason="prod")
            stable = self._run_pipeline(trap)
        self.assertEqual((stable.environment, stable.state), ("production", "active"))
        self._in_staging(version)
        with trap_jobs() as trap:
            version.with_user(self.approver).action_promote(
                reason="canary", strategy="canary"
            )
            canary = self._run_pipeline(trap)
            analyses = [
                j for j in trap.enqueued_jobs if j.method_name == "_canary_analyze"
            ]
        self.assertEqual(canary.state, "rolling_out_canary", canary.message)
        return stable, canary, analyses

    def _analyze(self, canary):
        with trap_jobs() as trap:
            canary._canary_analyze(canary.config["step"])
            return [j for j in trap.enqueued_jobs if j.method_name == "_canary_analyze"]


class TestKubernetesCanary(KubernetesCanaryCase):
    """Canary on the cluster, plain mode: the route's pods in the ratio of
    the shares."""

    def test_a_canary_steps_by_replica_ratio_and_is_promoted(self):
        self.assertIn("Canary: yes", self.target.capabilities_text)
        stable, canary, _jobs = self._canary()
        # 10 %: one pod of ten
        self.assertEqual((self._replicas(stable), self._replicas(canary)), (9, 1))
        service = self._service(serving.plan(canary).route).json()
        self.assertNotIn(manifests.COLOUR_LABEL, service["spec"]["selector"])
        self.prometheus.requests, self.prometheus.errors, self.prometheus.p95 = (
            200.0, 0.0, 0.04,
        )  # fmt: skip
        self._analyze(canary)
        self.assertEqual(canary.traffic_percent, 50)
        self.assertEqual((self._replicas(stable), self._replicas(canary)), (5, 5))
        # the gates asked for the canary's own pods over the step
        self.assertIn(f'pod=~"{self._name(canary)}-.*"', self.prometheus.queries[-1])
        self._analyze(canary)
        self.assertEqual((canary.state, canary.traffic_percent), ("active", 100))
        self.assertEqual(stable.state, "inactive_bluegreen")
        # each colour back to its own replicas; the route on the canary's pods
        self.assertEqual((self._replicas(stable), self._replicas(canary)), (1, 1))
        service = self._service(serving.plan(canary).route).json()
        self.assertEqual(
            service["spec"]["selector"][manifests.COLOUR_LABEL], f"d{canary.id}"
        )

    def test_shares_are_what_the_split_can_give(self):
        """Ten pods split a route in tens: 25 % asked is refused (at
        promotion and by hand) naming the precision; configured steps are
        taken to the nearest share the target gives."""
        stable, canary, _jobs = self._canary("4.0.0")
        with self.assertRaisesRegex(InvalidInput, "steps of 10 %"):
            canary.with_user(self.approver).action_set_canary_share(25)
        self.assertEqual(canary.traffic_percent, 10)
        canary.with_user(self.approver).action_set_canary_share(30)
        self.assertEqual((self._replicas(stable), self._replicas(canary)), (7, 3))
        canary.with_user(self.approver).action_canary_abort(reason="done")
        (version,) = self.more
        self._in_staging(version)
        with self.assertRaisesRegex(InvalidInput, "multiple of 10"):
            version.with_user(self.approver).action_promote(
                reason="canary", strategy="canary", canary_percent=25
            )
        self.env["ir.config_parameter"].sudo().set_param(
            "creativeflow_mlops.canary_steps", "5,25,50,98"
        )
        self.assertEqual(
            canary_service.steps(self.env, precision=10), [10, 20, 50, 100]
        )
        self.assertEqual(
            canary_service.steps(self.env, precision=1), [5, 25, 50, 98, 100]
        )

    def test_a_failing_canary_is_rolled_back_on_the_cluster(self):
        stable, canary, _jobs = self._canary()
        # Prometheus busy (429) then down (503): the step is held, the
        # split kept, neither promoted nor aborted
        for status in (429, 503):
            self.prometheus.status = status
            try:
                again = self._analyze(canary)
            finally:
                self.prometheus.status = 200
            self.assertEqual(len(again), 1)
            self.assertEqual((canary.state, canary.traffic_percent), (
                "rolling_out_canary", 10,
            ))  # fmt: skip
        self.assertEqual(canary.config["try"], 2)
        self.assertEqual((self._replicas(stable), self._replicas(canary)), (9, 1))
        self.prometheus.requests, self.prometheus.errors, self.prometheus.p95 = (
            100.0, 30.0, 0.04,
        )  # fmt: skip
        self._analyze(canary)
        self.assertEqual(canary.state, "rolled_back")
        self.assertIn("error rate 30.0%", canary.message or canary.message_ids[0].body)
        self.assertEqual((stable.state, stable.traffic_percent), ("active", 100))
        service = self._service(serving.plan(stable).route).json()
        self.assertEqual(
            service["spec"]["selector"][manifests.COLOUR_LABEL], f"d{stable.id}"
        )
        self.assertEqual(self._replicas(stable), 1)
        # the canary's objects are going (foreground: their pods first)
        answer = self.kube.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/"
            f"{self._name(canary)}"
        )
        self.assertTrue(
            answer.status_code == 404 or answer.json()["metadata"]["deletionTimestamp"]
        )


class TestKServeServerlessCanary(KubernetesCanaryCase):
    """kserve mode, Serverless: a canary is KServe's own split of the
    route's InferenceService (``canaryTrafficPercent``), stepped by the same
    gates; KServe's controller is played (tools/kubeserver.py)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import kubeserver  # noqa: PLC0415

        # KServe's CRD as the test run installs it (the plain tests' fixture
        # may not have run in this process)
        cls.kube.install_crd(
            Path(__file__).resolve().parents[2] / "tests/k8s/inferenceservice_crd.yaml"
        )
        cls.kserve = kubeserver.KServeController(cls.kube)
        cls.target.options = {
            **cls.target.options,
            "mode": "kserve",
            "kserve_deployment_mode": "Serverless",
        }

    def _play(self, deployment, pods):
        self.kserve.play(self.namespace)

    def _route(self, deployment):
        client = self.target._get_client()
        route = serving.plan(deployment).route
        answer = self.kube.get(
            f"/apis/serving.kserve.io/v1beta1/namespaces/{self.namespace}/"
            f"inferenceservices/{client.service_name(route)}"
        )
        return answer.json() if answer.ok else None

    def test_a_canary_steps_through_kserves_split_and_is_promoted(self):
        self.assertIn("Canary: yes", self.target.capabilities_text)
        stable, canary, _jobs = self._canary()
        route = self._route(canary)
        self.assertEqual(route, self._route(stable))
        annotations = route["metadata"]["annotations"]
        self.assertEqual(
            (annotations[revisions.LATEST], annotations[revisions.STABLE]),
            (f"d{canary.id}", f"d{stable.id}"),
        )
        self.assertEqual(route["spec"]["predictor"]["canaryTrafficPercent"], 10)
        self.prometheus.requests, self.prometheus.errors, self.prometheus.p95 = (
            200.0, 0.0, 0.04,
        )  # fmt: skip
        self._analyze(canary)
        self.assertEqual(canary.traffic_percent, 50)
        self.assertEqual(
            self._route(canary)["spec"]["predictor"]["canaryTrafficPercent"], 50
        )
        # the gates asked for the canary's revision's pods
        revision = self._route(canary)["metadata"]["annotations"][
            f"{revisions.REVISION}d{canary.id}"
        ]
        self.assertIn(f'pod=~"{revision}-deployment-.*"', self.prometheus.queries[-1])
        self._analyze(canary)
        self.assertEqual((canary.state, canary.traffic_percent), ("active", 100))
        route = self._route(canary)
        # promoted: KServe rolls the canary's revision out at 100 %
        self.assertNotIn("canaryTrafficPercent", route["spec"]["predictor"])
        self.assertEqual(
            route["metadata"]["annotations"][revisions.STABLE], f"d{canary.id}"
        )
        self.kserve.play(self.namespace)
        self.assertEqual(
            self._route(canary)["status"]["components"]["predictor"][
                "latestRolledoutRevision"
            ],
            revision,
        )

    def test_a_failing_canary_hands_every_call_back(self):
        stable, canary, _jobs = self._canary()
        self.prometheus.requests, self.prometheus.errors, self.prometheus.p95 = (
            100.0, 30.0, 0.04,
        )  # fmt: skip
        self._analyze(canary)
        self.assertEqual(canary.state, "rolled_back")
        self.assertEqual((stable.state, stable.traffic_percent), ("active", 100))
        route = self._route(stable)
        # every call to the revision rolled out before; the canary forgotten
        self.assertEqual(route["spec"]["predictor"]["canaryTrafficPercent"], 0)
        annotations = route["metadata"]["annotations"]
        self.assertEqual(
            (annotations[revisions.LATEST], annotations[revisions.STABLE]),
            ("", f"d{stable.id}"),
        )
        self.kserve.play(self.namespace)
        traffic = self._route(stable)["status"]["components"]["predictor"]["traffic"]
        self.assertEqual([t["percent"] for t in traffic], [100])
