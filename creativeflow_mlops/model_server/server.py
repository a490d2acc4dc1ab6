"""A model server speaking the Open Inference Protocol v2 over HTTP.

    python server.py --model PATH --name NAME --version V --port P [--keys FILE]

One process serves one model version (an ONNX file, through onnxruntime on
``--threads`` intra-op threads). It is a bare ASGI application under uvicorn
(uvloop, httptools): no web framework between the socket and the session.

- ``GET /v2/health/live``, ``/v2/health/ready``: no key needed (the only
  routes without one when the server has ``--keys``);
- ``GET /v2/models/<name>``: inputs and outputs, datatypes and shapes;
- ``GET /v2/models/<name>/ready``;
- ``POST /v2/models/<name>/infer``: ``{"inputs": [{"name", "shape",
  "datatype", "data"}], "outputs": [{"name"}]}``; the answer names the
  version that served it (``model_version`` and ``X-MLOps-Version``);
- ``GET /metrics``: Prometheus counters of requests and errors and a latency
  histogram, labelled by model and version.

With ``--log-dir``, a sample of the calls (``--log-rate``) is kept with what
was asked and answered, less the inputs, outputs and parameters named by
``--log-personal`` (``inference_log.py``), for Odoo to collect.

Every answer carries ``X-Request-Id``: the caller's own when it sent one (up
to 128 visible ASCII characters), else one made here; feedback and business
outcomes name a call by it.

Errors are OIP bodies, ``{"error": "<message>"}``. With ``--keys``, every
call but the health routes needs ``Authorization: Bearer <invoke key>``
(``/metrics`` also takes the platform's key, with which Odoo reads it): the
file holds the SHA-256 of each key allowed here with its expiry, and is read again
within a second of changing, so a revoked key is refused at once. On SIGTERM
the server stops accepting connections and finishes the requests in flight
(uvicorn's graceful shutdown) before it exits.

This file imports neither Odoo nor the addon: Odoo runs it by path.
"""

import argparse
import asyncio
import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
import uuid

import numpy as np
import onnxruntime
import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_logger = logging.getLogger("mlops.runtime")


def _load_sibling(name):
    """``name``.py beside this file: the server runs by path, outside the
    addon's package (which is Odoo's)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"mlops_runtime_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inference_log = _load_sibling("inference_log")

# the largest body any model takes; a model whose inputs have fixed sizes
# but for the batch takes what MAX_BATCH rows of them spell in JSON
MAX_BODY = 64 * 1024 * 1024
MAX_BATCH = 64
# a value in JSON: "-1.2345678901234567e-308, " and its like
JSON_BYTES_PER_VALUE = 26
JSON_OVERHEAD = 64 * 1024
# an error body names what was wrong, never echoes a body back
MAX_ERROR_CHARS = 1000
# a caller's own request id is kept when it is this plain
REQUEST_ID_CHARS = frozenset(range(0x21, 0x7F))
MAX_REQUEST_ID = 128
# inferences run at once (each in a worker thread, off the event loop)
INFER_WORKERS = 2
KEYS_RECHECK_SECONDS = 1.0
# OIP datatypes and numpy's
DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
NUMPY_TYPES = {np.dtype(v): k for k, v in DATATYPES.items()}
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Keys:
    """The invoke keys allowed here, from a JSON file Odoo rewrites:
    ``{"keys": {"<sha256 hex>": <expiry, unix seconds, or null>},
    "elsewhere": ["<sha256 hex>", ...]}``: the keys of other models or
    environments, refused with a 403 rather than a 401."""

    def __init__(self, path):
        self.path = path
        self.allowed = {}
        self.elsewhere = frozenset()
        self.platform = None
        self.mtime = None
        self.checked = 0.0
        self.reload()

    def reload(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            # no file: nobody gets in
            self.allowed, self.elsewhere, self.mtime = {}, frozenset(), None
            self.platform = None
            return
        if mtime == self.mtime:
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                content = json.load(handle)
            allowed = dict(content["keys"])
            elsewhere = frozenset(content.get("elsewhere", ()))
            platform = content.get("platform")
        except (OSError, ValueError, KeyError, TypeError) as error:
            # a half-written file: keep the last good set
            _logger.warning("keys file %s not read: %s", self.path, error)
            return
        self.allowed, self.elsewhere, self.mtime = allowed, elsewhere, mtime
        self.platform = platform

    def check(self, header, platform=False):
        """Refuse (401, 403) a caller without a valid invoke key; with
        ``platform``, the platform's own key (Odoo reading the metrics) is
        taken too."""
        now = time.monotonic()
        if now - self.checked > KEYS_RECHECK_SECONDS:
            self.checked = now
            self.reload()
        scheme, _sep, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(
                401, "send an invoke key as 'Authorization: Bearer <key>'"
            )
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if platform and self.platform and digest == self.platform:
            return
        if digest not in self.allowed:
            if digest in self.elsewhere:
                raise RequestError(
                    403, "the invoke key is not for this model and environment"
                )
            raise RequestError(401, "the invoke key is not valid")
        expiry = self.allowed[digest]
        if expiry is not None and expiry < time.time():
            raise RequestError(401, "the invoke key has expired")


class Model:
    def __init__(self, path, name, version, threads=1, max_batch=MAX_BATCH):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        self.name = name
        self.version = version
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.max_batch = max_batch
        self.max_body = self._body_cap()
        self.metadata = json.dumps(
            {
                "name": name,
                "versions": [version],
                "platform": "onnxruntime",
                "inputs": [_tensor_meta(i) for i in self.session.get_inputs()],
                "outputs": [_tensor_meta(o) for o in self.session.get_outputs()],
            }
        ).encode()

    def infer(self, body, keep=False):
        """The answer to ``body`` as JSON; with ``keep``, and what of the
        call the inference log may keep (``inference_log.scrub``)."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise RequestError(400, f"the body is not JSON: {error}") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            raise RequestError(400, "the body needs an 'inputs' list")
        feed = {}
        for tensor in request["inputs"]:
            name, array = _to_array(tensor)
            if name not in self.inputs:
                raise RequestError(400, f"the model has no input {name!r}")
            self._check_input(name, tensor["datatype"], array.shape)
            feed[name] = array
        missing = set(self.inputs) - set(feed)
        if missing:
            raise RequestError(400, f"missing inputs: {', '.join(sorted(missing))}")
        wanted = self.outputs
        if request.get("outputs"):
            try:
                wanted = [o["name"] for o in request["outputs"]]
            except (TypeError, KeyError):
                raise RequestError(400, "each output needs a 'name'") from None
            unknown = set(wanted) - set(self.outputs)
            if unknown:
                raise RequestError(
                    400, f"the model has no output {sorted(unknown)[0]!r}"
                )
        try:
            # checked against the declared inputs above: what fails here is
            # the model's own failure, a 5xx the gates count
            results = self.session.run(wanted, feed)
        except Exception as error:  # noqa: BLE001 - onnxruntime's own errors
            raise RequestError(500, f"inference failed: {error}") from None
        answer = {
            "model_name": self.name,
            "model_version": self.version,
            "outputs": [
                {
                    "name": name,
                    "shape": list(result.shape),
                    "datatype": NUMPY_TYPES.get(result.dtype, "BYTES"),
                    "data": result.ravel().tolist(),
                }
                for name, result in zip(wanted, results, strict=True)
            ],
        }
        if "id" in request:
            answer["id"] = request["id"]
        if keep:
            return orjson.dumps(answer), keep(request, answer)
        return orjson.dumps(answer)

    def _body_cap(self):
        """What one request may send: ``max_batch`` rows of every input,
        spelled in JSON, when the model fixes each input's size but for the
        batch; else the server's own cap."""
        values = 0
        for arg in self.inputs.values():
            dims = _tensor_meta(arg)["shape"]
            if not dims or any(d < 0 for d in dims[1:]):
                return MAX_BODY
            values += math.prod(dims[1:]) * (self.max_batch if dims[0] < 0 else dims[0])
        return min(MAX_BODY, values * JSON_BYTES_PER_VALUE + JSON_OVERHEAD)

    def _check_input(self, name, datatype, shape):
        """A 400 for what the model does not take (its datatype, its rank,
        its fixed dimensions), before onnxruntime would fail on it."""
        declared = _tensor_meta(self.inputs[name])
        if datatype != declared["datatype"]:
            raise RequestError(
                400,
                f"input {name!r}: the model takes {declared['datatype']}, "
                f"not {datatype}",
            )
        dims = declared["shape"]
        if len(shape) != len(dims) or any(
            want != -1 and got != want for got, want in zip(shape, dims, strict=True)
        ):
            raise RequestError(
                400, f"input {name!r}: the model takes shape {dims}, not {list(shape)}"
            )
        if dims and dims[0] == -1 and shape[0] > self.max_batch:
            raise RequestError(
                400,
                f"input {name!r}: {shape[0]} rows, more than the {self.max_batch} "
                "one request may send",
            )


def _tensor_meta(arg):
    return {
        "name": arg.name,
        "datatype": ONNX_TYPES.get(arg.type, arg.type),
        "shape": [d if isinstance(d, int) else -1 for d in arg.shape],
    }


def _to_array(tensor):
    if not isinstance(tensor, dict):
        raise RequestError(400, "each input is an object")
    name, shape = tensor.get("name"), tensor.get("shape")
    dtype = DATATYPES.get(tensor.get("datatype"))
    if not isinstance(name, str):
        raise RequestError(400, "each input needs a 'name'")
    if dtype is None:
        raise RequestError(
            400, f"input {name!r}: unknown datatype {tensor.get('datatype')!r}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RequestError(400, f"input {name!r}: 'shape' is a list of sizes")
    try:
        array = np.asarray(tensor.get("data"), dtype=dtype)
    except (TypeError, ValueError, OverflowError) as error:
        # OverflowError: a value out of the datatype's range (INT8 1000)
        raise RequestError(400, f"input {name!r}: {str(error)[:200]}") from None
    if array.size != math.prod(shape):
        raise RequestError(
            400, f"input {name!r}: {array.size} values do not fill the shape {shape}"
        )
    return name, array.reshape(shape)


class App:
    """The ASGI application."""

    def __init__(self, model, keys=None, workers=INFER_WORKERS, log=None):
        self.model = model
        self.keys = keys
        self.log = log
        # parsing a body and running the model happen here, so the event
        # loop goes on answering health checks and small calls meanwhile
        self.workers = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="infer"
        )
        registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "mlops_inference_requests",
            "Inference requests, by answer status.",
            [*labels, "code"],
            registry=registry,
        )
        self.errors = Counter(
            "mlops_inference_errors",
            "Inference requests that failed (4xx and 5xx).",
            [*labels, "kind"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlops_inference_latency_seconds",
            "Time to answer an inference request.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        if log:
            logged = Gauge(
                "mlops_inference_log_records",
                "Calls kept in the inference log, and dropped (Odoo not "
                "collecting, or the disk refusing).",
                [*labels, "outcome"],
                registry=registry,
            )
            for outcome in ("kept", "dropped"):
                logged.labels(
                    model=model.name, version=model.version, outcome=outcome
                ).set_function(lambda o=outcome: getattr(log, o))
        self.registry = registry
        self.labels = {"model": model.name, "version": model.version}
        self.observe = self.latency.labels(**self.labels).observe
        self.ok = self.requests.labels(code="200", **self.labels).inc
        base = f"/v2/models/{model.name}"
        self.infer_paths = {f"{base}/infer", f"{base}/versions/{model.version}/infer"}
        self.meta_paths = {base, f"{base}/versions/{model.version}"}
        self.ready_paths = {f"{base}/ready", f"{base}/versions/{model.version}/ready"}
        self.version_header = (b"x-mlops-version", model.version.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.log)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        headers = dict(scope["headers"])
        rid = request_id(headers.get(b"x-request-id"))
        send = _with_request_id(send, rid)
        try:
            if path in self.infer_paths:
                if method != "POST":
                    raise RequestError(405, "use POST")
                await self._infer(headers, receive, send, rid)
                return
            if path in ("/v2/health/live", "/v2/health/ready"):
                # the only routes open to anyone: the router's health checks
                await _answer(send, 200, b'{"live": true, "ready": true}')
                return
            # past the health routes, nothing is said to a caller without a
            # key: not the model, its version, its figures, nor what is not
            # here
            self._check_key(headers, platform=path == "/metrics")
            if path in self.ready_paths:
                await _answer(
                    send, 200, b'{"live": true, "ready": true}', self.version_header
                )
                return
            if path in self.meta_paths:
                await _answer(send, 200, self.model.metadata, self.version_header)
                return
            if path == "/metrics":
                await _answer(
                    send,
                    200,
                    generate_latest(self.registry),
                    content_type=CONTENT_TYPE_LATEST,
                )
                return
            if path == "/v2":
                body = json.dumps(
                    {
                        "name": "creativeflow-mlops-runtime",
                        "version": "2",
                        "extensions": [],
                    }
                ).encode()
                await _answer(send, 200, body)
                return
            raise RequestError(404, f"no model or route at {path}")
        except RequestError as error:
            # a refusal or a path that is not here names no version
            await _answer(send, error.status, _error(error))

    def _check_key(self, headers, platform=False):
        if self.keys:
            self.keys.check(
                headers.get(b"authorization", b"").decode("latin-1"), platform
            )

    async def _infer(self, headers, receive, send, rid):
        if self.keys:
            try:
                self._check_key(headers)
            except RequestError as error:
                # refused before the model: no request it served, in no
                # figure a gate reads, and no version named to a stranger
                await _answer(send, error.status, _error(error))
                return
        started = time.perf_counter()
        keep = self._scrub if self.log and self.log.sampled() else False
        try:
            body = await _read_body(receive, headers, self.model.max_body)
            answer = await asyncio.get_running_loop().run_in_executor(
                self.workers, self.model.infer, body, keep
            )
            del body
        except RequestError as error:
            status = error.status
            self.requests.labels(code=str(status), **self.labels).inc()
            self.errors.labels(
                kind="server" if status >= 500 else "client", **self.labels
            ).inc()
            elapsed = time.perf_counter() - started
            self.observe(elapsed)
            if keep:
                self._log(rid, status, elapsed, {"error": str(error)[:MAX_ERROR_CHARS]})
            await _answer(send, status, _error(error), self.version_header)
            return
        elapsed = time.perf_counter() - started
        self.ok()
        self.observe(elapsed)
        if keep:
            answer, kept = answer
            self._log(rid, 200, elapsed, kept)
        await _answer(send, 200, answer, self.version_header)

    def _scrub(self, request, answer):
        return inference_log.scrub(request, answer, self.log.personal)

    def _log(self, rid, status, elapsed, content):
        self.log.add(
            {
                "request_id": rid.decode("ascii"),
                "at": inference_log.stamp(time.time()),
                "model": self.model.name,
                "version": self.model.version,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                **content,
            }
        )


def _error(error):
    message = str(error)
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return orjson.dumps({"error": message})


async def _read_body(receive, headers, limit=MAX_BODY):
    length = headers.get(b"content-length")
    too_large = f"the body is larger than the {limit} bytes this model takes"
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, too_large)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def request_id(given):
    """The caller's request id when it is plain enough to echo, else a new
    one."""
    if given and len(given) <= MAX_REQUEST_ID and set(given) <= REQUEST_ID_CHARS:
        return given
    return uuid.uuid4().hex.encode()


def _with_request_id(send, rid):
    """``send`` adding ``X-Request-Id`` to the answer's headers."""

    async def sending(message):
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [*message.get("headers", []), (b"x-request-id", rid)],
            }
        await send(message)

    return sending


async def _answer(send, status, body, *extra, content_type="application/json"):
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive, send, log=None):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if log:
                log.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if log:
                # the calls in flight were answered: what they left is written
                await asyncio.get_running_loop().run_in_executor(None, log.stop)
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the ONNX file")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", help="the invoke keys file (none: no key needed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-batch", type=int, default=MAX_BATCH, help="rows one request may send"
    )
    parser.add_argument("--drain-seconds", type=float, default=20.0)
    parser.add_argument("--log-dir", help="the inference log's spool folder")
    parser.add_argument(
        "--log-rate", type=float, default=0.0, help="the share of calls logged"
    )
    parser.add_argument(
        "--log-personal",
        default="",
        help="inputs, outputs and parameters never logged (comma-separated)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn  # noqa: PLC0415 - the loop is set up by uvicorn itself

    try:
        model = Model(args.model, args.name, args.version, args.threads, args.max_batch)
    except Exception as error:  # noqa: BLE001 - the reason goes to the log, exit 3
        # the log is shown to users: the file's name, not where it lives
        name = os.path.basename(args.model)
        reason = str(error).replace(os.path.abspath(args.model), name)
        reason = reason.replace(args.model, name)
        _logger.error("cannot load %s: %s", name, reason)
        return 3
    keys = Keys(args.keys) if args.keys else None
    log = None
    if args.log_dir and args.log_rate > 0:
        personal = [n.strip() for n in args.log_personal.split(",") if n.strip()]
        log = inference_log.InferenceLog(args.log_dir, args.log_rate, personal)
    _logger.info(
        "serving %s %s on %s:%s", args.name, args.version, args.host, args.port
    )
    config = uvicorn.Config(
        App(model, keys, log=log),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=args.drain_seconds,
        timeout_keep_alive=30,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 4


if __name__ == "__main__":
    sys.exit(main())
