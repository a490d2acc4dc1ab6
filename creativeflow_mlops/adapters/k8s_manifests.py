"""The Kubernetes objects of a deployment colour, rendered in plain Python
(no ORM, no cluster): what ``target_kubernetes`` applies, and what the
tests validate against Kubernetes' own schemas.

One colour (a deployment of a version) is a workload and its companions:

- ``plain`` mode: a Deployment running an Open Inference Protocol v2 server
  (Triton by default) that reads the model from the ModelCar image (an init
  container copies its ``/models`` into an emptyDir) or from S3 (an init
  container with the deployment's own Secret), a HorizontalPodAutoscaler
  when it may scale past its replicas, a PodDisruptionBudget when it runs
  more than one pod;
- ``kserve`` mode: an InferenceService (``serving.kserve.io/v1beta1``) with
  ``predictor.model`` (``modelFormat``, ``protocolVersion: v2``,
  ``storageUri`` ``oci://`` or ``s3://``), its resources and replicas, our
  labels on its pods.

A route (a model's environment) is one Service whose selector the target
moves: to one colour's pods (a blue-green switch is one patch of the
selector), or to the route's pods when a canary splits it by replica ratio.

Every object carries the labels ``LABELS`` names, so that reconciliation
lists them by selector (a few calls per pass) and undeploy deletes them by
label.
"""

import base64
import hashlib
import json
import re

from . import gateway

MANAGER = "creativeflow-mlops"
GROUP = "mlops.creativeflow.io"
MANAGED_BY = {"app.kubernetes.io/managed-by": MANAGER}
# the plan's labels, as label keys
LABELS = {
    name: f"{GROUP}/{name}"
    for name in ("model", "version", "deployment", "environment", "company")
}
ROUTE_LABEL = f"{GROUP}/route"
# which Odoo database and target applied it: two Odoos sharing a namespace
# never take each other's objects for strays
OWNER_LABEL = f"{GROUP}/owner"
COLOUR_LABEL = f"{GROUP}/colour"
# the replicas a colour runs when it takes a route alone (a canary's split
# scales colours; this is what they return to)
REPLICAS_ANNOTATION = f"{GROUP}/replicas"
# the replicas Odoo last scaled a colour to (a canary's split, or back)
SCALED_ANNOTATION = f"{GROUP}/scaled-to"
GPU = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HTTP_PORT = 8000
METRICS_PORT = 8002
# where KServe's predictor container listens
KSERVE_PORT = 8080
MODELS_DIR = "/mnt/models"
# where a ModelCar image keeps the model repository (KServe's contract)
MODELCAR_DIR = "/models"
KSERVE = ("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices")
DEFAULT_SERVER_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
DEFAULT_S3_IMAGE = "docker.io/amazon/aws-cli:2.22.0"
# the formats KServe names (modelFormat.name) for ours
KSERVE_FORMATS = {
    "onnx": "onnx",
    "tensorflow_savedmodel": "tensorflow",
    "pytorch_torchscript": "pytorch",
}
_NAME = re.compile(r"[^a-z0-9-]+")


def dns_name(text, limit=63):
    """A DNS-1035 label: lowercase letters, digits and dashes, starting with
    a letter; too long, it is cut and keeps a hash of the whole."""
    name = _NAME.sub("-", text.lower()).strip("-") or "x"
    if not name[0].isalpha():
        name = f"x{name}"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-')}-{digest}"
    return name


def _named(base, owner):
    """An object's name: ``base`` and its owner's first characters, so that
    two targets (or two Odoos) sharing a namespace never write each other's
    objects."""
    return dns_name(f"{base}-{owner[:8]}" if owner else base)


def colour_name(plan):
    return colour_key_name(plan.key, plan.labels.get("owner", ""))


def colour_key_name(key, owner=""):
    """``colour_name`` of the colour ``key`` when only its key is known."""
    return _named(f"mlops-{key}", owner)


def route_label(route):
    """The route as a label value (its objects are selected by it and by
    their owner's label)."""
    return dns_name(route)


def service_name(route, owner=""):
    return _named(route, owner)


def secret_name(plan):
    return _named(f"mlops-{plan.key}-s3", plan.labels.get("owner", ""))


def gateway_name(owner=""):
    return _named("mlops-gateway", owner)


def pull_secret_name(plan):
    return _named(f"mlops-{plan.key}-pull", plan.labels.get("owner", ""))


def managed(owner=""):
    """The labels of everything one target applied."""
    return {**MANAGED_BY, OWNER_LABEL: owner} if owner else dict(MANAGED_BY)


def labels(plan):
    """The colour's labels: who manages it (``owner``: the plan's label of
    that name), its route and colour, and the plan's model, version,
    deployment, environment and company."""
    values = {
        **managed(plan.labels.get("owner", "")),
        ROUTE_LABEL: route_label(plan.route),
        COLOUR_LABEL: plan.key,
    }
    for name, key in LABELS.items():
        if plan.labels.get(name):
            values[key] = label_value(plan.labels[name])
    return values


def label_value(text):
    """A label value: 63 characters of letters, digits, - _ . at most."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-_.")
    return value[:63].rstrip("-_.")


def selector(**match):
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


def _quantity_resources(plan):
    """requests and limits: CPU and memory as asked (limits equal to
    requests: a model server is a guaranteed-QoS pod), GPUs as a limit and
    a request (Kubernetes requires them equal)."""
    wanted = {}
    if plan.resources.get("cpu"):
        wanted["cpu"] = plan.resources["cpu"]
    if plan.resources.get("memory"):
        wanted["memory"] = plan.resources["memory"]
    if plan.resources.get("gpu"):
        wanted[GPU] = str(plan.resources["gpu"])
    return {"requests": dict(wanted), "limits": dict(wanted)} if wanted else {}


def node_selector(plan, options):
    chosen = dict(options.node_selector or {})
    if plan.resources.get("gpu_type"):
        chosen[GPU_PRODUCT_LABEL] = plan.resources["gpu_type"]
    return chosen


def _security():
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _probe(path, period, failures):
    return {
        "httpGet": {"path": path, "port": HTTP_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _model_source(plan, options):
    """The init container that puts the model repository in ``/mnt/models``,
    and the volumes it needs."""
    if options.model_source == "image":
        if not plan.image:
            raise ValueError("the ModelCar image is not built yet")
        # the ModelCar's own shell copies its /models (KServe's contract:
        # the image has a shell)
        return {
            "name": "modelcar",
            "image": plan.image,
            "command": ["sh", "-c", f"cp -r {MODELCAR_DIR}/. {MODELS_DIR}/"],
            "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}],
            "securityContext": _security(),
        }
    target = f"{MODELS_DIR}/{plan.model_name}/1/{model_file(plan)}"
    return {
        "name": "fetch-model",
        "image": options.s3_image or DEFAULT_S3_IMAGE,
        "command": ["sh", "-c", 'aws s3 cp "$ARTIFACT_URI" "$MODEL_PATH"'],
        "env": [
            {"name": "ARTIFACT_URI", "value": plan.artifact_uri},
            {"name": "MODEL_PATH", "value": target},
            {"name": "HOME", "value": "/tmp"},
            *_s3_environment(options),
        ],
        "envFrom": [{"secretRef": {"name": secret_name(plan)}}],
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _security(),
    }


def _s3_environment(options):
    """The AWS CLI's endpoint and region (``AWS_ENDPOINT_URL``: a MinIO or
    SeaweedFS in or beside the cluster)."""
    values = []
    if options.s3_endpoint:
        values.append({"name": "AWS_ENDPOINT_URL", "value": options.s3_endpoint})
    if options.s3_region:
        values.append({"name": "AWS_DEFAULT_REGION", "value": options.s3_region})
    return values


def model_file(plan):
    """The file name Triton's model repository expects for the format."""
    return {"onnx": "model.onnx", "pytorch_torchscript": "model.pt"}.get(
        plan.model_format, plan.artifact_filename
    )


def deployment(plan, options, replicas=None, pull=None):
    """The colour's Deployment (plain mode)."""
    name = colour_name(plan)
    pod_labels = labels(plan)
    server = {
        "name": "server",
        "image": options.server_image or DEFAULT_SERVER_IMAGE,
        "args": [
            "tritonserver",
            f"--model-repository={MODELS_DIR}",
            f"--http-port={HTTP_PORT}",
            "--allow-grpc=false",
            "--strict-readiness=true",
            # the canary gates' p95 (adapters.prometheus)
            "--metrics-config=summary_latencies=true",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/v2/health/ready", 5, 120),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _security(),
    }
    resources = _quantity_resources(plan)
    if resources:
        server["resources"] = resources
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "initContainers": [_model_source(plan, options)],
        "containers": [server],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    pulls = _pull_secrets(plan, options, pull)
    if pulls:
        pod["imagePullSecrets"] = pulls
    chosen = node_selector(plan, options)
    if chosen:
        pod["nodeSelector"] = chosen
    if options.tolerations:
        pod["tolerations"] = list(options.tolerations)
    count = plan.replicas if replicas is None else replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": pod_labels,
            "annotations": {REPLICAS_ANNOTATION: str(plan.replicas)},
        },
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": _colour_selector(plan)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    # where Prometheus finds the server's metrics
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                    },
                },
                "spec": pod,
            },
        },
    }


def s3_secret(plan, credentials, options):
    """The deployment's own Secret for the S3 init container, annotated as
    KServe's storage initializer reads it (endpoint, https, region)."""
    annotations = {}
    if options.s3_endpoint:
        scheme, _sep, host = options.s3_endpoint.partition("://")
        annotations[f"{KSERVE[0]}/s3-endpoint"] = host.rstrip("/")
        annotations[f"{KSERVE[0]}/s3-usehttps"] = "1" if scheme == "https" else "0"
    if options.s3_region:
        annotations[f"{KSERVE[0]}/s3-region"] = options.s3_region
    metadata = {"name": secret_name(plan), "labels": labels(plan)}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": dict(credentials),
    }


def pull_secret(plan, pull):
    """The colour's registry credentials as the kubelet reads them
    (``kubernetes.io/dockerconfigjson``) for its ModelCar image's host."""
    host = plan.image.split("/", 1)[0]
    token = base64.b64encode(f"{pull['username']}:{pull['password']}".encode())
    config = {
        "auths": {
            host: {
                "username": pull["username"],
                "password": pull["password"],
                "auth": token.decode(),
            }
        }
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": pull_secret_name(plan), "labels": labels(plan)},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json.dumps(config, sort_keys=True)},
    }


def _pull_secrets(plan, options, pull):
    """The pod's imagePullSecrets: the one named by the target, or the
    colour's own when the registry has credentials."""
    if options.model_source != "image":
        return []
    if options.image_pull_secret:
        return [{"name": options.image_pull_secret}]
    if pull and pull.get("username"):
        return [{"name": pull_secret_name(plan)}]
    return []


def service_account(plan):
    """KServe mode with S3: the predictor's ServiceAccount, which names the
    Secret its storage initializer takes the keys from."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": colour_name(plan), "labels": labels(plan)},
        "secrets": [{"name": secret_name(plan)}],
        "automountServiceAccountToken": False,
    }


def autoscaler(plan, options, version="v2"):
    """A HorizontalPodAutoscaler on CPU for a colour that may scale past
    its replicas (``autoscaling/v2``, or ``v2beta2`` on older clusters)."""
    return {
        "apiVersion": f"autoscaling/{version}",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": colour_name(plan), "labels": labels(plan)},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": colour_name(plan),
            },
            "minReplicas": plan.replicas,
            "maxReplicas": max(plan.replicas, options.max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": options.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def disruption_budget(plan, version="v1"):
    """At most one pod of the colour down at a time (``policy/v1``, or
    ``v1beta1`` on older clusters)."""
    return {
        "apiVersion": f"policy/{version}",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": colour_name(plan), "labels": labels(plan)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": _colour_selector(plan)},
        },
    }


def inference_service(plan, options, pull=None):
    """The colour's InferenceService (kserve mode)."""
    if options.model_source == "image":
        if not plan.image:
            raise ValueError("the ModelCar image is not built yet")
        storage = f"oci://{plan.image}"
    else:
        storage = plan.artifact_uri
    model = {
        "modelFormat": {
            "name": KSERVE_FORMATS.get(plan.model_format, plan.model_format)
        },
        "protocolVersion": "v2",
        "storageUri": storage,
    }
    if options.kserve_runtime:
        model["runtime"] = options.kserve_runtime
    resources = _quantity_resources(plan)
    if resources:
        model["resources"] = resources
    predictor = {
        "minReplicas": plan.replicas,
        "maxReplicas": max(plan.replicas, options.max_replicas),
        "labels": labels(plan),
        "model": model,
    }
    if options.model_source == "s3":
        predictor["serviceAccountName"] = colour_name(plan)
    pulls = _pull_secrets(plan, options, pull)
    if pulls:
        predictor["imagePullSecrets"] = pulls
    chosen = node_selector(plan, options)
    if chosen:
        predictor["nodeSelector"] = chosen
    if options.tolerations:
        predictor["tolerations"] = list(options.tolerations)
    annotations = {REPLICAS_ANNOTATION: str(plan.replicas)}
    if options.kserve_deployment_mode:
        annotations["serving.kserve.io/deploymentMode"] = options.kserve_deployment_mode
    return {
        "apiVersion": f"{KSERVE[0]}/{KSERVE[1]}",
        "kind": KSERVE[2],
        "metadata": {
            "name": colour_name(plan),
            "labels": labels(plan),
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def _colour_selector(plan):
    return {COLOUR_LABEL: plan.key, **managed(plan.labels.get("owner", ""))}


def route_service(route, colour=None, owner="", port=HTTP_PORT):
    """The route's Service: to ``colour``'s pods only, or (None) to every
    pod of the route, in the proportion of their replicas; ``port``: the
    servers' (``KSERVE_PORT`` for KServe's predictors)."""
    chosen = {ROUTE_LABEL: route_label(route), **managed(owner)}
    if colour:
        chosen[COLOUR_LABEL] = colour
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(route, owner),
            "labels": {**managed(owner), ROUTE_LABEL: route_label(route)},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": chosen,
            "ports": [
                {"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}
            ],
        },
    }


GATEWAY_PORT = 8080
DEFAULT_GATEWAY_IMAGE = "docker.io/library/haproxy:2.6"


def gateway_objects(namespace, table, options, owner="", route_namespace=None):
    """The invoke-key gateway on the cluster (``adapters.gateway``): its
    configuration and maps in a ConfigMap (key hashes only), a Deployment
    of HAProxy whose pod template carries their checksum (a key published
    rolls the gateway's pods), the NetworkPolicy that lets only it reach
    the routes' pods, and the Service the target's public URL points at.
    ``table``: {route: (allowed, elsewhere)}; ``route_namespace``: where a
    route's Service is (the gateway's own namespace when not given)."""
    where = route_namespace or (lambda _route: namespace)
    upstreams = {
        route: f"{service_name(route, owner)}.{where(route)}.svc.cluster.local:80"
        for route in table
    }
    files = {
        "haproxy.cfg": gateway.render_config(
            f"0.0.0.0:{GATEWAY_PORT}", upstreams, "/etc/gateway", resolvers=True
        ),
        **gateway.render_maps(table),
    }
    name = gateway_name(owner)
    common = gateway_labels(owner)
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "haproxy",
                "image": options.gateway_image or DEFAULT_GATEWAY_IMAGE,
                "args": ["haproxy", "-W", "-f", "/etc/gateway/haproxy.cfg"],
                "ports": [
                    {"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/__mlops/generation", "port": GATEWAY_PORT},
                    "periodSeconds": 5,
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/gateway", "readOnly": True},
                    {"name": "run", "mountPath": "/var/run"},
                ],
                "securityContext": _security(),
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": name}},
            {"name": "run", "emptyDir": {}},
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": common},
            "data": files,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": common},
            "spec": {
                "replicas": options.gateway_replicas,
                "selector": {"matchLabels": common},
                "template": {
                    "metadata": {
                        "labels": common,
                        "annotations": {f"{GROUP}/config": gateway.checksum(files)},
                    },
                    "spec": pod,
                },
            },
        },
        network_policy(name, common, owner),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": common},
            "spec": {
                "type": "ClusterIP",
                "selector": common,
                "ports": [
                    {
                        "name": "http",
                        "port": 80,
                        "targetPort": GATEWAY_PORT,
                        "protocol": "TCP",
                    }
                ],
            },
        },
    ]


def gateway_labels(owner=""):
    return {**managed(owner), f"{GROUP}/component": "gateway"}


def company_namespace(base, company):
    """Where a company's deployments go (``namespace_per_company``)."""
    return f"{base}-c{company}"


def namespace_objects(namespace, base, owner=""):
    """A company's namespace, made by the target (labelled as its own, so
    undeploying a colour finds it), and the NetworkPolicy that lets the
    gateway in ``base`` reach its routes' pods. The namespace is selected
    by ``kubernetes.io/metadata.name``, which the API server sets on every
    namespace from Kubernetes 1.21 (label ``base`` so by hand before)."""
    policy = network_policy(
        gateway_name(owner), gateway_labels(owner), owner, gateway_namespace=base
    )
    policy["metadata"]["labels"] = managed(owner)
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": managed(owner)},
        },
        policy,
    ]


def network_policy(name, allowed, owner="", gateway_namespace=""):
    """The routes' pods take calls only from the gateway's (a pod elsewhere
    in the cluster cannot go round the keys), and metrics from anyone
    (Prometheus). Enforced where the cluster's network plugin enforces
    NetworkPolicies. ``gateway_namespace``: the gateway's, when the routes
    are in another."""
    source = {"podSelector": {"matchLabels": allowed}}
    if gateway_namespace:
        source["namespaceSelector"] = {
            "matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}
        }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": allowed},
        "spec": {
            "podSelector": {
                "matchLabels": managed(owner),
                "matchExpressions": [{"key": ROUTE_LABEL, "operator": "Exists"}],
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [source],
                    "ports": [
                        {"protocol": "TCP", "port": HTTP_PORT},
                        {"protocol": "TCP", "port": KSERVE_PORT},
                    ],
                },
                {"ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }


def colour_objects(plan, options, versions, credentials=None, pull=None):
    """Every object of one colour, in the order they are applied.
    ``credentials``: the S3 keys; ``pull``: the registry's username and
    password (model_source image)."""
    objects = []
    if options.model_source == "s3":
        objects.append(s3_secret(plan, credentials or {}, options))
    elif _pull_secrets(plan, options, pull) and not options.image_pull_secret:
        objects.append(pull_secret(plan, pull))
    if options.mode == "kserve":
        if options.model_source == "s3":
            objects.append(service_account(plan))
        objects.append(inference_service(plan, options, pull))
        return objects
    objects.append(deployment(plan, options, pull=pull))
    if options.max_replicas > plan.replicas:
        objects.append(autoscaler(plan, options, versions.get("autoscaling", "v2")))
    if plan.replicas > 1:
        objects.append(disruption_budget(plan, versions.get("policy", "v1")))
    return objects


def split_replicas(shares, total):
    """{colour: replicas} for {colour: percent}: a route split by replica
    ratio over ``total`` pods; every colour with a share keeps a pod."""
    result = {}
    for colour, percent in shares.items():
        result[colour] = max(1, round(percent * total / 100)) if percent > 0 else 0
    return result
