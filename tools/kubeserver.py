"""A real Kubernetes control plane for tests and benchmarks, on loopback:
etcd, kube-apiserver (RBAC, bearer tokens) and kube-controller-manager
(Deployments become ReplicaSets and Pods; garbage collection), built from
Debian's source package by ``kubebuild``.

There is no scheduler and no kubelet: ``Kubelet`` plays their part as KWOK
does (a Node object with allocatable GPUs; pods bound to it and set Ready
or failed; pods being deleted let go), so that rollouts, blue-green
switches, failures and deletion run through the real controllers.

    with KubeServer() as kube:
        kube.url, kube.admin_token, kube.limited_token, kube.ca_file
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import kubebuild
import requests
import yaml
from testservers import free_port, unlimited_address_space

ADMIN_TOKEN = "mlops-admin-token"
# a user RBAC grants nothing unless a test binds it a role
LIMITED_TOKEN = "mlops-limited-token"
LIMITED_USER = "mlops-limited"


class KubeServer:
    def __init__(self, workdir=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlops-kube-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = []
        self.port = None
        self.admin_token = ADMIN_TOKEN
        self.limited_token = LIMITED_TOKEN

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self):
        return str(self.workdir / "server.crt")

    # ------------------------------------------------------------------

    def _certificates(self):
        pki = self.workdir
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", pki / "server.key", "-out", pki / "server.crt",
                "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["openssl", "genrsa", "-out", pki / "sa.key", "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "rsa",
                "-in",
                pki / "sa.key",
                "-pubout",
                "-out",
                pki / "sa.pub",
            ],
            check=True,
            capture_output=True,
        )
        (pki / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},mlops-admin,1,"system:masters"\n'
            f"{LIMITED_TOKEN},{LIMITED_USER},2\n"
        )

    def _spawn(self, name, command):
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - kept open
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Go reserves far more address space than it uses: not under
            # the cap Odoo puts on the test process
            preexec_fn=unlimited_address_space,
        )
        self.processes.append((name, process, log))
        return process

    def start(self, timeout=60):
        binaries = kubebuild.ensure()
        if not shutil.which("etcd"):
            raise RuntimeError("etcd is missing (Debian: etcd-server)")
        self._certificates()
        etcd_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "etcd",
                "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            ],
        )  # fmt: skip
        self.port = free_port()
        pki = self.workdir
        self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--cert-dir={pki / 'certs'}",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount",
            ],
        )
        self._wait_ready(timeout)
        kubeconfig = self.write_kubeconfig(self.workdir / "admin.kubeconfig")
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--controllers=*,-nodeipam,-nodelifecycle,-attachdetach,"
                "-persistentvolume-binder,-cloud-node-lifecycle,-route,-service,"
                "-csrsigning,-serviceaccount-token",
                "--concurrent-deployment-syncs=5",
                "--concurrent-replicaset-syncs=5",
            ],
        )
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process, _log in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} stopped:\n{self.log_tail(name)}")
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        log = self.log_tail("kube-apiserver")
        raise RuntimeError(f"kube-apiserver not ready in {timeout} s:\n{log}")

    def log_tail(self, name, size=3000):
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def write_kubeconfig(self, path, token=ADMIN_TOKEN, namespace="default"):
        Path(path).write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {self.url}
    certificate-authority: {self.ca_file}
users:
- name: test
  user:
    token: {token}
contexts:
- name: test
  context: {{cluster: test, user: test, namespace: {namespace}}}
current-context: test
"""
        )
        return path

    def stop(self):
        for _name, process, log in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()
        self.processes = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------
    # Plain calls as the cluster's admin (the tests' own view)
    # ------------------------------------------------------------------

    def _call(self, method, path, token=ADMIN_TOKEN, **kwargs):
        headers = kwargs.pop("headers", {})
        headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method,
            f"{self.url}{path}",
            headers=headers,
            verify=self.ca_file,
            timeout=10,
            **kwargs,
        )

    def get(self, path, **kwargs):
        return self._call("GET", path, **kwargs)

    def json(self, method, path, body=None, content_type="application/json", **kw):
        answer = self._call(
            method,
            path,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            **kw,
        )
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def install_crd(self, path):
        """A CustomResourceDefinition from a YAML file (again: unchanged)."""
        answer = self._call(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            data=json.dumps(yaml.safe_load(Path(path).read_text())),
            headers={"Content-Type": "application/json"},
        )
        if answer.status_code not in (201, 409):
            raise RuntimeError(f"the CRD was refused: {answer.text}")

    def create_namespace(self, name):
        return self.json(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )

    def grant(self, user, namespace, rules, name=None):
        """Give ``user`` a Role of ``rules`` in ``namespace`` (``name``: a
        second grant's)."""
        name = name or f"{user}-grant"
        self.json(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
            {"metadata": {"name": name}, "rules": list(rules)},
        )
        self.json(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
                "subjects": [
                    {
                        "kind": "User",
                        "name": user,
                        "apiGroup": "rbac.authorization.k8s.io",
                    }
                ],
            },
        )


_SHARED = None


def shared():
    """One control plane for the whole test process (plain tests and Odoo
    tests alike), stopped when the process ends."""
    global _SHARED
    if _SHARED is None:
        _SHARED = KubeServer().start()
        atexit.register(_SHARED.__exit__, None, None, None)
    return _SHARED


class Kubelet:
    """The kubelet and scheduler, played: one Node, pods bound to it and
    reported as the tests say."""

    def __init__(self, kube, node="gpu-node-1", gpus=0, labels=None, pod_ip=None):
        self.kube = kube
        self.node = node
        self.gpus = gpus
        self.labels = labels or {}
        # the address the pods report: where the API server's proxy goes
        # (a TritonMetrics serving them; loopback is refused by the proxy)
        self.pod_ip = pod_ip or "10.244.0.10"

    def register(self):
        self.kube.json(
            "POST",
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.node, "labels": self.labels},
            },
        )
        self.report()
        return self

    def report(self, gpus=None):
        if gpus is not None:
            self.gpus = gpus
        resources = {"cpu": "64", "memory": "256Gi", "pods": "500"}
        if self.gpus:
            resources["nvidia.com/gpu"] = str(self.gpus)
        now = _now()
        self.kube.json(
            "PATCH",
            f"/api/v1/nodes/{self.node}/status",
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
            },
            content_type="application/merge-patch+json",
        )

    def pods(self, namespace, selector=""):
        answer = self.kube.get(
            f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        return answer.json().get("items", [])

    def run(
        self,
        namespace,
        selector="",
        ready=True,
        timeout=20,
        expect=None,
        pending_only=False,
    ):
        """Bind the matching pods here and report them Running (and Ready).
        Waits until ``expect`` pods exist (when given); ``pending_only``:
        the pods not reported Ready yet only. Returns their names."""
        deadline = time.monotonic() + timeout
        while True:
            pods = [
                p
                for p in self.pods(namespace, selector)
                if not p["metadata"].get("deletionTimestamp")
            ]
            if expect is None or len(pods) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if pending_only:
            pods = [p for p in pods if not _ready(p)]
        for pod in pods:
            name = pod["metadata"]["name"]
            if not pod["spec"].get("nodeName"):
                self.kube.json(
                    "POST",
                    f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.node,
                        },
                    },
                )
            self._status(namespace, pod, ready)
        return [p["metadata"]["name"] for p in pods]

    def _status(self, namespace, pod, ready, waiting=None, message="back-off"):
        now = _now()
        flag = "True" if ready else "False"
        containers = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0 if not waiting else 5,
                "state": {"waiting": {"reason": waiting, "message": message}}
                if waiting
                else {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        self.kube.json(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
            {
                "status": {
                    "phase": "Running",
                    "podIP": self.pod_ip,
                    "hostIP": "10.0.0.1",
                    "startTime": now,
                    "conditions": [
                        {"type": t, "status": flag, "lastTransitionTime": now}
                        for t in ("Initialized", "Ready", "ContainersReady")
                    ]
                    + [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastTransitionTime": now,
                        }
                    ],
                    "containerStatuses": containers,
                }
            },
            content_type="application/merge-patch+json",
        )

    def crash(
        self,
        namespace,
        selector,
        reason="CrashLoopBackOff",
        expect=1,
        timeout=20,
        message="back-off",
    ):
        """Bind the matching pods and report their server waiting for
        ``reason`` (crash-looping by default) with ``message``."""
        deadline = time.monotonic() + timeout
        pods = []
        while len(pods) < expect and time.monotonic() < deadline:
            pods = self.pods(namespace, selector)
            time.sleep(0.1)
        self.run(namespace, selector, ready=False)
        for pod in self.pods(namespace, selector):
            self._status(namespace, pod, False, waiting=reason, message=message)

    def let_go(self, namespace):
        """Pods being deleted go at once (a kubelet confirms their end)."""
        gone = 0
        for pod in self.pods(namespace):
            if pod["metadata"].get("deletionTimestamp"):
                self.kube._call(
                    "DELETE",
                    f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}",
                    params={"gracePeriodSeconds": 0},
                )
                gone += 1
        return gone


class KServeController:
    """KServe's controller in its Serverless mode, played for the
    InferenceServices of a namespace (there is no KServe here): a change of
    the predictor (``canaryTrafficPercent`` aside) makes a new revision,
    reported ready; without ``canaryTrafficPercent`` the newest ready
    revision is rolled out at 100 %, with it the calls are split between the
    revision rolled out last and the newest (0: all to the former), as
    KServe's *Canary Rollout Strategy* documents."""

    PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices"

    def __init__(self, kube):
        self.kube = kube

    def play(self, namespace):
        """One pass: every InferenceService's status brought up to date."""
        base = self.PATH.format(namespace=namespace)
        for isvc in self.kube.get(base).json().get("items", []):
            self._reconcile(base, isvc)

    def _reconcile(self, base, isvc):
        meta, spec = isvc["metadata"], isvc["spec"]["predictor"]
        status = isvc.get("status", {})
        if status.get("observedGeneration") == meta["generation"]:
            return
        predictor = dict(status.get("components", {}).get("predictor", {}))
        template = json.dumps(
            {k: v for k, v in spec.items() if k != "canaryTrafficPercent"},
            sort_keys=True,
        )
        latest = predictor.get("latestCreatedRevision")
        if template != predictor.get("template"):
            number = int(latest.rsplit("-", 1)[1]) + 1 if latest else 1
            latest = f"{meta['name']}-predictor-{number:05d}"
        rolled = predictor.get("latestRolledoutRevision")
        percent = spec.get("canaryTrafficPercent")
        if percent is None or rolled is None:
            previous = (
                rolled
                if rolled != latest
                else predictor.get("previousRolledoutRevision")
            )
            rolled, traffic = (
                latest,
                [{"revisionName": latest, "percent": 100, "latestRevision": True}],
            )
        else:
            previous = predictor.get("previousRolledoutRevision")
            traffic = [
                {"revisionName": rolled, "percent": 100 - percent,
                 "latestRevision": False},
                {"revisionName": latest, "percent": percent, "latestRevision": True},
            ]  # fmt: skip
            traffic = [t for t in traffic if t["percent"]]
        now = _now()
        body = {
            "status": {
                "observedGeneration": meta["generation"],
                "url": f"http://{meta['name']}.{meta['namespace']}.example.com",
                "address": {
                    "url": f"http://{meta['name']}.{meta['namespace']}"
                    ".svc.cluster.local"
                },
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now}
                    for t in ("IngressReady", "PredictorReady", "Ready")
                ],
                "components": {
                    "predictor": {
                        "template": template,
                        "latestCreatedRevision": latest,
                        "latestReadyRevision": latest,
                        "latestRolledoutRevision": rolled,
                        "previousRolledoutRevision": previous or "",
                        "traffic": traffic,
                    }
                },
            }
        }
        self.kube.json(
            "PATCH",
            f"{base}/{meta['name']}/status",
            body,
            content_type="application/merge-patch+json",
        )


def _ready(pod):
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _now():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_address():
    """This machine's first address that is not loopback (the API server's
    pod proxy refuses loopback), or a clear error."""
    found = subprocess.run(
        ["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.split()
    for address in found:
        if "." in address and not address.startswith("127."):
            return address
    raise RuntimeError(
        "no IPv4 address but loopback here: the pod proxy tests need one "
        f"(hostname -I says {found})"
    )


class TritonMetrics:
    """What Triton's ``/metrics`` says, on ``address``:``port`` (a pod's IP
    and metrics port, as the played kubelet reports them): the tests set
    ``success``, ``failure`` and ``p95_us`` (None: no summary yet); every
    request's path and the host it was sent to are kept."""

    def __init__(self, address, port=8002):
        import http.server  # noqa: PLC0415
        import threading  # noqa: PLC0415

        self.success, self.failure, self.p95_us = 0, 0, None
        self.requests = []
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                metrics.requests.append(self.path)
                lines = [
                    "# TYPE nv_inference_request_success counter",
                    f'nv_inference_request_success{{model="mlp",version="1"}} '
                    f"{metrics.success}",
                    "# TYPE nv_inference_request_failure counter",
                    f'nv_inference_request_failure{{model="mlp",reason="BACKEND",'
                    f'version="1"}} {metrics.failure}',
                    "# TYPE nv_inference_request_summary_us summary",
                    f'nv_inference_request_summary_us_count{{model="mlp",version="1"}} '
                    f"{metrics.success + metrics.failure}",
                ]
                if metrics.p95_us is not None:
                    lines.append(
                        f'nv_inference_request_summary_us{{model="mlp",quantile="0.95",'
                        f'version="1"}} {metrics.p95_us}'
                    )
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        except OSError as error:
            raise RuntimeError(
                f"the played Triton metrics cannot listen on {address}:{port}: {error}"
            ) from None
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class PrometheusApi:
    """A Prometheus HTTP API (``/api/v1/query``) the tests set the answers
    of: ``requests``, ``errors`` and ``p95`` (seconds), each None for no
    series, or a ``status`` other than 200 to answer every query with;
    every query received is kept in ``queries``."""

    def __init__(self):
        import http.server  # noqa: PLC0415
        import threading  # noqa: PLC0415
        import urllib.parse  # noqa: PLC0415

        self.requests, self.errors, self.p95 = 0.0, 0.0, None
        self.status = 200
        self.queries = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                query = params.get("query", [""])[0]
                api.queries.append(query)
                if api.status != 200:
                    self.send_response(api.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "summary_us" in query:
                    value = api.p95
                elif "request_success" in query:
                    value = api.requests
                else:
                    value = api.errors
                result = (
                    [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
                )
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {"resultType": "vector", "result": result},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
