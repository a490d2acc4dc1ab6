"""The ``kubernetes`` kind: deployments on a cluster, through its API server
(``adapters.k8s_client``), as the objects ``adapters.k8s_manifests``
renders. Plain Python: no Odoo.

- ``apply`` checks the GPUs a blue-green or canary colour adds fit the
  nodes, then server-side applies the colour's objects (a dry run of all
  first: nothing is applied unless all pass) and returns at once;
- ``verify`` reads the status back (a Deployment's ``Available`` and
  ``Progressing`` at its ``observedGeneration`` with its ready replicas; an
  InferenceService's conditions and ``modelStatus.lastFailureInfo``; pods
  crash-looping or failed), never assumed from the apply's answer;
- ``switch_traffic`` moves each route's Service selector: to one colour
  (blue-green: the idle colour keeps its pods for an instant switch back),
  or to the route's pods scaled in the canary's ratio;
- ``reconcile`` lists the objects by label (a few calls per pass, however
  many deployments) and compares: missing objects, a spec another field
  manager changed (``kubectl edit``, ``kubectl scale``), another image;
- ``delete`` removes a colour's objects by label, foreground.
"""

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

from . import image_signing, k8s_status, modelcar
from . import k8s_manifests as manifests
from . import k8s_revisions as revisions
from .k8s_client import Cluster, connect
from .k8s_options import KubernetesOptions, check
from .oci_registry import Reference, Registry, RegistryRefused, RegistryUnavailable
from .prometheus import Prometheus, PrometheusError, Queries
from .targets import (
    Capabilities,
    MetricsWindow,
    Observed,
    Reconciliation,
    ServeStatus,
    StageNotRun,
    Target,
    TargetFailed,
    TargetUnavailable,
    register,
    route_company,
    route_url_under,
)

# what the addon does on a cluster: (verb, group, resource), for Test Connection
NEEDED = [
    *[
        (verb, "apps", "deployments")
        for verb in ("get", "list", "create", "patch", "delete", "deletecollection")
    ],
    ("patch", "apps", "deployments/scale"),
    *[(verb, "", "services") for verb in ("get", "list", "create", "patch", "delete")],
    *[(verb, "", "secrets") for verb in ("get", "create", "patch", "deletecollection")],
    *[(verb, "", "configmaps") for verb in ("get", "create", "patch")],
    *[(verb, "networking.k8s.io", "networkpolicies") for verb in ("create", "patch")],
    ("list", "", "pods"),
    ("get", "", "pods/log"),
    # the canary gates without Prometheus: Triton's /metrics of each pod
    ("get", "", "pods/proxy"),
    ("list", "", "events"),
    *[
        (verb, "autoscaling", "horizontalpodautoscalers")
        for verb in ("list", "create", "patch", "deletecollection")
    ],
    *[
        (verb, "policy", "poddisruptionbudgets")
        for verb in ("list", "create", "patch", "deletecollection")
    ],
]
KSERVE_NEEDED = [
    (verb, "serving.kserve.io", "inferenceservices")
    for verb in ("get", "list", "create", "patch", "deletecollection")
]
# KServe's storage initializer takes the S3 keys through a ServiceAccount
KSERVE_S3_NEEDED = [
    (verb, "", "serviceaccounts") for verb in ("create", "patch", "deletecollection")
]
# KServe's own split: each colour's predictor kept in a ConfigMap of its own
SERVERLESS_NEEDED = [("list", "", "configmaps"), ("deletecollection", "", "configmaps")]
# a namespace per company: made by the target, found again by label
NAMESPACE_NEEDED = [(verb, "", "namespaces") for verb in ("list", "create", "patch")]
# the GPU capacity check reads every node and every namespace's pods
GPU_NEEDED = [("list", "", "nodes"), ("list", "", "pods")]
CRASHING = {"CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError"}
# an image pull that failed: retried by the kubelet, so a failure of the run
# only when the registry's answer will not change (a timeout or a 5xx may)
PULLING = {"ErrImagePull", "ImagePullBackOff"}
PULL_REFUSED = re.compile(
    r"not found|manifest unknown|unauthorized|denied|forbidden|no basic auth",
    re.IGNORECASE,
)


def _routed(obj):
    """A route's InferenceService (Serverless), not a colour's object."""
    return obj["kind"] == "InferenceService" and manifests.COLOUR_LABEL not in (
        obj["metadata"].get("labels", {})
    )


def _own_replicas(workload):
    """The replicas a colour runs when it takes its route alone."""
    annotations = workload["metadata"].get("annotations", {})
    return int(annotations.get(manifests.REPLICAS_ANNOTATION, "1"))


@register
class KubernetesTarget(Target):
    kind = "kubernetes"
    label = "Kubernetes"
    # MLOPS_TARGET_<CODE>_TOKEN: the bearer token with a server URL;
    # S3_ACCESS_KEY / S3_SECRET_KEY: the deployments' own Secret (s3 source)
    # REGISTRY_USERNAME / REGISTRY_PASSWORD: where ModelCar images are pushed
    secrets = (
        "token",
        "s3_access_key",
        "s3_secret_key",
        "registry_username",
        "registry_password",
        "prometheus_token",
        # a PEM ECDSA key the pushed images are signed with, and the public
        # key deployed images must verify with (verify_signatures)
        "signing_key",
        "signing_public_key",
    )

    Options = KubernetesOptions

    @classmethod
    def check_options(cls, options):
        return check(options)

    @classmethod
    def required_secrets(cls, options):
        """A token with a server URL (a kubeconfig or the pod's account
        carry their own), S3 keys for the S3 init container."""
        names = ["token"] if options.server_url else []
        if options.model_source == "s3":
            names += ["s3_access_key", "s3_secret_key"]
        if options.verify_signatures:
            names.append("signing_public_key")
        return tuple(names)

    @classmethod
    def capabilities(cls, options):
        plain = options.mode == "plain"
        split = 100 // options.canary_replicas if plain else 0
        if revisions.serverless(options):
            split = 1  # KServe's canaryTrafficPercent
        return Capabilities(
            formats=("onnx",),
            # a canary splits a route by replica ratio (plain mode), or by
            # KServe's own split (kserve mode, Serverless)
            traffic_step=split,
            # the gates read the colour's traffic from Prometheus, or from
            # its Triton pods through the API server (plain mode)
            analysis=plain or bool(options.prometheus_url),
            max_replicas=100,
            resources=frozenset({"cpu", "memory", "gpu"}),
            builds_images=options.model_source == "image",
            logs=True,
        )

    @classmethod
    def build(cls, context, options, secrets):
        api = connect(options, secrets.get("token"))
        cluster = Cluster(api, options.namespace, options.timeout_seconds)
        credentials = {
            "AWS_ACCESS_KEY_ID": secrets.get("s3_access_key") or "",
            "AWS_SECRET_ACCESS_KEY": secrets.get("s3_secret_key") or "",
        }
        registry = None
        if options.model_source == "image":
            registry = Registry(
                Reference.parse(f"{options.registry}/x").host,
                secrets.get("registry_username"),
                secrets.get("registry_password"),
                insecure=options.registry_insecure,
                timeout=max(60, options.timeout_seconds),
            )
        metrics = None
        if options.prometheus_url:
            defaults = Queries()
            metrics = Prometheus(
                options.prometheus_url,
                Queries(
                    options.prometheus_requests or defaults.requests,
                    options.prometheus_errors or defaults.errors,
                    options.prometheus_p95 or defaults.p95,
                ),
                timeout=options.timeout_seconds,
                token=secrets.get("prometheus_token"),
            )
        pull = {}
        if options.model_source == "image" and secrets.get("registry_username"):
            pull = {
                "username": secrets["registry_username"],
                "password": secrets.get("registry_password") or "",
            }
        return cls(
            cluster,
            options,
            credentials,
            context.owner,
            pull_credentials=pull,
            registry=registry,
            root=context.root,
            metrics=metrics,
            signer=signer_of(options, registry, secrets),
        )

    def __init__(
        self,
        cluster,
        options,
        s3_credentials=None,
        owner="",
        pull_credentials=None,
        registry=None,
        root="",
        metrics=None,
        signer=None,
    ):
        self.cluster = cluster
        self.options = options
        self.s3_credentials = s3_credentials or {}
        self.pull_credentials = pull_credentials or {}
        self.owner = owner
        self.registry = registry
        self.root = Path(root) if root else None
        self.metrics = metrics
        self.signer = signer
        # the companies' namespaces made (namespace_per_company)
        self._made = set()
        # kserve mode, Serverless: a route is the revisions of one
        # InferenceService (adapters.k8s_revisions)
        self.revisions = (
            revisions.Revisions(options, owner)
            if revisions.serverless(options)
            else None
        )

    def _managed(self):
        return manifests.managed(self.owner)

    def _routes(self):
        """The selector of the routes' Services (not the gateway's)."""
        return f"{manifests.selector(**self._managed())},{manifests.ROUTE_LABEL}"

    def _owned(self, plan):
        """``plan`` with this target's owner label."""
        if not self.owner:
            return plan
        return dataclasses.replace(plan, labels={**plan.labels, "owner": self.owner})

    # ------------------------------------------------------------------
    # Namespaces: the target's, or one per company
    # ------------------------------------------------------------------

    def namespace_of(self, company):
        """Where a company's deployments are."""
        if not self.options.namespace_per_company or not company:
            return self.options.namespace
        return manifests.company_namespace(self.options.namespace, company)

    def _at(self, plan):
        """The API server, in the plan's namespace."""
        return self.cluster.in_namespace(self.namespace_of(plan.labels.get("company")))

    def _at_route(self, route):
        return self.cluster.in_namespace(self.namespace_of(route_company(route)))

    def _namespaces(self):
        """Every namespace this target may have objects in."""
        names = [self.options.namespace]
        if self.options.namespace_per_company:
            names += [
                n["metadata"]["name"]
                for n in self.cluster.list(
                    "v1", "Namespace", selector=manifests.selector(**self._managed())
                )
            ]
        return names

    def _ensure_namespace(self, cluster):
        """A company's namespace and the policy that lets the gateway in,
        applied once per process (idempotent: server-side apply)."""
        if cluster.namespace == self.options.namespace or (
            cluster.namespace in self._made
        ):
            return
        for obj in manifests.namespace_objects(
            cluster.namespace, self.options.namespace, self.owner
        ):
            cluster.apply(obj, force=True)
        self._made.add(cluster.namespace)

    # ------------------------------------------------------------------
    # Objects
    # ------------------------------------------------------------------

    def object_name(self, plan):
        """The name of the colour's workload (and of its companions) here."""
        return manifests.colour_name(self._owned(plan))

    def service_name(self, route):
        return manifests.service_name(route, self.owner)

    def gateway_name(self):
        return manifests.gateway_name(self.owner)

    def _versions(self):
        if self.options.mode != "plain":
            return {}
        return {
            "autoscaling": self.cluster.preferred("autoscaling", ("v2", "v2beta2")),
            "policy": self.cluster.preferred("policy", ("v1", "v1beta1")),
        }

    def _workload(self):
        """What stands for a colour: its Deployment, its InferenceService,
        or (Serverless) the ConfigMap keeping its predictor."""
        if self.revisions:
            return "v1", "ConfigMap"
        if self.options.mode == "kserve":
            group, version, kind, _plural = manifests.KSERVE
            return f"{group}/{version}", kind
        return "apps/v1", "Deployment"

    def render(self, plan):
        plan = self._owned(plan)
        pull = {k: "(secret)" for k in self.pull_credentials}
        objects = self._colour_objects(plan, self._secret_values(), pull)
        if self.revisions:
            # as it is when the colour is the route's first (no cluster read)
            spec = json.loads(objects[-1]["data"][revisions.SPEC_KEY])
            objects.append(
                revisions.route_service(
                    plan.route,
                    self.owner,
                    spec,
                    self.options,
                    plan.key,
                    plan.key,
                    None,
                )  # fmt: skip
            )
        return objects

    def _colour_objects(self, plan, credentials, pull):
        """The colour's own objects; Serverless: its predictor kept in a
        ConfigMap instead of an InferenceService of its own."""
        try:
            objects = manifests.colour_objects(
                plan, self.options, self._versions(), credentials, pull
            )
            if self.revisions:
                objects[-1] = revisions.colour_spec(plan, self.options, pull)
        except ValueError as error:
            raise TargetFailed(str(error)) from error
        return objects

    def _secret_values(self):
        # placeholders in what is shown; the real ones only in apply
        return {k: "(secret)" for k in self.s3_credentials}

    # ------------------------------------------------------------------
    # Stages
    # ------------------------------------------------------------------

    def fetch_artifact(self, plan, opener):
        if self.options.model_source == "image":
            raise StageNotRun("build_image reads the stored artifact into the image")
        raise StageNotRun("the cluster's init container reads the artifact from S3")

    def _build_dir(self, plan):
        if not self.root:
            raise TargetFailed("the target has no folder to build images in")
        return self.root / "images" / plan.key

    def build_image(self, plan, opener):
        """The ModelCar's model layer, from the stored artifact (its SHA-256
        checked on the way); pushed by ``push_image``."""
        if self.options.model_source != "image":
            raise StageNotRun("the cluster reads the artifact from S3: no image")
        folder = self._build_dir(plan)
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / "artifact"
        with contextlib.suppress(FileNotFoundError):
            kept.unlink()
        with opener() as source:
            # kept for push_image, which runs as a job of its own
            try:
                os.link(source, kept)
            except OSError:
                shutil.copyfile(source, kept)
        layer = modelcar.model_layer(
            str(kept), plan.model_name, manifests.model_file(plan)
        )
        found = layer.files[str(kept)]
        if plan.artifact_sha256 and found != plan.artifact_sha256:
            kept.unlink()
            raise TargetFailed(
                f"the artifact read has SHA-256 {found}, not {plan.artifact_sha256}"
            )
        (folder / "layer.json").write_text(json.dumps(layer.to_json()))
        return (
            f"built the model layer {layer.digest} ({layer.size} bytes): "
            f"/models/{plan.model_name}/1/{manifests.model_file(plan)} on "
            f"{self.options.base_image}"
        )

    def push_image(self, plan):
        """The ModelCar pushed; returns its pinned reference and the log."""
        if self.options.model_source != "image":
            raise StageNotRun("the cluster reads the artifact from S3: no image")
        folder = self._build_dir(plan)
        try:
            built = json.loads((folder / "layer.json").read_text())
        except (OSError, ValueError):
            raise TargetFailed("build_image left no layer to push") from None
        layer = modelcar.Layer.from_json(built)
        tag = re.sub(r"[^A-Za-z0-9_.-]", "-", plan.version)[:128] or "latest"
        target = Reference.parse(f"{self.options.registry}/{plan.model_name}:{tag}")
        try:
            pushed = modelcar.push(
                self.registry,
                Reference.parse(self.options.base_image),
                target,
                layer,
                {
                    "io.creativeflow.mlops.model": plan.model_name,
                    "io.creativeflow.mlops.version": plan.version,
                    "io.creativeflow.mlops.artifact-sha256": plan.artifact_sha256,
                },
            )
        except RegistryUnavailable as error:
            raise TargetUnavailable(str(error)) from error
        except RegistryRefused as error:
            raise TargetFailed(str(error)) from error
        # in the registry now: the build's copy of the artifact goes
        shutil.rmtree(folder, ignore_errors=True)
        log = f"pushed {pushed.image} ({pushed.summary()})"
        if self.signer:
            with _registry_errors():
                log += "; " + self.signer.pushed(
                    pushed.image,
                    plan.model_name,
                    plan.version,
                    plan.artifact_sha256,
                    self.options.base_image,
                )
        return pushed.image, log

    def check_signature(self, plan):
        """The log of the image's signature verified ("" when the options
        ask none); ``TargetFailed`` when it does not verify."""
        if not self.signer:
            return ""
        with _registry_errors():
            return self.signer.check(plan.image)

    def apply(self, plan, force=False, capacity=True):
        """Dry run of every object, then apply them all; returns without
        waiting for the rollout (``verify`` does). ``capacity``: check the
        GPUs the colour's new pods need first."""
        plan = self._owned(plan)
        if self.options.model_source == "s3" and not plan.artifact_uri.startswith(
            "s3://"
        ):
            raise TargetFailed(
                "the cluster reads artifacts from S3 (model_source s3), and this "
                f"one is not there ({plan.artifact_uri.split(':', 1)[0]} store): "
                "store artifacts on an S3 backend, or build ModelCar images"
            )
        signed = self.check_signature(plan)
        warning = self.check_capacity(plan) if capacity else ""
        objects = self._objects(plan)
        cluster = self._at(plan)
        self._ensure_namespace(cluster)
        if self.revisions:
            # the route's InferenceService, both of its writers Odoo's
            # (apply and switch): forced
            route = self.revisions.render(cluster, plan, self.pull_credentials)
            if route:
                objects.append(route)
        for obj in objects:
            cluster.apply(obj, dry_run=True, force=force or _routed(obj))
        for obj in objects:
            cluster.apply(obj, force=force or _routed(obj))
        names = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objects)
        message = "; ".join(
            part
            for part in (f"applied {names} in {cluster.namespace}", signed, warning)
            if part
        )
        return ServeStatus(False, message)

    def _objects(self, plan):
        """The colour's objects with their real credentials."""
        return self._colour_objects(plan, self.s3_credentials, self.pull_credentials)

    def reapply(self, plan):
        """Apply again over what someone changed by hand: forced (Odoo's
        fields taken back), then every object another manager still holds
        fields of (a variable or a sidecar added, which Odoo never sets)
        replaced whole, so that it is again exactly what Odoo renders."""
        # the company's namespace too, should it have been deleted by hand
        self._made.discard(self._at(plan).namespace)
        status = self.apply(plan, force=True)
        replaced = []
        cluster = self._at(plan)
        for obj in self._objects(self._owned(plan)):
            if self._replace_if_foreign(cluster, obj):
                replaced.append(f"{obj['kind']} {obj['metadata']['name']}")
        if replaced:
            status.message += f"; replaced {', '.join(replaced)} whole"
        return status

    def _replace_if_foreign(self, cluster, obj, tries=5):
        """Replace ``obj`` whole when another manager holds fields of it.
        A controller writing the object between our read and our replace
        (a Deployment's revision annotation) is a conflict: read again."""
        name = obj["metadata"]["name"]
        for attempt in range(tries):
            live = cluster.get(obj["apiVersion"], obj["kind"], name)
            if not live or not k8s_status.foreign_managers(live):
                return False
            try:
                cluster.replace(obj, live["metadata"]["resourceVersion"])
                return True
            except TargetFailed as error:
                if "has been modified" not in str(error) or attempt == tries - 1:
                    raise
                time.sleep(0.2)
        return False

    def scale(self, plan):
        """A serving colour applied again at ``plan.replicas`` (the count it
        returns to, its autoscaler's minimum, a disruption budget past one
        pod); a replica count changed by hand is a conflict reported, not
        overwritten. A route split by a canary is split again by the
        ``switch_traffic`` that follows."""
        return self.apply(plan, capacity=False).message

    def check_capacity(self, plan):
        """Before a blue-green or canary colour adds GPU pods: the nodes'
        allocatable ``nvidia.com/gpu`` (those the colour may run on) minus
        what pods already request. Refused (or a warning, or not checked:
        the ``gpu_capacity`` option) when it does not fit, with the numbers."""
        gpus = int(plan.resources.get("gpu") or 0)
        if (
            not gpus
            or plan.strategy not in ("blue_green", "canary")
            or self.options.gpu_capacity == "off"
        ):
            return ""
        chosen = manifests.node_selector(plan, self.options)
        nodes = self.cluster.list(
            "v1", "Node", selector=manifests.selector(**chosen) if chosen else None
        )
        names = {n["metadata"]["name"] for n in nodes}
        allocatable = sum(
            k8s_status.gpu_count(n.get("status", {}).get("allocatable", {}))
            for n in nodes
        )
        pods = self.cluster.list(
            "v1",
            "Pod",
            fields="status.phase!=Succeeded,status.phase!=Failed",
            everywhere=True,
        )
        requested = sum(
            k8s_status.pod_gpus(pod)
            for pod in pods
            # a pod not bound yet will take GPUs somewhere: counted
            if pod["spec"].get("nodeName") in names | {None}
        )
        needed = gpus * plan.replicas
        free = allocatable - requested
        if needed <= free:
            return ""
        message = (
            f"{needed} GPUs needed ({plan.replicas} replicas x {gpus}), "
            f"{free} free: {allocatable} allocatable on {len(nodes)} nodes"
            + (f" matching {manifests.selector(**chosen)}" if chosen else "")
            + f", {requested} requested by pods already"
        )
        if self.options.gpu_capacity == "refuse":
            raise TargetFailed(f"not enough GPUs: {message}")
        return f"warning, not enough GPUs: {message}"

    def verify(self, plan):
        plan = self._owned(plan)
        api_version, kind = self._workload()
        obj = self._at(plan).get(api_version, kind, manifests.colour_name(plan))
        if obj is None:
            return ServeStatus(False, f"{kind} {manifests.colour_name(plan)} is gone",
                               failed=True)  # fmt: skip
        if self.revisions:
            status = self.revisions.verify(self._at(plan), plan)
        elif kind == "Deployment":
            status = k8s_status.deployment_status(obj)
        else:
            status = k8s_status.inference_service_status(obj)
        if status.ready or status.failed:
            return status
        problem, final = self._crashing(plan)
        if problem and final:
            return ServeStatus(False, problem, self.log_tail(plan), failed=True)
        if problem:
            return ServeStatus(False, f"{status.message}; {problem}", status.log)
        return status

    def _crashing(self, plan):
        """(what is wrong with the colour's pods, whether it is final)."""
        pods = self._at(plan).list(
            "v1",
            "Pod",
            selector=manifests.selector(
                **{manifests.COLOUR_LABEL: plan.key}, **self._managed()
            ),
        )
        for pod in pods:
            status = pod.get("status", {})
            if status.get("phase") == "Failed":
                return (
                    f"pod {pod['metadata']['name']} failed: "
                    f"{status.get('reason', '')} {status.get('message', '')}".strip(),
                    True,
                )
            for container in status.get("containerStatuses", []) + status.get(
                "initContainerStatuses", []
            ):
                waiting = container.get("state", {}).get("waiting") or {}
                reason = waiting.get("reason")
                if reason not in CRASHING | PULLING:
                    continue
                message = waiting.get("message", "")
                problem = (
                    f"pod {pod['metadata']['name']}: {container['name']} "
                    f"{reason}: {message}".strip()
                )
                return problem, reason in CRASHING or bool(PULL_REFUSED.search(message))
        return "", False

    def log_tail(self, plan):
        """The events and log tail of the colour's first pod."""
        plan = self._owned(plan)
        cluster = self._at(plan)
        try:
            pods = cluster.list(
                "v1",
                "Pod",
                selector=manifests.selector(
                    **{manifests.COLOUR_LABEL: plan.key}, **self._managed()
                ),
            )
            if not pods:
                return "no pod yet"
            pod = pods[0]["metadata"]["name"]
            events = cluster.list("v1", "Event", fields=f"involvedObject.name={pod}")
        except TargetFailed as error:
            return f"the cluster cannot be read: {error}"
        lines = [
            f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}"
            for e in events[-10:]
        ]
        return "\n".join([f"pod {pod}", *lines, cluster.log(pod, "server")]).strip()

    def switch_traffic(self, routes):
        """Every route's Service as the table says; routes gone lose their
        Service."""
        _api_version, kind = self._workload()
        for route, shares in sorted(routes.items()):
            positive = {key: percent for key, percent in shares if percent > 0}
            colour = next(iter(positive)) if len(positive) == 1 else None
            cluster = self._at_route(route)
            if self.revisions:
                # KServe makes the route's Service (its InferenceService's)
                if positive:
                    self.revisions.switch(cluster, route, positive)
                continue
            if len(positive) > 1 and kind == "Deployment":
                self._split(cluster, route, positive)
            elif kind == "Deployment":
                self._restore(cluster, route)
            service = manifests.route_service(
                route,
                colour or (None if positive else "none"),
                self.owner,
                manifests.KSERVE_PORT if kind != "Deployment" else manifests.HTTP_PORT,
            )
            self._ensure_namespace(cluster)
            cluster.apply(service, force=True)
        wanted = {
            (self._at_route(route).namespace, manifests.service_name(route, self.owner))
            for route in routes
        }
        for service in self.cluster.list(
            "v1",
            "Service",
            selector=self._routes(),
            everywhere=self.options.namespace_per_company,
        ):
            namespace = service["metadata"].get("namespace", self.options.namespace)
            name = service["metadata"]["name"]
            if (namespace, name) not in wanted:
                # nothing depends on a Service: gone at once
                self.cluster.in_namespace(namespace).delete(
                    "v1", "Service", name, "Background"
                )

    def _route_workloads(self, cluster, route):
        return cluster.list(
            "apps/v1",
            "Deployment",
            selector=manifests.selector(
                **{manifests.ROUTE_LABEL: manifests.route_label(route)},
                **self._managed(),
            ),
        )

    def _split(self, cluster, route, shares):
        """The route's colours scaled in the ratio of their shares (the
        others to zero): the Service spreads requests over the pods. The
        pods split are ``canary_replicas`` (the precision), or as many times
        that as the route's largest colour needs (a split never serves with
        fewer pods than the stable colour had); an autoscaler is pinned to
        its colour's count while the route is split, or it would undo it."""
        workloads = self._route_workloads(cluster, route)
        own = max((_own_replicas(w) for w in workloads), default=1)
        total = self.options.canary_replicas * max(
            1, math.ceil(own / self.options.canary_replicas)
        )
        counts = manifests.split_replicas(shares, total)
        autoscalers = self._route_autoscalers(cluster, route)
        for workload in workloads:
            colour = workload["metadata"]["labels"].get(manifests.COLOUR_LABEL)
            count = counts.get(colour, 0)
            self._scale(cluster, workload, count)
            if count and workload["metadata"]["name"] in autoscalers:
                self._bound(
                    cluster, autoscalers[workload["metadata"]["name"]], count, count
                )

    def _restore(self, cluster, route):
        """Colours scaled by a split return to their own replicas, and their
        autoscalers to their own bounds."""
        autoscalers = self._route_autoscalers(cluster, route)
        for workload in self._route_workloads(cluster, route):
            wanted = _own_replicas(workload)
            self._scale(cluster, workload, wanted)
            if workload["metadata"]["name"] in autoscalers:
                self._bound(
                    cluster,
                    autoscalers[workload["metadata"]["name"]],
                    wanted,
                    max(wanted, self.options.max_replicas),
                )

    def _route_autoscalers(self, cluster, route):
        """{name: HorizontalPodAutoscaler} of the route's colours."""
        if self.options.max_replicas <= 1:
            return {}  # none is ever made
        return {
            h["metadata"]["name"]: h
            for h in cluster.list(
                f"autoscaling/{self._versions()['autoscaling']}",
                "HorizontalPodAutoscaler",
                selector=manifests.selector(
                    **{manifests.ROUTE_LABEL: manifests.route_label(route)},
                    **self._managed(),
                ),
            )
        }

    def _bound(self, cluster, autoscaler, low, high):
        spec = autoscaler.get("spec", {})
        if (spec.get("minReplicas"), spec.get("maxReplicas")) == (low, high):
            return
        cluster.patch(
            f"autoscaling/{self._versions()['autoscaling']}",
            "HorizontalPodAutoscaler",
            autoscaler["metadata"]["name"],
            {"spec": {"minReplicas": low, "maxReplicas": high}},
        )

    def _scale(self, cluster, workload, replicas):
        """Scale a colour, noting the count on it: reconciliation tells a
        count Odoo chose from one changed by hand."""
        annotations = workload["metadata"].get("annotations", {})
        if workload["spec"].get("replicas") != replicas or annotations.get(
            manifests.SCALED_ANNOTATION
        ) != str(replicas):
            cluster.patch(
                "apps/v1",
                "Deployment",
                workload["metadata"]["name"],
                {
                    "metadata": {
                        "annotations": {manifests.SCALED_ANNOTATION: str(replicas)}
                    },
                    "spec": {"replicas": replicas},
                },
            )

    def delete(self, plan):
        plan = self._owned(plan)
        if self.revisions:
            self.revisions.forget(self._at(plan), plan.route, plan.key)
        self._remove(self._at(plan), plan.key)
        if self.root:
            # a build whose push never happened
            shutil.rmtree(self._build_dir(plan), ignore_errors=True)

    def remove_stray(self, key):
        """Every object of the colour, in whichever of the target's
        namespaces it is."""
        for namespace in self._namespaces():
            cluster = self.cluster.in_namespace(namespace)
            if self.revisions:
                self.revisions.forget_everywhere(cluster, key)
            self._remove(cluster, key)

    def _remove(self, cluster, key):
        """Every object of the colour in ``cluster``'s namespace, by label,
        foreground."""
        chosen = manifests.selector(**{manifests.COLOUR_LABEL: key}, **self._managed())
        api_version, kind = self._workload()
        cluster.delete_by_label(api_version, kind, chosen)
        if kind == "Deployment":
            versions = self._versions()
            cluster.delete_by_label(
                f"autoscaling/{versions['autoscaling']}",
                "HorizontalPodAutoscaler",
                chosen,
            )
            cluster.delete_by_label(
                f"policy/{versions['policy']}", "PodDisruptionBudget", chosen
            )
        else:
            cluster.delete_by_label("v1", "ServiceAccount", chosen)
        cluster.delete_by_label("v1", "Secret", chosen)

    def route_url(self, route):
        return route_url_under(self.options.public_url, route)

    # ------------------------------------------------------------------
    # Metrics (the canary gates)
    # ------------------------------------------------------------------

    def reading(self, plan):
        """With Prometheus, a reading is a moment (it keeps the counters);
        without, the counters of the colour's pods, each read through the
        API server's proxy (one request per pod)."""
        if self.metrics:
            return {"at": time.time()}
        if self.options.mode != "plain":
            raise TargetFailed(
                "no metrics source: set the target's prometheus_url for canaries"
            )
        plan = self._owned(plan)
        cluster = self._at(plan)
        pods = cluster.list(
            "v1",
            "Pod",
            selector=manifests.selector(
                **{manifests.COLOUR_LABEL: plan.key}, **self._managed()
            ),
            fields="status.phase=Running",
        )
        counters = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            text = cluster.proxy_get(name, manifests.METRICS_PORT, "/metrics")
            counters[name] = k8s_status.triton_counters(text)
        return {"at": time.time(), "pods": counters}

    def analysis(self, plan, since):
        if not self.metrics:
            now = self.reading(plan)
            total, errors, p95 = k8s_status.pods_window(
                since.get("pods", {}), now["pods"]
            )
            return total, errors, p95, now
        now = time.time()
        pods = f"{self.object_name(plan)}-.*"
        if self.revisions:
            # the colour's revision's pods, as KServe named them
            revision = self.revisions.revision(self._at(plan), self._owned(plan))
            if not revision:
                raise TargetFailed(f"{plan.key} has no revision noted yet")
            pods = f"{revision}-deployment-.*"
        selector = f'namespace="{self._at(plan).namespace}",pod=~"{pods}"'

        try:
            total, errors, p95 = self.metrics.window(selector, since["at"], now)
        except PrometheusError as error:
            if error.transient:
                raise TargetUnavailable(str(error)) from error
            raise TargetFailed(str(error)) from error
        return total, errors, p95, {"at": now}

    def window(self, plan, since):
        """What the gates read, kept: requests, failures (as 5xx) and p95."""
        total, errors, p95, now = self.analysis(plan, since)
        return MetricsWindow(requests=total, errors_5xx=errors, p95=p95), now

    def publish_key_table(self, table):
        """The invoke-key gateway with every route's keys (its ConfigMap,
        Deployment and Service): a key revoked or expired is refused once
        the gateway's pods have rolled (seconds). Always sent, never
        remembered: another worker may have applied a newer table since,
        and server-side apply of what the cluster holds changes nothing."""
        objects = manifests.gateway_objects(
            self.options.namespace,
            table,
            self.options,
            self.owner,
            route_namespace=lambda route: self._at_route(route).namespace,
        )
        for obj in objects:
            self.cluster.apply(obj, force=True)

    # ------------------------------------------------------------------
    # Reconciliation
    # ------------------------------------------------------------------

    def reconcile(self, plans):
        """Desired against actual, in a constant number of list calls."""
        before = dict(self.cluster.calls)
        managed = manifests.selector(**self._managed())
        api_version, kind = self._workload()
        # one namespace, or every company's: one list call either way
        everywhere = self.options.namespace_per_company
        workloads = {
            w["metadata"]["labels"].get(manifests.COLOUR_LABEL): w
            for w in self.cluster.list(
                api_version, kind, selector=managed, everywhere=everywhere
            )
        }
        services = {
            (s["metadata"].get("namespace"), s["metadata"]["name"])
            for s in self.cluster.list(
                "v1", "Service", selector=self._routes(), everywhere=everywhere
            )
        }
        autoscalers = set()
        if kind == "Deployment" and any(
            self.options.max_replicas > plan.replicas for plan in plans
        ):
            autoscalers = {
                h["metadata"]["labels"].get(manifests.COLOUR_LABEL)
                for h in self.cluster.list(
                    f"autoscaling/{self._versions()['autoscaling']}",
                    "HorizontalPodAutoscaler",
                    selector=managed,
                    everywhere=everywhere,
                )
            }
        routes = {}
        if self.revisions:
            # Serverless: the routes' InferenceServices, one list
            routes = {
                (r["metadata"].get("namespace"), r["metadata"]["name"]): r
                for r in self.revisions.routes(self.cluster, everywhere)
            }
        result = Reconciliation()
        for plan in map(self._owned, plans):
            workload = workloads.get(plan.key)
            if workload is None or workload["metadata"].get("deletionTimestamp"):
                result.observed[plan.key] = Observed(
                    "missing", f"{kind} {manifests.colour_name(plan)} is gone"
                )
                continue
            if (
                kind == "Deployment"
                and self.options.max_replicas > plan.replicas
                and plan.key not in autoscalers
            ):
                result.observed[plan.key] = Observed(
                    "missing",
                    f"HorizontalPodAutoscaler {manifests.colour_name(plan)} is gone",
                )
                continue
            if self.revisions:
                result.observed[plan.key] = self._route_observed(plan, routes)
                continue
            result.observed[plan.key] = k8s_status.compare(
                plan,
                workload,
                # an InferenceService's replicas are KServe's; an HPA's its own
                scales_itself=kind != "Deployment" or plan.key in autoscalers,
            )
            if (
                self._at(plan).namespace,
                manifests.service_name(plan.route, self.owner),
            ) not in services:
                result.republish = True
        wanted = {plan.key for plan in plans}
        for colour, workload in workloads.items():
            if colour and colour not in wanted:
                result.strays[colour] = k8s_status.epoch(
                    workload["metadata"].get("creationTimestamp")
                )
        after = self.cluster.calls
        result.requests = {
            k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)
        }
        return result

    def _route_observed(self, plan, routes):
        """Serverless: the colour as its route's InferenceService says."""
        name = manifests.service_name(plan.route, self.owner)
        live = routes.get((self._at(plan).namespace, name))
        if live is None:
            return Observed("missing", f"InferenceService {name} is gone")
        changed = k8s_status.foreign_managers(live)
        for manager, fields_changed in changed.items():
            return Observed(
                "drifted",
                f"{manager} changed {', '.join(fields_changed[:5]) or 'the spec'}",
            )
        return Observed("in_sync")

    def check(self):
        """The server's version, and every verb the addon needs that the
        credentials may not use, by name (SelfSubjectAccessReview)."""
        version = self.cluster.version().get("gitVersion", "?")
        try:
            namespace = self.cluster.get("v1", "Namespace", self.options.namespace)
        except TargetFailed:
            namespace = True  # not readable with these credentials: not needed
        kserve = self.options.mode == "kserve"
        # a namespace per company: the verbs in every namespace, as the
        # companies' namespaces are made when first needed
        here = not self.options.namespace_per_company
        needed = [
            *((*verb, here) for verb in NEEDED),
            *((*verb, here) for verb in (KSERVE_NEEDED if kserve else [])),
            *((*verb, here) for verb in (SERVERLESS_NEEDED if self.revisions else [])),
            *((*verb, False) for verb in ([] if here else NAMESPACE_NEEDED)),
            *(
                (*verb, here)
                for verb in (
                    KSERVE_S3_NEEDED
                    if kserve and self.options.model_source == "s3"
                    else []
                )
            ),
            *(
                (*verb, False)
                for verb in (GPU_NEEDED if self.options.gpu_capacity != "off" else [])
            ),
        ]
        refused = []
        for verb, group, resource, namespaced in needed:
            name, _, sub = resource.partition("/")
            if not self.cluster.allowed(verb, group, name, sub, namespaced):
                refused.append(
                    f"{verb} {resource}"
                    + (f".{group}" if group else "")
                    + ("" if namespaced else " (cluster-wide)")
                )
        info = {
            "server": version,
            "namespace": self.options.namespace
            + ("" if namespace else " (missing: create it)")
            + ("" if here else " (and one per company)"),
            "mode": self.options.mode,
        }
        if refused or not namespace:
            problems = ([f"refused: {', '.join(refused)}"] if refused else []) + (
                [] if namespace else [f"namespace {self.options.namespace} missing"]
            )
            raise TargetFailed(f"Kubernetes {version}: " + "; ".join(problems))
        info["access"] = f"all {len(needed)} verbs allowed"
        return info


def signer_of(options, registry, secrets):
    """The ``image_signing.Signer`` of a target building images, or None."""
    if options.model_source != "image" or registry is None:
        return None
    return image_signing.Signer(
        registry,
        private_key=secrets.get("signing_key") or "",
        public_key=secrets.get("signing_public_key") or "",
        required=options.verify_signatures,
    )


@contextlib.contextmanager
def _registry_errors():
    """A registry out of reach is worth trying again; a signature that
    does not verify, or a registry that says no, fails the stage."""
    try:
        yield
    except RegistryUnavailable as error:
        raise TargetUnavailable(str(error)) from error
    except (RegistryRefused, image_signing.SignatureInvalid) as error:
        raise TargetFailed(str(error)) from error
