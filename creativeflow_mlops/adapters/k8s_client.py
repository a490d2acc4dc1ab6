"""A Kubernetes API server through the official ``kubernetes`` client: the
few verbs the ``kubernetes`` target needs, on any object given as a dict,
with timeouts on every call and the API's answers sorted for the caller.
Plain Python: no Odoo.

- ``apply(objects, dry_run, force)``: server-side apply with one field
  manager (``creativeflow-mlops``); a conflict with another manager is
  reported (409), never overwritten unless ``force``;
- ``get``/``list``: objects as dicts (None for a 404);
- ``delete_by_label``: every object of some kinds that a selector matches,
  with foreground propagation;
- ``preferred(group, versions)``: which API version the cluster serves;
- ``calls``: the requests made, by kind, for the benchmark and the tests.

Errors: ``TargetUnavailable`` when the server cannot be reached or answers
5xx or 429 (worth a retry), ``TargetFailed`` otherwise, with the API's own
message (RBAC's names the verb and resource; a 422 names the field).
"""

import collections
import copy
import json
import threading

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .targets import TargetFailed, TargetUnavailable

MANAGER = "creativeflow-mlops"
# (group or "" for the core group, kind): (plural, namespaced)
RESOURCES = {
    ("", "Service"): ("services", True),
    ("", "Secret"): ("secrets", True),
    ("", "ConfigMap"): ("configmaps", True),
    ("", "ServiceAccount"): ("serviceaccounts", True),
    ("", "Pod"): ("pods", True),
    ("", "Event"): ("events", True),
    ("", "Node"): ("nodes", False),
    ("", "Namespace"): ("namespaces", False),
    ("apps", "Deployment"): ("deployments", True),
    ("autoscaling", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("policy", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io", "NetworkPolicy"): ("networkpolicies", True),
    ("serving.kserve.io", "InferenceService"): ("inferenceservices", True),
}


def split_api_version(api_version):
    group, _, version = api_version.rpartition("/")
    return group, version


def connect(options, token=None):
    """An ``ApiClient`` from a kubeconfig (path and context), the pod's own
    service account (in-cluster), or a server URL and a bearer token."""
    configuration = k8s.Configuration()
    if options.in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)
    elif options.kubeconfig:
        k8s_config.load_kube_config(
            config_file=options.kubeconfig,
            context=options.context or None,
            client_configuration=configuration,
        )
    else:
        configuration.host = options.server_url.rstrip("/")
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        configuration.verify_ssl = options.verify_tls
        configuration.ssl_ca_cert = options.ca_file or None
    # a server out of reach fails now; the job queue tries again later
    configuration.retries = False
    return k8s.ApiClient(configuration)


class Cluster:
    """One namespace of one API server."""

    def __init__(self, api_client, namespace, timeout=10):
        self.api = api_client
        self.namespace = namespace
        self.timeout = timeout
        self.calls = collections.Counter()
        self._versions = {}
        self._lock = threading.Lock()
        self._siblings = {namespace: self}

    def in_namespace(self, namespace):
        """The same server and credentials in another namespace: one count
        of calls, one discovery cache."""
        with self._lock:
            sibling = self._siblings.get(namespace)
            if sibling is None:
                sibling = copy.copy(self)
                sibling.namespace = namespace
                self._siblings[namespace] = sibling
        return sibling

    # ------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------

    def request(self, method, path, query=None, body=None, content_type=None, what=""):
        """The decoded answer of one call, or None for a 404 on a GET."""
        with self._lock:
            self.calls[what or path.rsplit("/", 1)[-1]] += 1
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            answer = self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(self.timeout, self.timeout * 3),
            )
        except ApiException as error:
            if error.status == 404 and method == "GET":
                return None
            raise self._refusal(error, method, path) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TargetUnavailable(
                f"the Kubernetes API server cannot be reached: {error}"
            ) from None
        response = answer[0] if isinstance(answer, tuple) else answer
        data = response.data
        return json.loads(data) if data else {}

    def _refusal(self, error, method, path):
        try:
            status = json.loads(error.body or "{}")
        except ValueError:
            status = {}
        message = status.get("message") or error.reason or str(error.status)
        if error.status in (429, 500, 502, 503, 504):
            return TargetUnavailable(
                f"the Kubernetes API server answered {error.status}: {message}"
            )
        if error.status == 401:
            return TargetFailed(
                "the Kubernetes API server refused the credentials (401): set the "
                "target's token, kubeconfig or service account"
            )
        if error.status == 403:
            return TargetFailed(f"forbidden by the cluster's RBAC: {message}")
        if error.status == 409:
            return TargetFailed(f"conflict on the cluster: {message}")
        if error.status == 422:
            return TargetFailed(f"the API server refused the object: {message}")
        return TargetFailed(f"{method} {path}: {error.status} {message}")

    # ------------------------------------------------------------------
    # Paths
    # ------------------------------------------------------------------

    def path(self, api_version, kind, name=None, namespace=True):
        group, version = split_api_version(api_version)
        plural, namespaced = RESOURCES[group, kind]
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if namespaced and namespace:
            base += f"/namespaces/{self.namespace}"
        base += f"/{plural}"
        return f"{base}/{name}" if name else base

    def preferred(self, group, versions):
        """The first of ``versions`` (best first) that the cluster serves for
        ``group``, asked once (API discovery)."""
        if group not in self._versions:
            answer = self.request("GET", f"/apis/{group}", what="discovery") or {}
            self._versions[group] = [v["version"] for v in answer.get("versions", [])]
        served = self._versions[group]
        for version in versions:
            if version in served:
                return version
        raise TargetFailed(
            f"the cluster serves none of {group}/{', '.join(versions)} "
            f"(it serves {', '.join(served) or 'none'})"
        )

    # ------------------------------------------------------------------
    # Verbs
    # ------------------------------------------------------------------

    def apply(self, obj, dry_run=False, force=False):
        """Server-side apply of ``obj`` with our field manager."""
        query = {"fieldManager": MANAGER}
        if dry_run:
            query["dryRun"] = "All"
        if force:
            query["force"] = "true"
        return self.request(
            "PATCH",
            self.path(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]),
            query,
            body=obj,
            content_type="application/apply-patch+yaml",
            what=f"apply {obj['kind']}",
        )

    def replace(self, obj, resource_version):
        """Replace ``obj`` whole (an update at ``resource_version``): what
        other managers added to it goes."""
        body = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": resource_version},
        }
        return self.request(
            "PUT",
            self.path(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]),
            {"fieldManager": MANAGER},
            body=body,
            content_type="application/json",
            what=f"replace {obj['kind']}",
        )

    def get(self, api_version, kind, name):
        return self.request(
            "GET", self.path(api_version, kind, name), what=f"get {kind}"
        )

    def list(self, api_version, kind, selector=None, fields=None, everywhere=False):
        query = {}
        if selector:
            query["labelSelector"] = selector
        if fields:
            query["fieldSelector"] = fields
        answer = self.request(
            "GET",
            self.path(api_version, kind, namespace=not everywhere),
            query,
            what=f"list {kind}",
        )
        return (answer or {}).get("items", [])

    def patch(self, api_version, kind, name, patch, subresource=None):
        path = self.path(api_version, kind, name)
        if subresource:
            path += f"/{subresource}"
        return self.request(
            "PATCH",
            path,
            {"fieldManager": MANAGER},
            body=patch,
            content_type="application/merge-patch+json",
            what=f"patch {kind}",
        )

    def delete(self, api_version, kind, name, propagation="Foreground"):
        """Delete one object (gone already: fine)."""
        try:
            return self.request(
                "DELETE",
                self.path(api_version, kind, name),
                {"propagationPolicy": propagation},
                what=f"delete {kind}",
            )
        except TargetFailed as error:
            if "not found" in str(error).lower():
                return None
            raise

    def delete_by_label(self, api_version, kind, selector):
        """Every ``kind`` the selector matches, foreground: the objects they
        own (ReplicaSets, pods) go first."""
        return self.request(
            "DELETE",
            self.path(api_version, kind),
            {"labelSelector": selector, "propagationPolicy": "Foreground"},
            what=f"delete {kind}",
        )

    def allowed(self, verb, group, resource, subresource="", namespaced=True):
        """Whether the credentials may ``verb`` ``resource`` here, or across
        the cluster when not ``namespaced`` (SelfSubjectAccessReview)."""
        attributes = {
            # "": across the cluster (nodes, every namespace's pods)
            "namespace": self.namespace if namespaced else "",
            "verb": verb,
            "group": group,
            "resource": resource,
        }
        if subresource:
            attributes["subresource"] = subresource
        answer = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
            content_type="application/json",
            what="access review",
        )
        return bool(answer.get("status", {}).get("allowed"))

    def version(self):
        return self.request("GET", "/version", what="version") or {}

    def proxy_get(self, pod, port, path):
        """GET ``path`` of a pod's ``port`` through the API server's proxy
        (the pod need not be reachable from Odoo): its text."""
        with self._lock:
            self.calls["pod proxy"] += 1
        try:
            answer = self.api.call_api(
                f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{port}/proxy{path}",
                "GET",
                header_params={"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(self.timeout, self.timeout * 3),
            )
        except ApiException as error:
            if error.status in (502, 503, 504):
                raise TargetUnavailable(
                    f"pod {pod} cannot be reached through the API server: "
                    f"{error.status} {error.reason}"
                ) from None
            raise self._refusal(error, "GET", f"pods/{pod}/proxy{path}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TargetUnavailable(
                f"the Kubernetes API server cannot be reached: {error}"
            ) from None
        response = answer[0] if isinstance(answer, tuple) else answer
        return response.data.decode("utf-8", "replace")

    def log(self, pod, container, lines=40):
        try:
            answer = self.api.call_api(
                f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log",
                "GET",
                query_params=[("container", container), ("tailLines", lines)],
                header_params={"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(self.timeout, self.timeout * 3),
            )
        except ApiException as error:
            return f"(no log: {error.reason})"
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return f"(no log: {error})"
        response = answer[0] if isinstance(answer, tuple) else answer
        return response.data.decode("utf-8", "replace")
