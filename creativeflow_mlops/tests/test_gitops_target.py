# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A ``gitops`` target in Odoo, against a real git server (git
http-backend behind basic auth), a real OCI registry for the ModelCar, a
recording server standing for GitHub's API, and the real kube-apiserver
it watches, the test playing Argo CD (it applies what main holds) and the
kubelet. Staging lands on main; production waits on a pull request that
the pipeline's expiry cron leaves alone; the merge hook, then the cluster
running the new digest, make it live; a close fails the run cleanly; a
rollback is a revert commit; the review deadline withdraws the change."""

import io
import json
import os
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from odoo import fields
from odoo.tests.common import _super_send

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.tests.common import trap_jobs

from ..adapters import git_hosting, k8s_manifests
from ..exceptions import Conflict, Unauthorized
from ..services import artifacts as artifact_service
from ..services import gitops, serving, settings
from . import artifacts
from .common import MlopsCase

PUBLIC = "https://models.example.com"
SECRET = "gitops-hook-secret"  # noqa: S105 (a test's hook secret)
ENVIRONMENT = (
    "MLOPS_TARGET_GITOPS_TOKEN",
    "MLOPS_TARGET_GITOPS_HOOK_SECRET",
    "MLOPS_TARGET_GITOPS_REGISTRY_USERNAME",
    "MLOPS_TARGET_GITOPS_REGISTRY_PASSWORD",
    "MLOPS_TARGET_GITOPS_CLUSTER_TOKEN",
    "MLOPS_TARGET_ARGO_TOKEN",
    "MLOPS_TARGET_ARGO_HOOK_SECRET",
    "MLOPS_TARGET_ARGO_REGISTRY_USERNAME",
    "MLOPS_TARGET_ARGO_REGISTRY_PASSWORD",
)
NOTIFICATIONS = (
    Path(__file__).resolve().parents[2]
    / "docs"
    / "gitops"
    / "argocd-notifications.yaml"
)


class TestGitopsTarget(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import gitserver  # noqa: PLC0415 - tools/ is on the path under bin/test
        import kubeserver  # noqa: PLC0415
        import ociregistry  # noqa: PLC0415
        import testservers  # noqa: PLC0415

        from ..adapters.oci_registry import Registry  # noqa: PLC0415

        cls.git = gitserver.GitServer().start()
        cls.addClassCleanup(cls.git.stop)
        cls.repo_name = f"ops-{uuid.uuid4().hex[:6]}"
        cls.repo_url = cls.git.create(cls.repo_name)
        cls.oci = ociregistry.OciRegistry().start()
        cls.addClassCleanup(cls.oci.__exit__, None, None, None)
        base = cls.oci.push_base(
            Registry(
                cls.oci.host,
                cls.oci.username,
                cls.oci.password,
                insecure=True,
            )
        )
        cls.github = testservers.RecordingServer().start()
        cls.addClassCleanup(cls.github.stop)
        cls.kube = kubeserver.shared()
        cls.namespace = f"gitops-{uuid.uuid4().hex[:8]}"
        cls.kube.create_namespace(cls.namespace)
        cls.kubelet = kubeserver.Kubelet(cls.kube, node=cls.namespace).register()
        cls._saved = {name: os.environ.get(name) for name in ENVIRONMENT}
        os.environ.update(
            {
                "MLOPS_TARGET_GITOPS_TOKEN": cls.git.password,
                "MLOPS_TARGET_GITOPS_HOOK_SECRET": SECRET,
                "MLOPS_TARGET_GITOPS_REGISTRY_USERNAME": cls.oci.username,
                "MLOPS_TARGET_GITOPS_REGISTRY_PASSWORD": cls.oci.password,
                "MLOPS_TARGET_GITOPS_CLUSTER_TOKEN": cls.kube.admin_token,
                "MLOPS_TARGET_ARGO_TOKEN": cls.git.password,
                "MLOPS_TARGET_ARGO_HOOK_SECRET": SECRET,
                "MLOPS_TARGET_ARGO_REGISTRY_USERNAME": cls.oci.username,
                "MLOPS_TARGET_ARGO_REGISTRY_PASSWORD": cls.oci.password,
            }
        )
        cls.target = cls.env["mlops.deployment.target"].create(
            {
                "name": "GitOps",
                "code": "gitops",
                "kind": "gitops",
                "options": {
                    "repository": cls.repo_url,
                    "git_username": cls.git.username,
                    "provider": "github",
                    "project": "acme/ops",
                    "api_url": cls.github.url,
                    "public_url": PUBLIC,
                    "cluster": {
                        "namespace": cls.namespace,
                        "server_url": cls.kube.url,
                        "ca_file": cls.kube.ca_file,
                        "registry": f"{cls.oci.host}/mlops",
                        "base_image": base,
                        "registry_insecure": True,
                        "image_pull_secret": "team-registry",
                    },
                },
            }
        )

        # no provider (every environment on main), no cluster watched: Argo
        # CD's reports verify
        cls.unwatched = cls.env["mlops.deployment.target"].create(
            {
                "name": "Argo CD reports",
                "code": "argo",
                "kind": "gitops",
                "options": {
                    "repository": cls.repo_url,
                    "git_username": cls.git.username,
                    "public_url": PUBLIC,
                    "cluster": {
                        "namespace": cls.namespace,
                        "registry": f"{cls.oci.host}/mlops",
                        "base_image": base,
                        "registry_insecure": True,
                    },
                },
            }
        )

    @classmethod
    def tearDownClass(cls):
        for name, value in cls._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        super().tearDownClass()

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Odoo's compares the timeout with 10 seconds; the hosting adapter
        # gives a (connect, read) pair, to the recording server here
        if isinstance(kw.get("timeout"), tuple) and r.url.startswith(cls.github.url):
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)

    # ------------------------------------------------------------------
    # The parts the test plays
    # ------------------------------------------------------------------

    def _validated(self, version):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": "gitops-model", "version": version, "model_format": "onnx"},
                io.BytesIO(artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(record.state, "validated")
        return record

    def _git(self, *args):
        return subprocess.run(
            ["git", "--git-dir", str(self.git.bare(self.repo_name)), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def _main_file(self, path):
        try:
            return self._git("show", f"main:{path}")
        except subprocess.CalledProcessError:
            return None

    def _argo_syncs(self, environment):
        """Argo CD's part (automated sync with prune): apply what main holds
        for the environment, delete that environment's Deployments it no
        longer holds."""
        text = self._main_file(f"{environment}/gitops-model/manifests.yaml")
        wanted = set()
        for obj in yaml.safe_load_all(text):
            plural = {"Deployment": "deployments", "Service": "services"}[obj["kind"]]
            group = "/apis/apps/v1" if obj["kind"] == "Deployment" else "/api/v1"
            path = f"{group}/namespaces/{self.namespace}/{plural}"
            name = obj["metadata"]["name"]
            wanted.add(name)
            if self.kube.get(f"{path}/{name}").status_code == 200:
                self.kube.json(
                    "PATCH",
                    f"{path}/{name}",
                    obj,
                    content_type="application/merge-patch+json",
                )
            else:
                self.kube.json("POST", path, obj)
        for deployment in self._deployments(environment):
            name = deployment["metadata"]["name"]
            if name not in wanted:
                self.kube.json(
                    "DELETE",
                    f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}",
                )

    def _deployments(self, environment):
        """The cluster's Deployments of ``environment``."""
        return self.kube.json(
            "GET",
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
            f"?labelSelector={k8s_manifests.LABELS['environment']}%3D{environment}",
        )["items"]

    def _run_stages(self, trap, environment, on_retry=None):
        """Every queued stage in order, queued ones after them too; verify
        asked again while Argo CD and the kubelet do their part (or
        ``on_retry``)."""
        for _round in range(5):
            order = list(self.target._kind_class().stages)
            jobs = sorted(
                (j for j in trap.enqueued_jobs if j.method_name == "_run_stage"),
                key=lambda j: order.index(j.args[0]),
            )
            if not jobs:
                return
            trap.enqueued_jobs = []
            for job in jobs:
                for _try in range(100):
                    try:
                        with self.env.cr.savepoint():
                            job.perform()
                        break
                    except RetryableJobError:
                        self._argo_syncs(environment)
                        self.kubelet.run(self.namespace, pending_only=True)
                        if on_retry:
                            on_retry()
                        time.sleep(0.1)
                else:
                    self.fail(f"{job.args[0]} never finished")

    def _argocd_report(self, environment, health="Healthy", images=None):
        """Exactly what docs/gitops/argocd-notifications.yaml makes Argo CD
        send about the environment's Application, synced from main: its
        template's every expression given the value Argo CD gives it."""
        (config, _secret) = yaml.safe_load_all(NOTIFICATIONS.read_text())
        template = yaml.safe_load(config["data"]["template.mlops-report"])
        if images is None:
            pods = [
                d["spec"]["template"]["spec"] for d in self._deployments(environment)
            ]
            images = sorted(
                {
                    c["image"]
                    for p in pods
                    for c in p["containers"] + p.get("initContainers", [])
                }
            )
        values = {
            ".app.metadata.name": f"mlops-{environment}-gitops-model",
            ".app.spec.source.path": f"{environment}/gitops-model",
            ".app.status.sync.revision": self._git("rev-parse", "main"),
            ".app.status.sync.status": "Synced",
            ".app.status.health.status": health,
            "toJson .app.status.summary.images": json.dumps(images),
            '(call .time.Now).Format "2006-01-02T15:04:05Z07:00"': datetime.now(
                UTC
            ).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

        def value(match):
            expression = match.group(1).strip()
            self.assertIn(expression, values, "the template says more than tested")
            return values[expression]

        body = re.sub(r"\{\{(.*?)\}\}", value, template["webhook"]["mlops"]["body"])
        return {"x-mlops-token": SECRET}, body.encode()

    def _hook(self, run, merged=True, delivery=None, secret=SECRET, at=None):
        at = at or datetime.now(UTC)
        body = json.dumps(
            {
                "action": "closed",
                "number": run.change_number,
                "pull_request": {
                    "number": run.change_number,
                    "merged": merged,
                    "closed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "merge_commit_sha": self._merge(run) if merged else None,
                    "head": {"ref": run.change_branch, "sha": run.change_commit},
                    "merged_by": {"login": "reviewer"},
                },
                "repository": {"full_name": "acme/ops"},
            }
        ).encode()
        headers = {
            "x-github-event": "pull_request",
            "x-github-delivery": delivery or str(uuid.uuid4()),
            "x-hub-signature-256": git_hosting.github_signature(secret, body),
        }
        return headers, body

    def _merge(self, run):
        """The reviewer merges: main moves to the change's commit."""
        self._git("update-ref", "refs/heads/main", run.change_commit)
        return run.change_commit

    def _staging(self, version, reason, target="gitops", on_retry=None):
        """The Approver approves staging on ``target``; its stages run."""
        with trap_jobs() as trap:
            version.with_user(self.approver).action_approve_staging(
                reason=reason, target=target
            )
            self._run_stages(trap, "staging", on_retry=on_retry)
        return version.deployment_ids.filtered(lambda d: d.environment == "staging")

    def _production(self, version, reason, strategy="rolling"):
        """The Approver promotes; its stages run until the review."""
        with trap_jobs() as trap:
            version.with_user(self.approver).action_promote(
                reason=reason, strategy=strategy, target="gitops"
            )
            self._run_stages(trap, "production")
        return version.deployment_ids.filtered(lambda d: d.environment == "production")

    def _pr_opened(self, number):
        self.github.answer(
            201, {"number": number, "html_url": f"https://github.com/x/pull/{number}"}
        )

    # ------------------------------------------------------------------

    def test_staging_lands_on_main_and_production_waits_for_the_merge(self):
        version = self._validated("1.0.0")
        staging = self._staging(version, "first model")
        self.assertEqual(staging.state, "active", staging.message)
        self.assertEqual(version.state, "staging")
        stages = {s.name: s for s in staging.run_ids.stage_ids}
        self.assertEqual(
            list(staging.run_ids.stage_ids.sorted("sequence").mapped("name")),
            list(self.target._kind_class().stages),
        )
        self.assertEqual(stages["open_change"].state, "skipped")
        self.assertEqual(stages["await_merge"].state, "skipped")
        self.assertIn("on main", stages["commit"].log)
        self.assertIn(staging.image, stages["verify"].log)
        config = yaml.safe_load(self._main_file("staging/gitops-model/config.yaml"))
        self.assertEqual(config["image"], staging.image)
        self.assertEqual(config["approval"]["reason"], "first model")
        route = serving.plan(staging).route
        self.assertEqual(
            staging.endpoint_url,
            f"{PUBLIC}/m/{route}/v2/models/{version.model_id.slug}/infer",
        )

        # production: a branch, a pull request, and the run waits
        self._pr_opened(41)
        before = len(self.github.requests)
        main = self._git("rev-parse", "main")
        production = self._production(version, "better F1")
        run = production.run_ids
        self.assertEqual(run.state, "waiting", run.message)
        self.assertEqual(run.change_number, 41)
        self.assertTrue(run.change_branch.startswith("mlops/production-gitops-model"))
        self.assertEqual(production.state, "deploying")
        self.assertEqual(version.state, "production_pending")
        stages = {s.name: s for s in run.stage_ids}
        self.assertEqual(stages["await_merge"].state, "running")
        self.assertEqual(stages["verify"].state, "pending")
        self.assertEqual(self._git("rev-parse", "main"), main)  # not on main yet
        opened = json.loads(self.github.requests[before]["body"])
        self.assertIn("better F1", opened["body"])
        self.assertIn("production of gitops-model: nothing -> 1.0.0", opened["body"])
        self.assertIn("- format: passed", opened["body"])
        waiting = self.env["mlops.event"].search(
            [("type", "=", "pipeline_run.waiting"), ("resource_id", "=", run.id)]
        )
        self.assertEqual(len(waiting), 1)

        # the pipeline's own deadline does not apply to a waiting run
        self.env["ir.config_parameter"].sudo().set_param(
            settings.SETTINGS["pipeline_timeout_minutes"].key, "1"
        )
        run.sudo().write({"last_heard_at": fields.Datetime.now() - timedelta(hours=5)})
        self.env["mlops.pipeline.run"]._cron_expire()
        self.assertEqual(run.state, "waiting")

        # a forged hook, a stale one: refused, nothing changes
        headers, body = self._hook(run, secret="forged")
        with self.assertRaises(Unauthorized):
            gitops.hear(self.target, "github", headers, body)
        headers, body = self._hook(run, at=datetime.now(UTC) - timedelta(hours=1))
        with self.assertRaisesRegex(Unauthorized, "stale"):
            gitops.hear(self.target, "github", headers, body)
        self.assertEqual(run.state, "waiting")

        # merged: await_merge succeeds, verify runs; Argo CD syncs; live
        headers, body = self._hook(run, delivery="merge-41")
        with trap_jobs() as trap:
            answer = gitops.hear(self.target, "github", headers, body)
            self.assertTrue(answer["changed"])
            self.assertEqual(run.state, "running")
            self._run_stages(trap, "production")
        self.assertEqual(production.state, "active", production.message)
        self.assertEqual(version.state, "production")
        self.assertEqual(run.state, "succeeded")
        self.assertIn("merged by reviewer", stages["await_merge"].log)
        ledger = self.env["mlops.promotion"]._current(version.model_id, "production")
        self.assertEqual(ledger.deployment_id, production)
        self.assertEqual(ledger.reason, "better F1")
        # replayed: refused; another delivery for a finished run: no change
        with self.assertRaises(Conflict):
            gitops.hear(self.target, "github", headers, body)
        headers, body = self._hook(run)
        self.assertFalse(gitops.hear(self.target, "github", headers, body)["changed"])
        self.assertEqual(
            run.delivery_ids.mapped("changed"), [False, True]
        )  # newest first

    def test_a_pull_request_closed_unmerged_fails_the_run_cleanly(self):
        version = self._validated("2.0.0")
        staging = self._staging(version, "staging")
        self._pr_opened(52)
        run = self._production(version, "try prod").run_ids
        branch = run.change_branch
        self.assertTrue(self._git("for-each-ref", f"refs/heads/{branch}"))
        requests_before = len(self.github.requests)
        headers, body = self._hook(run, merged=False)
        gitops.hear(self.target, "github", headers, body)
        self.assertEqual(run.state, "failed")
        self.assertIn("closed unmerged", run.message)
        self.assertEqual(run.deployment_id.state, "failed")
        self.assertEqual(version.state, "staging")
        self.assertEqual(staging.state, "active")  # staging stays
        # closed by its reviewer: not closed again, but its branch is gone
        self.assertEqual(len(self.github.requests), requests_before)
        self.assertFalse(self._git("for-each-ref", f"refs/heads/{branch}"))

    def test_the_review_deadline_withdraws_the_change(self):
        version = self._validated("3.0.0")
        self._staging(version, "staging")
        self._pr_opened(63)
        run = self._production(version, "prod").run_ids
        self.assertEqual(run.state, "waiting")
        run.sudo().write({"waiting_since": fields.Datetime.now() - timedelta(days=4)})
        self.env["mlops.pipeline.run"]._cron_expire()
        self.assertEqual(run.state, "failed")
        self.assertIn("not merged within 72 hours", run.message)
        closing = self.github.requests[-1]
        self.assertEqual(
            (closing["method"], closing["path"]), ("PATCH", "/repos/acme/ops/pulls/63")
        )
        self.assertEqual(version.state, "staging")

    def _to_production(self, version_number, change_number):
        """A version validated, on staging, then merged to production."""
        version = self._validated(version_number)
        self._staging(version, f"staging {version_number}")
        self._pr_opened(change_number)
        production = self._production(
            version, f"production {version_number}", "blue_green"
        )
        headers, body = self._hook(production.run_ids)
        with trap_jobs() as trap:
            gitops.hear(self.target, "github", headers, body)
            self._run_stages(trap, "production")
        self.assertEqual(production.state, "active", production.message)
        return version, production

    def test_a_rollback_is_a_revert_of_the_commit_that_brought_the_version(self):
        old, _before = self._to_production("4.0.0", 71)
        new, current = self._to_production("5.0.0", 72)
        self.assertEqual(old.state, "deprecated")
        brought = current.run_ids.change_commit
        config = yaml.safe_load(self._main_file("production/gitops-model/config.yaml"))
        self.assertEqual(config["version"], "5.0.0")
        requests_before = len(self.github.requests)

        with trap_jobs() as trap:
            back = current.with_user(self.approver).action_rollback(
                reason="p95 latency doubled"
            )
            self._run_stages(trap, "production")
        self.assertEqual(back.version_id, old)
        self.assertEqual(back.state, "active", back.message)
        self.assertEqual(old.state, "production")
        self.assertEqual(new.state, "deprecated")
        # a revert commit on main, naming the commit it undoes; no review
        subject, message = self._git("log", "-1", "--format=%s%n%b", "main").split(
            "\n", 1
        )
        self.assertEqual(subject, "Revert gitops-model in production")
        self.assertIn(f"This reverts commit {brought}.", message)
        self.assertIn("p95 latency doubled", message)
        config = yaml.safe_load(self._main_file("production/gitops-model/config.yaml"))
        self.assertEqual(config["version"], "4.0.0")
        self.assertEqual(config["image"], back.image)
        self.assertEqual(len(self.github.requests), requests_before)
        stages = {s.name: s for s in back.run_ids.stage_ids}
        self.assertIn(f"reverted {brought[:12]}", stages["commit"].log)
        self.assertEqual(stages["open_change"].state, "skipped")
        # the cluster runs the old digest again
        self._argo_syncs("production")
        pods = [d["spec"]["template"]["spec"] for d in self._deployments("production")]
        images = {
            c["image"]
            for pod in pods
            for c in pod.get("initContainers", []) + pod["containers"]
        }
        self.assertIn(back.image, images)
        self.assertNotIn(current.image, images)

    def test_argo_cd_reports_verify_where_no_cluster_is_watched(self):
        version = self._validated("6.0.0")
        heard = []

        def argo_cd():
            if heard:
                return
            # refused, or not about this run's image, or not healthy yet:
            # nothing changes
            headers, body = self._argocd_report("staging")
            with self.assertRaises(Unauthorized):
                gitops.hear_report(self.unwatched, {"x-mlops-token": "x"}, body)
            other = self._argocd_report("staging", images=["r/m@sha256:" + "0" * 64])
            self.assertFalse(gitops.hear_report(self.unwatched, *other)["changed"])
            progressing = self._argocd_report("staging", health="Progressing")
            self.assertFalse(
                gitops.hear_report(self.unwatched, *progressing)["changed"]
            )
            heard.append(gitops.hear_report(self.unwatched, headers, body))
            with self.assertRaises(Conflict):  # the same report again
                gitops.hear_report(self.unwatched, headers, body)

        staging = self._staging(version, "argo", target="argo", on_retry=argo_cd)
        self.assertEqual(staging.state, "active", staging.message)
        self.assertEqual(version.state, "staging")
        self.assertTrue(heard[0]["changed"], heard)
        run = staging.run_ids
        verify = run.stage_ids.filtered(lambda s: s.name == "verify")
        self.assertEqual(verify.state, "succeeded")
        self.assertIn("Argo CD: mlops-staging-gitops-model Synced, Healthy", verify.log)
        self.assertIn(staging.image, verify.log)
        self.assertEqual(
            sorted(run.delivery_ids.mapped("changed")), [False, False, True]
        )

    def test_a_degraded_report_fails_the_run(self):
        version = self._validated("7.0.0")

        def argo_cd():
            run = version.deployment_ids.run_ids
            if run.state == "running":
                gitops.hear_report(
                    self.unwatched, *self._argocd_report("staging", health="Degraded")
                )

        staging = self._staging(version, "argo", target="argo", on_retry=argo_cd)
        self.assertEqual(staging.state, "failed")
        self.assertIn("Degraded", staging.message)
        self.assertEqual(version.state, "validated")
        self.assertEqual(staging.run_ids.state, "failed")
