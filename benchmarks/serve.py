"""``benchmarks/run serve``: the same ONNX model (an MLP 64-256-256-10,
batch 1, onnxruntime on one intra-op thread) served by

- ours, through the invoke URL: the local target's model server behind its
  HAProxy router, with an invoke key, as deployments run;
- ours, the model server alone (what the router adds is the difference);
- the same model server behind one nginx hop with upstream keep-alive, a
  static configuration (the router's alternative: nginx can change its
  weights only by reloading, which resets idle client connections);
- a bare stdlib server with TCP_NODELAY (the baseline);
- a lean uvicorn (uvloop, httptools) app without metrics or keys;
- KServe's Python ``ModelServer`` and Seldon's ``MLServer`` with a custom
  onnxruntime runtime, each in its own virtualenv (made on first use under
  ``$MLOPS_BENCH_PEERS``, ``~/.cache/creativeflow-mlops/peers``);

requests per second and p50/p99 latency by ``wrk`` (a Lua script POSTs the
body) at 1 and 20 connections, every server's answer checked against a
direct onnxruntime call first. Also: how long a blue-green switch of the
router takes. What the router and the nginx hop add to p50 at one
connection is also the median of ``MLOPS_BENCH_ROUNDS`` (5) rounds of
5 s each, the three measured one after the other in every round. Figures
only, nothing asserted.
"""

import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
DURATION = int(os.environ.get("MLOPS_BENCH_SECONDS", "10"))
CONNECTIONS = (1, 20)
# what a hop adds at 1 connection is a few hundredths of a millisecond, under
# the noise of one run: measured again in this many interleaved rounds
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "5"))
VENVS = {
    "kserve": ["kserve", "onnxruntime"],
    "mlserver": ["mlserver", "onnxruntime"],
    # benchmarks/registry.py: as a tuned production install has it
    "mlflow": ["mlflow>=3,<4", "psycopg2-binary", "uvloop", "httptools"],
}


def _artifacts():
    path = REPO / "creativeflow_mlops" / "tests" / "artifacts.py"
    spec = importlib.util.spec_from_file_location("mlops_bench_artifacts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def adapter(name):
    """The addon's adapter module ``name`` (``targets``, ``storage_s3``),
    its package loaded once as a package of its own: the adapters import
    nothing of Odoo (the addon's package would)."""
    if "mlops_adapters" not in sys.modules:
        folder = REPO / "creativeflow_mlops" / "adapters"
        spec = importlib.util.spec_from_file_location(
            "mlops_adapters",
            folder / "__init__.py",
            submodule_search_locations=[str(folder)],
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["mlops_adapters"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"mlops_adapters.{name}")


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv(name):
    root = Path(
        os.environ.get("MLOPS_BENCH_PEERS")
        or Path.home() / ".cache" / "creativeflow-mlops" / "peers"
    )
    python = root / name / "bin" / "python"
    if not python.exists():
        print(f"  making the {name} virtualenv (once) under {root}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(root / name)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *VENVS[name]], check=True
        )
    return str(python)


def _nginx_hop(root, port, upstream):
    """The command of an nginx with one keep-alive upstream, tuned as the
    router's former front was."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if not nginx:
        raise RuntimeError(
            "nginx is not installed (Debian: apt-get install nginx-light)"
        )
    root.mkdir(parents=True)
    (root / "nginx.conf").write_text(
        f"""worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root};
    proxy_temp_path {root};
    keepalive_requests 1000000;
    tcp_nodelay on;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    upstream model {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://model; }}
    }}
}}
"""
    )
    return [nginx, "-p", str(root), "-c", str(root / "nginx.conf")]


def _wait_ready(url, process, timeout=120, status=200):
    """Until ``url`` answers ``status`` (None: anything at all)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({process.returncode})")
        try:
            answer = requests.get(url, timeout=2)
            if status is None or answer.status_code == status:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def _wrk(url, body, headers, connections, seconds=None):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = {json.dumps(body)}\n")
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
        for name, value in headers.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(connections, 2)),
                "-c",
                str(connections),
                "-d",
                f"{seconds or DURATION}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)

    return wrk_figures(out)


def _hops(servers, body):
    """What the router and the nginx hop add to the model server's p50 at
    one connection: the median of the rounds' differences, and their range."""
    alone = "ours: model server alone"
    hops = {
        "the router": "ours: invoke URL (router)",
        "one nginx hop": "ours behind one nginx hop",
    }
    hops = {label: name for label, name in hops.items() if name in servers}
    added = {label: [] for label in hops}
    for _round in range(ROUNDS):
        url, headers = servers[alone]
        base = _wrk(url, body, headers, 1, seconds=5)["p50"]
        for label, name in hops.items():
            url, headers = servers[name]
            added[label].append(_wrk(url, body, headers, 1, seconds=5)["p50"] - base)
    for label, values in added.items():
        print(
            f"  {label} adds {statistics.median(values):.3f} ms to p50 at 1 "
            f"connection (median of {ROUNDS} rounds, "
            f"{min(values):.3f} to {max(values):.3f})"
        )


def wrk_figures(out):
    """Requests per second, p50/p90/p99 (ms) and errors of wrk's output."""

    def ms(label):
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": ms("50"),
        "p90": ms("90"),
        "p99": ms("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def bench_serve():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    artifacts = _artifacts()
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-serve-"))
    model = work / "mlp.onnx"
    model.write_bytes(artifacts.onnx_mlp(seed=5))
    x = np.random.default_rng(9).standard_normal((1, 64)).astype(np.float32)
    import onnxruntime

    expected = onnxruntime.InferenceSession(str(model)).run(None, {"x": x})[0].ravel()
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 64],
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    )
    processes, servers = [], {}

    def spawn(name, command, url, ready, cwd=None, env=None, status=200):
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed at exit
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )
        processes.append(process)
        _wait_ready(ready, process, status=status)
        servers[name] = (url, {})

    LocalTarget = adapter("target_local").LocalTarget  # noqa: N806
    ServePlan = adapter("targets").ServePlan  # noqa: N806
    import contextlib

    model_copy = lambda: contextlib.nullcontext(str(model))  # noqa: E731

    target = LocalTarget(work / "target", _free_port())
    try:
        plan = ServePlan("d1", "c1-mlp-production", "mlp", "1.0.0")
        token = "mik_benchmark-key"
        import hashlib

        target.publish_keys(
            plan.route, {hashlib.sha256(token.encode()).hexdigest(): None}, set()
        )
        target.fetch_artifact(plan, model_copy)
        target.apply(plan)
        target.switch_traffic({plan.route: [("d1", 100)]})
        auth = {"Authorization": f"Bearer {token}"}
        servers["ours: invoke URL (router)"] = (
            f"{target.route_url(plan.route)}/v2/models/mlp/infer",
            auth,
        )
        handle = target.runtime.find("d1")
        servers["ours: model server alone"] = (
            f"http://127.0.0.1:{handle.port}/v2/models/mlp/infer",
            auth,
        )
        try:
            port = _free_port()
            spawn(
                "nginx hop",
                _nginx_hop(work / "nginx", port, handle.port),
                f"http://127.0.0.1:{port}/v2/models/mlp/infer",
                f"http://127.0.0.1:{port}/v2/health/ready",
            )
            servers["ours behind one nginx hop"] = servers.pop("nginx hop")[0], auth
        except (RuntimeError, OSError) as error:
            print(f"  the nginx hop not measured: {error}")
        port = _free_port()
        spawn(
            "bare stdlib",
            [sys.executable, str(PEERS / "bare_server.py"), str(model), str(port)],
            f"http://127.0.0.1:{port}/v2/models/mlp/infer",
            f"http://127.0.0.1:{port}/",
            status=None,
        )
        port = _free_port()
        spawn(
            "lean uvicorn",
            [sys.executable, str(PEERS / "lean_uvicorn.py"), str(model), str(port)],
            f"http://127.0.0.1:{port}/v2/models/mlp/infer",
            f"http://127.0.0.1:{port}/",
            status=None,
        )
        try:
            port, grpc = _free_port(), _free_port()
            spawn(
                "KServe ModelServer",
                [
                    _venv("kserve"),
                    str(PEERS / "kserve_server.py"),
                    str(model),
                    str(port),
                    str(grpc),
                ],
                f"http://127.0.0.1:{port}/v2/models/mlp/infer",
                f"http://127.0.0.1:{port}/v2/health/ready",
            )
        except (RuntimeError, subprocess.CalledProcessError) as error:
            print(f"  KServe not measured: {error}")
        try:
            port = _free_port()
            folder = work / "mlserver" / "mlp"
            folder.mkdir(parents=True)
            shutil.copy(PEERS / "mlserver_runtime.py", folder / "mlserver_runtime.py")
            (folder / "model-settings.json").write_text(
                json.dumps(
                    {
                        "name": "mlp",
                        "implementation": "mlserver_runtime.OnnxRuntime",
                        "parameters": {"uri": str(model)},
                    }
                )
            )
            (work / "mlserver" / "settings.json").write_text(
                json.dumps(
                    {
                        "http_port": port,
                        "grpc_port": _free_port(),
                        "metrics_port": _free_port(),
                        "parallel_workers": 0,
                    }
                )
            )
            spawn(
                "MLServer",
                [
                    _venv("mlserver"),
                    "-c",
                    "import sys; from mlserver.cli.main import main; "
                    "sys.argv = ['mlserver', 'start', '.']; main()",
                ],
                f"http://127.0.0.1:{port}/v2/models/mlp/infer",
                f"http://127.0.0.1:{port}/v2/health/ready",
                cwd=work / "mlserver",
                env={"PYTHONPATH": str(folder)},
            )
        except (RuntimeError, subprocess.CalledProcessError) as error:
            print(f"  MLServer not measured: {error}")

        print(f"serving an MLP 64-256-256-10, batch 1, wrk {DURATION} s per figure")
        results = {}
        for name, (url, headers) in servers.items():
            answer = requests.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=10,
            )
            answer.raise_for_status()
            got = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32)
            close = np.allclose(got, expected, rtol=1e-4, atol=1e-5)
            for connections in CONNECTIONS:
                results[name, connections] = _wrk(url, body, headers, connections)
            figures = "  ".join(
                f"c={c}: {results[name, c]['rps']:8.0f} req/s "
                f"p50 {results[name, c]['p50']:.3f} ms "
                f"p99 {results[name, c]['p99']:.3f} ms"
                + (
                    f" ({results[name, c]['errors']} errors)"
                    if results[name, c]["errors"]
                    else ""
                )
                for c in CONNECTIONS
            )
            print(
                f"  {name:28s} {'answer ok' if close else 'ANSWER DIFFERS'}  {figures}",
                flush=True,
            )
        ours = results.get(("ours: invoke URL (router)", 20))
        for peer in ("lean uvicorn", "KServe ModelServer", "MLServer", "bare stdlib"):
            if (peer, 20) in results and ours:
                print(
                    f"  ours through the router / {peer} at 20 connections: "
                    f"{ours['rps'] / results[peer, 20]['rps']:.2f}x"
                )
        _hops(servers, body)
        # a blue-green switch: a second colour up, the traffic moved
        green = ServePlan("d2", plan.route, "mlp", "2.0.0")
        target.fetch_artifact(green, model_copy)
        started = time.perf_counter()
        target.apply(green)
        up = time.perf_counter()
        target.switch_traffic({plan.route: [("d2", 100)]})
        switched = time.perf_counter()
        print(
            f"  blue-green: the new colour up in {up - started:.2f} s, the switch "
            f"(configuration written and tested, runtime API, read back) "
            f"in {1000 * (switched - up):.0f} ms"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for key in list(target.runtime.running()):
            target.runtime.stop(key, timeout=5)
        target.router.stop()
        shutil.rmtree(work, ignore_errors=True)
