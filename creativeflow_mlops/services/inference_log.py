"""The inference log (docs/reference/monitoring.md): a sample of the calls
each deployment answered, with what was asked and answered, kept in the
object store as JSONL and indexed by request id in PostgreSQL.

- The model server samples (the deployment's ``inference_log_rate``) and
  drops the version's personal fields before it writes anything
  (``model_server/inference_log.py``); the target keeps the files until
  they are collected (``Target.logged_files``).
- ``schedule`` (a cron, every minute) queues one ``collect`` job per target;
  ``collect`` stores each whole file under the deployment
  (``adapters.storage.inference_log_key``), records its batch and indexes
  its calls, then lets the target forget the file once that is committed.
  A file already kept (a job that died after its commit) is only
  forgotten; a store out of reach leaves the files for the next pass.
- KServe's payload logger posts each call's request and response as two
  CloudEvents (``accept_event``, behind ``POST /inference-log`` with the
  target's inference log key): each is stripped of the personal fields and
  waits (``mlops.inference.event``) until ``collect`` joins it with its
  pair, or gives up waiting after ``PAIR_WAIT_SECONDS``, and stores the
  calls as a ``cloudevents`` batch: the same records, the same index.
- ``read_batch`` and ``calls`` read the log back (feedback, drift).
"""

import hashlib
import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import orjson

from odoo import fields
from odoo.tools import SQL

from ..adapters.storage import (
    StorageRefused,
    StorageUnavailable,
    inference_log_key,
)
from ..adapters.targets import TargetFailed
from ..exceptions import InvalidInput, Unauthorized
from . import jobs
from .artifacts import forget_on_rollback
from .serving import KEEP_RUNNING, plan

_logger = logging.getLogger(__name__)

CHANNEL = "root.mlops.monitoring"
# what one file may hold before it is refused whole (the model server
# writes at most a thousand records a file)
MAX_FILE_BYTES = 256 * 1024 * 1024
# what ``BatchRows`` keeps read at most (the files' bytes)
CACHED_BYTES = 64 * 1024 * 1024
# a CloudEvent's body (a call's request or response)
MAX_EVENT_BYTES = 16 * 1024 * 1024
# a request whose response has not come by then is kept alone
PAIR_WAIT_SECONDS = 120
EVENT_TYPES = {
    "org.kubeflow.serving.inference.request": "request",
    "org.kubeflow.serving.inference.response": "response",
}


def schedule(env):
    """Cron: a collection job per target that keeps an inference log, or
    whose payload logger sent events."""
    targets = env["mlops.deployment.target"].sudo().search([])
    waiting = set(
        env["mlops.inference.event"].sudo().search([]).deployment_id.target_id.ids
    )
    minute = int(time.time() // 60)
    queued = 0
    for target in targets:
        if not target._capabilities().inference_log and target.id not in waiting:
            continue
        jobs.as_platform(target).with_delay(
            channel=CHANNEL,
            identity_key=f"mlops-inference-log-{target.id}-{minute}",
            description=env._("Inference log of %s", target.name),
        )._collect_inference_log()
        queued += 1
    return queued


def collect(target):
    """Job: every whole file the target's model servers wrote, stored and
    indexed. Returns what it kept."""
    env = target.env
    client = target._get_client()
    try:
        kept = _pair_events(target)
    except (StorageUnavailable, StorageRefused) as error:
        return f"the store refused the payload logger's calls: {error}"
    try:
        waiting = client.logged_files()
    except TargetFailed as error:
        return f"the target cannot be read: {error}"
    Deployment = env["mlops.deployment"].sudo()
    for key, files in sorted(waiting.items()):
        deployment = Deployment.browse(_deployment_id(key)).exists()
        if not deployment or deployment.target_id != target:
            # no deployment of this target: nothing to attribute them to
            for name, _path in files:
                _after_commit(env, client, key, name)
            continue
        for name, path in files:
            if _kept_already(deployment, name):
                _after_commit(env, client, key, name)
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)
            except OSError as error:
                _logger.warning("inference log %s not read: %s", path, error)
                continue
            try:
                batch = store(deployment, name, data, "runtime")
            except (StorageUnavailable, StorageRefused) as error:
                # the files wait for the next pass
                _logger.warning("inference log not stored: %s", error)
                return f"{kept} batches kept; the store refused: {error}"
            _after_commit(env, client, key, name)
            kept += 1 if batch else 0
    return f"{kept} batches kept"


def _deployment_id(key):
    return int(key[1:]) if key[:1] == "d" and key[1:].isdigit() else 0


def _kept_already(deployment, name):
    return bool(
        deployment.env["mlops.inference.batch"]
        .sudo()
        .search_count(
            [("deployment_id", "=", deployment.id), ("name", "=", name)], limit=1
        )
    )


def _after_commit(env, client, key, name):
    def forget():
        try:
            client.forget_logged(key, name)
        except OSError as error:
            _logger.warning("inference log %s/%s not removed: %s", key, name, error)

    env.cr.postcommit.add(forget)


def parse(data):
    """The records of a JSONL file; lines that are not JSON objects are
    skipped (a file cut short by a crash keeps its whole lines)."""
    rows = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def scrub(row, personal):
    """``row`` without the inputs, outputs and parameters named
    ``personal`` (the model server did so already; KServe's logger does
    not)."""
    if not personal:
        return row
    clean = dict(row)
    for part in ("inputs", "outputs"):
        if isinstance(clean.get(part), list):
            clean[part] = [
                t
                for t in clean[part]
                if not (isinstance(t, dict) and t.get("name") in personal)
            ]
    if isinstance(clean.get("parameters"), dict):
        clean["parameters"] = {
            k: v for k, v in clean["parameters"].items() if k not in personal
        }
    return clean


def store(deployment, name, data, source):
    """Keep ``data`` (JSONL) as ``deployment``'s log file ``name``: the
    object, its batch, its calls' index. None when it holds no record."""
    env = deployment.env
    if len(data) > MAX_FILE_BYTES:
        _logger.warning("inference log %s: larger than %d bytes", name, MAX_FILE_BYTES)
        return None
    personal = deployment.version_id._personal_field_names()
    rows = [scrub(row, personal) for row in parse(data)]
    if not rows:
        return None
    body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    version = deployment.version_id
    backend = (
        version.storage_backend_id or env["mlops.storage.backend"].sudo()._get_default()
    )
    model = version.model_id
    key = inference_log_key(
        backend._object_prefix(),
        f"c{model.company_id.id}",
        model.slug,
        f"d{deployment.id}",
        name,
    )
    stored = backend._get_store().put_bytes(key, body, "application/x-ndjson")
    forget_on_rollback(env, backend, key)
    times = [fields.Datetime.to_datetime(_at(row)) for row in rows if _at(row)]
    batch = (
        env["mlops.inference.batch"]
        .sudo()
        .create(
            {
                "name": name,
                "deployment_id": deployment.id,
                "source": source,
                "storage_backend_id": backend.id,
                "object_key": key,
                "uri": stored.uri,
                "rows": len(rows),
                "size": len(body),
                "first_at": min(times) if times else False,
                "last_at": max(times) if times else False,
            }
        )
    )
    _index(batch, rows)
    return batch


def _at(row):
    """The record's time as Odoo stores it (naive UTC), or None."""
    value = row.get("at")
    if not isinstance(value, str) or len(value) < 19:
        return None
    return value[:19].replace("T", " ")


def _index(batch, rows):
    """One index row per call, in one statement."""
    columns = {
        "request_id": [],
        "line": [],
        "at": [],
        "status": [],
        "latency_ms": [],
    }
    for line, row in enumerate(rows):
        request_id = row.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            continue
        columns["request_id"].append(request_id[:128])
        columns["line"].append(line)
        columns["at"].append(_at(row))
        status = row.get("status")
        columns["status"].append(status if isinstance(status, int) else None)
        latency = row.get("latency_ms")
        columns["latency_ms"].append(
            float(latency) if isinstance(latency, int | float) else None
        )
    if not columns["request_id"]:
        return
    batch.env.cr.execute(
        SQL(
            "INSERT INTO mlops_inference_record "
            "(batch_id, deployment_id, company_id, request_id, line, at, status, "
            "latency_ms) "
            "SELECT %s, %s, %s, r, l, a, s, m FROM unnest("
            "%s::varchar[], %s::int[], %s::timestamp[], %s::int[], %s::float8[]"
            ") AS t(r, l, a, s, m)",
            batch.id,
            batch.deployment_id.id,
            batch.company_id.id,
            columns["request_id"],
            columns["line"],
            columns["at"],
            columns["status"],
            columns["latency_ms"],
        )
    )
    batch.env["mlops.inference.record"].invalidate_model()


def read_batch(batch):
    """The records of ``batch``, read back from the object store."""
    store_ = batch.storage_backend_id._get_store()
    with store_.open(batch.object_key) as handle:
        return parse(handle.read())


class BatchRows:
    """The rows of log files, each read once and kept until the files kept
    hold ``limit`` bytes (then the oldest are let go together)."""

    def __init__(self, limit=CACHED_BYTES):
        self.limit = limit
        self.kept = {}
        self.size = 0

    def __call__(self, batch):
        rows = self.kept.get(batch.id)
        if rows is None:
            if self.kept and self.size + batch.size > self.limit:
                self.kept.clear()
                self.size = 0
            rows = self.kept[batch.id] = batch.sudo()._read_rows()
            self.size += batch.size
        return rows


def calls(env, request_ids, model=None, read=None):
    """{request id: its logged record} for those of ``request_ids`` that
    were logged (and that the caller may read), of ``model``'s deployments
    only when it is given. ``read`` (a ``BatchRows``) keeps the files read
    for the next call."""
    domain = [("request_id", "in", list(request_ids))]
    if model is not None:
        domain.append(("deployment_id.model_id", "=", model.id))
    read = read or BatchRows()
    by_batch = defaultdict(list)
    for record in env["mlops.inference.record"].search(domain):
        by_batch[record.batch_id].append(record)
    found = {}
    for batch, records in by_batch.items():
        rows = read(batch)
        for record in records:
            if record.line < len(rows):
                found[record.request_id] = rows[record.line]
    return found


# ---------------------------------------------------------------------------
# KServe's payload logger
# ---------------------------------------------------------------------------


def key_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def target_for_key(env, authorization):
    """The target whose inference log key is the bearer token sent, or
    ``Unauthorized``."""
    scheme, _sep, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            env._("Send the target's inference log key as 'Authorization: Bearer'.")
        )
    target = (
        env["mlops.deployment.target"]
        .sudo()
        .search([("inference_log_key_hash", "=", key_digest(token.strip()))], limit=1)
    )
    if not target:
        raise Unauthorized(env._("The inference log key is not valid."))
    return target


def accept_event(target, headers, payload):
    """Keep one CloudEvent of KServe's payload logger for ``target``: the
    deployment it names (``ce-inferenceservicename``: the colour's object
    on the target), its id and kind, its body without personal fields."""
    env = target.env
    problems = {}
    request_id = (headers.get("ce-id") or "").strip()
    if not request_id or len(request_id) > 128:
        problems["ce-id"] = "the call's id, 1 to 128 characters"
    kind = EVENT_TYPES.get(headers.get("ce-type") or "")
    if not kind:
        problems["ce-type"] = f"one of {', '.join(sorted(EVENT_TYPES))}"
    deployment = _deployment_named(target, headers.get("ce-inferenceservicename"))
    if not deployment:
        problems["ce-inferenceservicename"] = "a deployment serving on this target"
    if not isinstance(payload, dict):
        problems["body"] = "the call's JSON object"
    if problems:
        error = InvalidInput(env._("The CloudEvent is not one of this target's calls."))
        error.details = problems
        raise error
    personal = deployment.version_id._personal_field_names()
    Event = env["mlops.inference.event"].sudo()
    if Event.search_count(
        [
            ("deployment_id", "=", deployment.id),
            ("request_id", "=", request_id),
            ("kind", "=", kind),
        ],
        limit=1,
    ):
        return None  # delivered again: kept once
    return Event.create(
        {
            "deployment_id": deployment.id,
            "request_id": request_id,
            "kind": kind,
            "payload": scrub(payload, personal),
        }
    )


def _deployment_named(target, name):
    if not name:
        return None
    client = target._get_client()
    deployments = (
        target.env["mlops.deployment"]
        .sudo()
        .search([("target_id", "=", target.id), ("state", "in", KEEP_RUNNING)])
    )
    for deployment in deployments:
        if client.object_name(plan(deployment)) == name:
            return deployment
    return None


def _pair_events(target):
    """Store the payload logger's calls of ``target`` that have both halves,
    or waited long enough for the other; the number of batches kept."""
    env = target.env
    Event = env["mlops.inference.event"].sudo()
    events = Event.search([("deployment_id.target_id", "=", target.id)])
    if not events:
        return 0
    stale = fields.Datetime.now() - timedelta(seconds=PAIR_WAIT_SECONDS)
    kept = 0
    for deployment in events.deployment_id:
        rows, done = [], Event.browse()
        mine = events.filtered(lambda e, d=deployment: e.deployment_id == d)
        for request_id in dict.fromkeys(mine.mapped("request_id")):
            halves = mine.filtered(lambda e, r=request_id: e.request_id == r)
            request = halves.filtered(lambda e: e.kind == "request")[:1]
            response = halves.filtered(lambda e: e.kind == "response")[:1]
            if not (request and response) and min(halves.mapped("received_at")) > stale:
                continue  # its other half may still come
            rows.append(_event_row(deployment, request_id, request, response))
            done |= halves
        if rows:
            body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
            store(deployment, f"ce-{uuid.uuid4().hex}", body, "cloudevents")
            done.unlink()
            kept += 1
    return kept


def _event_row(deployment, request_id, request, response):
    first = (request or response).received_at
    row = {
        "request_id": request_id,
        "at": first.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "model": deployment.model_id.slug,
        "version": deployment.version_id.version,
        "status": 200 if response else None,
        "inputs": _tensors(request.payload, "inputs", "instances") if request else [],
        "outputs": _tensors(response.payload, "outputs", "predictions")
        if response
        else [],
    }
    parameters = (request.payload or {}).get("parameters") if request else None
    if isinstance(parameters, dict):
        row["parameters"] = parameters
    return row


def _tensors(payload, v2, v1):
    """The tensors of an Open Inference Protocol payload (``inputs``,
    ``outputs``), or KServe's v1 ``instances``/``predictions`` as one
    tensor of that name."""
    payload = payload or {}
    if isinstance(payload.get(v2), list):
        return payload[v2]
    rows = payload.get(v1)
    if not isinstance(rows, list) or not rows:
        return []
    if all(isinstance(r, list) for r in rows) and len({len(r) for r in rows}) == 1:
        width = len(rows[0])
        data = [value for r in rows for value in r]
        return [{"name": v1, "shape": [len(rows), width], "data": data}]
    return [{"name": v1, "shape": [len(rows)], "data": rows}]
