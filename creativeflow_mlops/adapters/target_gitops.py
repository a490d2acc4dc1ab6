"""The ``gitops`` kind: deployments written to a git repository that Argo
CD (or Flux) applies. Plain Python: no Odoo.

- The objects are the ``kubernetes`` kind's (``adapters.k8s_manifests``,
  its options under ``cluster``), for a ModelCar image this kind builds and
  pushes as the ``kubernetes`` kind does; nothing secret is ever rendered
  (the image is pulled with ``cluster.image_pull_secret``, a Secret of the
  namespace).
- ``commit`` replaces the environment's folder (``folder``, by default
  ``<environment>/<model>``) with ``config.yaml`` (image and digest, the
  deployment's configuration, the approval) and ``manifests/`` (what Argo
  CD applies): on the branch itself, or, for the environments under
  review (``review``, by default production), on a branch of its own;
  a rollback is ``git revert`` of the commit that brought what it rolls
  back (``adapters.git_repo``: pushes rebased once, never forced).
- ``open_change`` opens the pull request (GitHub) or merge request
  (GitLab) for that branch (``adapters.git_hosting``); the service waits
  for the provider's hook.
- ``verify`` reads what the folder holds now and, when ``cluster`` names
  an API server to watch, whether that colour runs with that digest and is
  ready; without one, Argo CD's notification reports it.
- Routing is the manifests' (each folder's route Service selects its one
  colour): ``switch_traffic`` has nothing to move.
"""

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import git_hosting
from . import k8s_manifests as manifests
from .git_repo import (
    GitAuthFailed,
    GitFailed,
    GitUnavailable,
    Repository,
    safe_path,
)
from .k8s_client import Cluster, connect
from .k8s_options import KubernetesOptions
from .k8s_options import check as check_cluster
from .target_kubernetes import KubernetesTarget, signer_of
from .targets import (
    Capabilities,
    ChangeOpened,
    Committed,
    OptionsInvalid,
    Reconciliation,
    ServeStatus,
    StageNotRun,
    Target,
    TargetFailed,
    TargetUnavailable,
    register,
    route_url_under,
)

CONFIG = "config.yaml"
MANIFESTS = "manifests.yaml"
PROVIDERS = ("", *git_hosting.PROVIDERS)
ENVIRONMENTS = ("staging", "production")
USERNAMES = {"github": "x-access-token", "gitlab": "oauth2", "": "git"}


def _str(help_text, default=""):
    return field(default=default, metadata={"type": str, "help": help_text})


@dataclass
class GitOpsOptions:
    repository: str = field(
        metadata={"type": str, "help": "the repository's https://, http:// or ssh URL"}
    )
    branch: str = _str("the branch Argo CD follows", "main")
    folder: str = _str(
        "each deployment's folder: a path with {environment} and {model}"
        " ({company} too)",
        "{environment}/{model}",
    )
    provider: str = _str(
        "github, gitlab, or empty (every environment committed to the branch)"
    )
    api_url: str = _str("the provider's API base URL (empty: its public one)")
    project: str = _str("owner/repository (GitHub), the project's id or path (GitLab)")
    review: list = field(
        default_factory=lambda: ["production"],
        metadata={
            "type": list,
            "help": "the environments whose commits go through a pull request",
        },
    )
    git_username: str = _str("the username going with the token (empty: the usual)")
    public_url: str = _str("the gateway's base URL that serves the routes")
    timeout_seconds: int = field(
        default=60, metadata={"type": int, "help": "seconds, from 1 to 600"}
    )
    cluster: dict = field(
        default_factory=dict,
        metadata={
            "type": dict,
            "help": "the kubernetes kind's options for the manifests; with "
            "server_url, kubeconfig or in_cluster, the cluster watched for "
            "the new digest",
        },
    )


def cluster_options(raw):
    """``raw`` (the ``cluster`` option) as ``KubernetesOptions``: a ModelCar
    image always (nothing secret is committed), a cluster to watch or
    none; ``OptionsInvalid`` with each problem named ``cluster.<name>``."""
    values = {"model_source": "image", **raw}
    names = {f.name for f in dataclasses.fields(KubernetesOptions)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise OptionsInvalid(
            {f"cluster.{n}": "not a kubernetes option" for n in unknown}
        )
    try:
        options = KubernetesOptions(**values)
    except TypeError as error:
        raise OptionsInvalid({"cluster": str(error)}) from None
    problems = check_cluster(options)
    if not watches(options):
        problems.pop("server_url", None)
    problems.pop("public_url", None)  # the gitops target's own
    if options.model_source != "image":
        problems["model_source"] = "image: a gitops target commits no S3 keys"
    if options.mode != "plain":
        problems["mode"] = "plain (the gitops target renders Deployments)"
    if problems:
        raise OptionsInvalid({f"cluster.{k}": v for k, v in problems.items()})
    return options


def watches(options):
    return bool(options.server_url or options.kubeconfig or options.in_cluster)


class _Manifests(KubernetesTarget):
    """The ``kubernetes`` kind's objects and image stages, without asking
    a cluster which API versions it serves (Argo CD applies them)."""

    def _versions(self):
        return {"autoscaling": "v2", "policy": "v1"}


@register
class GitOpsTarget(Target):
    kind = "gitops"
    label = "GitOps (Argo CD)"
    # MLOPS_TARGET_<CODE>_TOKEN: git over https and the provider's API;
    # _SSH_KEY: git over ssh; _HOOK_SECRET: the provider's merge hooks;
    # _REGISTRY_USERNAME/_PASSWORD: the ModelCar's registry;
    # _CLUSTER_TOKEN: the API server watched (cluster.server_url)
    secrets = (
        "token",
        "ssh_key",
        "hook_secret",
        "registry_username",
        "registry_password",
        "cluster_token",
        "signing_key",
        "signing_public_key",
    )
    stages = (
        "fetch_artifact",
        "build_image",
        "push_image",
        "commit",
        "open_change",
        "await_merge",
        "verify",
        "switch_traffic",
    )

    Options = GitOpsOptions

    @classmethod
    def check_options(cls, options):
        problems = {}
        if not re.match(r"^(https?://|ssh://|[\w.-]+@[\w.-]+:)", options.repository):
            problems["repository"] = "an https://, http:// or ssh URL"
        if not options.branch or not re.match(r"^[\w./-]+$", options.branch):
            problems["branch"] = "a branch name"
        try:
            safe_path(options.folder.format(environment="e", model="m", company="1"))
            if "{model}" not in options.folder or "{environment}" not in (
                options.folder
            ):
                raise ValueError
        except (ValueError, KeyError, IndexError):
            problems["folder"] = "a relative path with {environment} and {model}"
        if options.provider not in PROVIDERS:
            problems["provider"] = "github, gitlab or empty"
        elif options.provider and not options.project:
            problems["project"] = f"required with the {options.provider} provider"
        if options.api_url and not options.api_url.startswith(("http://", "https://")):
            problems["api_url"] = "an http(s) URL"
        if not all(e in ENVIRONMENTS for e in options.review):
            problems["review"] = "a list of staging and production"
        if not options.public_url.startswith(("http://", "https://")):
            problems["public_url"] = "the gateway's http(s) base URL"
        if not 1 <= options.timeout_seconds <= 600:
            problems["timeout_seconds"] = "from 1 to 600"
        try:
            cluster_options(options.cluster)
        except OptionsInvalid as error:
            problems.update(error.problems)
        return problems

    @classmethod
    def required_secrets(cls, options):
        names = ["ssh_key" if _ssh(options.repository) else "token"]
        cluster = cluster_options(options.cluster)
        if options.provider:
            names += ["token", "hook_secret"]
        if not watches(cluster):
            names.append("hook_secret")  # Argo CD's reports are how it verifies
        if cluster.server_url:
            names.append("cluster_token")
        if cluster.verify_signatures:
            names.append("signing_public_key")
        return tuple(dict.fromkeys(names))

    @classmethod
    def capabilities(cls, options):
        # what the manifests route: one colour per folder, no canary
        return Capabilities(
            formats=("onnx",),
            max_replicas=100,
            resources=frozenset({"cpu", "memory", "gpu"}),
            builds_images=True,
        )

    @classmethod
    def build(cls, context, options, secrets):
        from .oci_registry import Reference, Registry  # noqa: PLC0415

        cluster = cluster_options(options.cluster)
        api = (
            Cluster(
                connect(cluster, secrets.get("cluster_token")),
                cluster.namespace,
                cluster.timeout_seconds,
            )
            if watches(cluster)
            else None
        )
        registry = Registry(
            Reference.parse(f"{cluster.registry}/x").host,
            secrets.get("registry_username"),
            secrets.get("registry_password"),
            insecure=cluster.registry_insecure,
            timeout=max(60, cluster.timeout_seconds),
        )
        objects = _Manifests(
            api,
            cluster,
            owner=context.owner,
            registry=registry,
            root=context.root,
            signer=signer_of(cluster, registry, secrets),
        )
        repository = Repository(
            options.repository,
            options.branch,
            Path(context.root) / "repository",
            token=secrets.get("token"),
            username=options.git_username or USERNAMES[options.provider],
            ssh_key=secrets.get("ssh_key"),
            timeout=options.timeout_seconds,
        )
        hosting = None
        if options.provider:
            provider = git_hosting.PROVIDERS[options.provider]
            hosting = provider(
                options.api_url or provider.default_url,
                options.project,
                secrets.get("token"),
            )
        return cls(options, repository, objects, hosting, watching=api is not None)

    def __init__(self, options, repository, objects, hosting=None, watching=False):
        self.options = options
        self.repository = repository
        self.objects = objects
        self.hosting = hosting
        self.watching = watching

    # ------------------------------------------------------------------
    # What is committed
    # ------------------------------------------------------------------

    def folder(self, plan):
        return safe_path(
            self.options.folder.format(
                environment=plan.environment,
                model=plan.model_name,
                company=plan.labels.get("company", ""),
            )
        )

    def change_branch(self, plan):
        """The branch of a change: one per deployment (and per database)."""
        owner = self.objects.owner[:8] or "odoo"
        return f"mlops/{plan.environment}-{plan.model_name}-{plan.key}-{owner}"

    def _objects(self, plan):
        plan = self.objects._owned(plan)
        namespace = self.objects.namespace_of(plan.labels.get("company"))
        objects = [
            *self.objects._colour_objects(plan, {}, {}),
            manifests.route_service(plan.route, plan.key, self.objects.owner),
        ]
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        return namespace, objects

    def files(self, plan, approval=None):
        """{name: text} of the deployment's folder."""
        namespace, objects = self._objects(plan)
        image = plan.image or ""
        config = {
            "model": plan.model_name,
            "version": plan.version,
            "environment": plan.environment,
            "deployment": plan.key,
            "route": plan.route,
            "namespace": namespace,
            "image": image,
            "digest": image.rpartition("@")[2] if "@" in image else "",
            "artifact_sha256": plan.artifact_sha256,
            "strategy": plan.strategy,
            "replicas": plan.replicas,
            "resources": dict(plan.resources),
        }
        if approval:
            config["approval"] = {
                "kind": approval.kind,
                "approved_by": approval.approved_by,
                "approved_at": approval.approved_at,
                "reason": approval.reason,
            }
        return {
            CONFIG: yaml.safe_dump(config, sort_keys=False),
            MANIFESTS: yaml.safe_dump_all(objects, sort_keys=False),
        }

    def render(self, plan):
        return {"folder": self.folder(plan), "files": self.files(plan)}

    def committed_config(self, plan):
        """The folder's ``config.yaml`` on the branch now (fetched: a
        reviewer may have merged since), or None."""
        self._git(self.repository.sync)
        text = self._git(self.repository.read_text, f"{self.folder(plan)}/{CONFIG}")
        try:
            config = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            return None
        return config if isinstance(config, dict) else None

    # ------------------------------------------------------------------
    # Stages
    # ------------------------------------------------------------------

    def fetch_artifact(self, plan, opener):
        raise StageNotRun("build_image reads the stored artifact into the image")

    def build_image(self, plan, opener):
        return self.objects.build_image(plan, opener)

    def push_image(self, plan):
        return self.objects.push_image(plan)

    def apply(self, plan):
        raise TargetFailed("a gitops target is applied by Argo CD, from its commits")

    def commit(self, plan, approval):
        if not plan.image and not approval.revert:
            raise TargetFailed("no image to commit: push_image did not run")
        folder = self.folder(plan)
        review = bool(
            self.hosting
            and plan.environment in self.options.review
            and approval.kind != "rollback"
        )
        if approval.revert:
            done = self._git(
                self.repository.revert,
                approval.revert,
                _message(f"Revert {plan.model_name} in {plan.environment}", approval)
                + f"\n\nThis reverts commit {approval.revert}.",
            )
            config = self.committed_config(plan) or {}
            return Committed(
                done.sha,
                done.branch,
                False,
                image=config.get("image") or "",
                log=f"reverted {approval.revert[:12]} in {done.sha[:12]} on "
                f"{done.branch}: {folder} holds {config.get('version', '?')} again",
            )
        # an image the options require signed is never committed unsigned
        signed = self.objects.check_signature(plan)
        branch = self.change_branch(plan) if review else self.options.branch
        done = self._git(
            self.repository.write_folder,
            folder,
            self.files(plan, approval),
            _message(
                f"Deploy {plan.model_name} {plan.version} to {plan.environment}",
                approval,
            )
            + f"\nMlops-Deployment: {plan.key}\nMlops-Image: {plan.image}",
            branch=branch,
        )
        pushed = "pushed" if done.created else "already there"
        return Committed(
            done.sha,
            done.branch,
            review,
            image=plan.image,
            log=f"{folder} committed in {done.sha[:12]} on {done.branch} ({pushed})"
            + (f"; {signed}" if signed else ""),
        )

    def open_change(self, plan, approval, committed):
        if not committed.review:
            raise StageNotRun(
                f"committed to {committed.branch or self.options.branch} directly: "
                "no review asked"
            )
        title = f"Promote {plan.model_name} {plan.version} to {plan.environment}"
        body = "\n\n".join(
            part
            for part in (
                f"**Approved by** {approval.approved_by} at {approval.approved_at}",
                f"**Reason**\n\n{approval.reason}",
                f"**Validation**\n\n{approval.validation}"
                if approval.validation
                else "",
                f"**Ledger**\n\n{approval.ledger}" if approval.ledger else "",
                f"Image `{plan.image}`, folder `{self.folder(plan)}`, "
                f"commit {committed.sha}.",
                "Merging deploys it: Odoo hears of the merge and records the "
                "deployment live once the cluster reports the new digest healthy.",
            )
            if part
        )
        try:
            change = self.hosting.open_change(
                committed.branch, self.options.branch, title, body
            )
        except git_hosting.HostingUnavailable as error:
            raise TargetUnavailable(str(error)) from error
        except git_hosting.HostingError as error:
            raise TargetFailed(str(error)) from error
        opened = "opened" if change.created else "was open already"
        return ChangeOpened(
            change.number,
            change.url,
            f"{self.hosting.label} change {change.number} {opened}: {change.url}",
        )

    def close_change(self, number, branch):
        if number and self.hosting:
            try:
                self.hosting.close_change(number)
            except git_hosting.HostingUnavailable as error:
                raise TargetUnavailable(str(error)) from error
            except git_hosting.HostingError as error:
                raise TargetFailed(str(error)) from error
        if branch and branch != self.options.branch:
            self._git(self.repository.delete_branch, branch)

    def verify(self, plan):
        config = self.committed_config(plan)
        if not config:
            return ServeStatus(
                False, f"{self.folder(plan)} holds no deployment", failed=True
            )
        image = config.get("image") or ""
        if image != plan.image:
            return ServeStatus(
                False,
                f"{self.folder(plan)} deploys {image or 'nothing'} now, "
                f"not {plan.image}",
                failed=True,
            )
        if not self.watching:
            return ServeStatus(False, "waiting for Argo CD to report it healthy")
        colour = dataclasses.replace(plan, key=config.get("deployment") or plan.key)
        status = self.objects.verify(colour)
        if not status.ready:
            # not there yet is not a failure: Argo CD applies at its next poll
            gone = "is gone" in status.message
            return dataclasses.replace(status, failed=status.failed and not gone)
        running = self._running_images(colour)
        if image not in running:
            return ServeStatus(
                False,
                f"the cluster runs {', '.join(sorted(running)) or 'nothing'}, "
                f"not {image} yet",
            )
        return ServeStatus(True, f"{status.message}; the cluster runs {image}")

    def _running_images(self, plan):
        """The images of the colour's Deployment on the cluster."""
        obj = self.objects._at(self.objects._owned(plan)).get(
            "apps/v1", "Deployment", self.objects.object_name(plan)
        )
        pod = (obj or {}).get("spec", {}).get("template", {}).get("spec", {})
        return {
            c.get("image")
            for c in [*pod.get("containers", []), *pod.get("initContainers", [])]
        }

    def switch_traffic(self, routes):
        """Each folder's route Service selects its one colour: committing
        moved the traffic."""

    def delete(self, plan):
        """The folder goes when it holds this deployment (undeploy); a
        colour that never reached the branch leaves nothing."""
        config = self.committed_config(plan)
        if not config or (
            config.get("deployment") != plan.key and config.get("image") != plan.image
        ):
            return
        self._git(
            self.repository.write_folder,
            self.folder(plan),
            {},
            f"Remove {plan.model_name} from {plan.environment}\n\n"
            f"Mlops-Deployment: {plan.key}",
        )

    def route_url(self, route):
        return route_url_under(self.options.public_url, route)

    def reconcile(self, plans):
        """Argo CD reconciles the cluster with the repository."""
        return Reconciliation()

    def check(self):
        info = {
            "repository": f"{self.options.branch} at "
            f"{self._git(self.repository.check)[:12]}"
        }
        if self.hosting:
            try:
                info[self.hosting.label] = self.hosting.check()["repository"]
            except git_hosting.HostingError as error:
                raise TargetFailed(str(error)) from error
        if self.watching:
            info["cluster"] = self.objects.cluster.version().get("gitVersion", "?")
        return info

    def _git(self, operation, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except GitUnavailable as error:
            raise TargetUnavailable(str(error)) from error
        except GitAuthFailed as error:
            raise TargetFailed(
                f"the repository refused the credentials: {error}"
            ) from error
        except (GitFailed, ValueError) as error:
            raise TargetFailed(str(error)) from error


def _ssh(url):
    return url.startswith("ssh://") or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


def _message(subject, approval):
    lines = [subject, ""]
    if approval.reason:
        lines += [approval.reason, ""]
    lines.append(f"Approved-by: {approval.approved_by or '?'}")
    if approval.approved_at:
        lines.append(f"Approved-at: {approval.approved_at}")
    return "\n".join(lines)


# the committed manifests, read back (tests, reviews)
def load_manifests(text):
    return [obj for obj in yaml.safe_load_all(text) if obj]
