"""The ``kubernetes`` kind's options (a target's options JSON), and the
checks the kind makes of them beyond their types. Plain Python: no Odoo."""

from dataclasses import dataclass, field

from . import k8s_manifests as manifests
from .oci_registry import Reference

MODES = ("plain", "kserve")
SOURCES = ("s3", "image")
GPU_POLICIES = ("refuse", "warn", "off")
# KServe's names for its modes, before 0.15 and after
KSERVE_MODES = ("", "RawDeployment", "Standard", "Serverless", "Knative")


def _str(help_text, default=""):
    return field(default=default, metadata={"type": str, "help": help_text})


def _int(help_text, default):
    return field(default=default, metadata={"type": int, "help": help_text})


def _bool(help_text, default):
    return field(default=default, metadata={"type": bool, "help": help_text})


@dataclass
class KubernetesOptions:
    namespace: str = _str("a namespace name", "mlops")
    namespace_per_company: bool = _bool(
        "true: each company's deployments in <namespace>-c<company id>, made"
        " when first needed (the gateway stays in namespace)",
        False,
    )
    mode: str = _str("plain or kserve", "plain")
    server_url: str = _str("the API server's https URL (with the token secret)")
    kubeconfig: str = _str("a kubeconfig path on Odoo's machine")
    context: str = _str("a context of the kubeconfig")
    in_cluster: bool = _bool("true when Odoo runs in the cluster", False)
    verify_tls: bool = _bool("true or false", True)
    ca_file: str = _str("the API server's CA certificate, a path")
    public_url: str = _str("the gateway's base URL that serves the routes")
    server_image: str = _str("the OIP v2 server image (Triton by default)")
    model_source: str = _str("s3 or image (a ModelCar)", "s3")
    s3_image: str = _str("the image of the S3 init container")
    s3_endpoint: str = _str(
        "the S3 endpoint as the cluster's pods reach it, http(s)://host[:port]"
        " (empty: AWS)"
    )
    s3_region: str = _str("the S3 region, or empty")
    registry: str = _str(
        "where ModelCar images go: host[:port]/prefix (model_source image)"
    )
    base_image: str = _str(
        "the ModelCar base (a shell with ln and sleep) on the same registry"
    )
    registry_insecure: bool = _bool("true for a plain-http registry", False)
    verify_signatures: bool = _bool(
        "refuse to deploy an image whose cosign signature does not verify with"
        " the secret signing_public_key (model_source image)",
        False,
    )
    image_pull_secret: str = _str(
        "a dockerconfigjson Secret of the namespace the pods pull ModelCar images"
        " with (empty: one made per deployment from the registry credentials)"
    )
    node_selector: dict = field(
        default_factory=dict, metadata={"type": dict, "help": "labels"}
    )
    tolerations: list = field(
        default_factory=list, metadata={"type": list, "help": "tolerations"}
    )
    max_replicas: int = _int("an integer from 1 to 100", 1)
    target_cpu_percent: int = _int("a percentage from 1 to 100", 70)
    canary_replicas: int = _int("an integer from 2 to 100", 10)
    gpu_capacity: str = _str("refuse, warn or off", "refuse")
    kserve_runtime: str = _str("a ServingRuntime name, or empty")
    kserve_deployment_mode: str = _str(
        "RawDeployment (Standard), Serverless (Knative: KServe's own canary"
        " split) or empty",
        "RawDeployment",
    )
    timeout_seconds: int = _int("seconds, from 1 to 120", 10)
    # the invoke-key gateway in front of the routes (adapters.gateway)
    gateway_image: str = _str("the gateway's HAProxy image")
    gateway_replicas: int = _int("an integer from 1 to 20", 2)
    # the canary gates' metrics (adapters.prometheus); none: no canary here
    prometheus_url: str = _str("a Prometheus HTTP API's base URL, or empty")
    prometheus_requests: str = _str("a PromQL template ({selector}, {window})")
    prometheus_errors: str = _str("a PromQL template ({selector}, {window})")
    prometheus_p95: str = _str("a PromQL template in seconds ({selector})")


def check(options):
    """{option: problem} beyond the types; empty when all is well."""
    problems = {}
    if not dns_label(options.namespace):
        problems["namespace"] = "a DNS label: a-z, 0-9 and -, 63 at most"
    elif options.namespace_per_company and len(options.namespace) > 50:
        # room for the company's suffix, -c<id>
        problems["namespace"] = "50 characters at most with namespace_per_company"
    if options.mode not in MODES:
        problems["mode"] = " or ".join(MODES)
    if options.model_source not in SOURCES:
        problems["model_source"] = " or ".join(SOURCES)
    if options.kserve_deployment_mode not in KSERVE_MODES:
        problems["kserve_deployment_mode"] = ", ".join(
            m or "empty" for m in KSERVE_MODES
        )
    if options.gpu_capacity not in GPU_POLICIES:
        problems["gpu_capacity"] = ", ".join(GPU_POLICIES)
    ways = [
        bool(options.server_url),
        bool(options.kubeconfig),
        options.in_cluster,
    ]
    if sum(ways) != 1:
        problems["server_url"] = (
            "one of server_url (with the token secret), kubeconfig or in_cluster"
        )
    if options.model_source == "image":
        problems.update(check_registry(options))
    elif options.verify_signatures:
        problems["verify_signatures"] = "only images are signed: model_source image"
    if options.s3_endpoint and not options.s3_endpoint.startswith(
        ("http://", "https://")
    ):
        problems["s3_endpoint"] = "an http:// or https:// URL"
    if options.server_url and not options.server_url.startswith("https://"):
        problems["server_url"] = "an https:// URL"
    for name, low, high in (
        ("max_replicas", 1, 100),
        ("target_cpu_percent", 1, 100),
        ("canary_replicas", 2, 100),
        ("timeout_seconds", 1, 120),
        ("gateway_replicas", 1, 20),
    ):
        if not low <= getattr(options, name) <= high:
            problems[name] = f"from {low} to {high}"
    if options.prometheus_url and not options.prometheus_url.startswith(
        ("http://", "https://")
    ):
        problems["prometheus_url"] = "an http(s) URL"
    if not options.public_url.startswith(("http://", "https://")):
        # the invoke URLs: where the gateway in front of the cluster
        # serves the routes
        problems["public_url"] = "the gateway's http(s) URL"
    return problems


def check_registry(options):
    problems = {}
    try:
        registry = Reference.parse(f"{options.registry}/x")
    except ValueError:
        problems["registry"] = "host[:port]/prefix, e.g. registry.example.com/mlops"
        return problems
    try:
        base = Reference.parse(options.base_image)
    except ValueError:
        problems["base_image"] = "an image reference: host[:port]/repository:tag"
        return problems
    if base.host != registry.host:
        # its layers are mounted, never copied across registries
        problems["base_image"] = f"an image of {registry.host}, as registry"
    return problems


def dns_label(name):
    return bool(name) and len(name) <= 63 and manifests.dns_name(name) == name
