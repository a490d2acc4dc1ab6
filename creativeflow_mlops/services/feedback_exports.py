"""Feedback exports for retraining (docs/reference/monitoring.md): a model's
feedback of a period, each joined by its request id to what the call was
asked and answered (the inference log, already without the version's
personal fields), as one JSONL object in the object store.

- ``request`` records the export (``queued``); however it is made (the
  API, the form), ``queue`` queues its ``build`` (identity: the export).
- ``build`` streams the lines to a spooled file, 1,000 feedback at a time,
  reading each log file once, and stores them beside the models
  (``feedback-export/c<company>/<model>/<export>.jsonl``); the export keeps
  the object's URI, size and SHA-256, its line count and how many found
  their call. A store out of reach is tried again (queue_job's retry
  pattern); on the last try, or when the store refuses, the export fails
  with the reason and nothing of it is left in the store.
- ``find`` resolves what a new version names as its
  ``lineage.feedback_export`` (the export's id or URI): the version keeps
  it, and the export lists the versions trained on it.
"""

import json
import tempfile

import orjson

from odoo import fields
from odoo.tools import split_every

from ..adapters.storage import feedback_export_key
from ..exceptions import Conflict
from . import jobs
from .artifacts import forget_on_rollback
from .inference_log import BatchRows, calls, scrub
from .serializers import timestamp

CHANNEL = "root.mlops.monitoring"
CHUNK = 1000
# what of a logged call the export carries
CALL_KEYS = ("at", "status", "latency_ms", "inputs", "outputs", "parameters")
SPOOL_BYTES = 16 * 1024 * 1024


def request(env, model, since=None, until=None):
    """A new export of ``model``'s feedback submitted in [since, until),
    queued (by its ``create``); with the caller's rights."""
    return env["mlops.feedback.export"].create(
        {"model_id": model.id, "since": since or False, "until": until or False}
    )


def queue(exports):
    """The ``build`` job of each new export."""
    for export in exports:
        jobs.as_platform(export).with_delay(
            channel=CHANNEL,
            identity_key=f"mlops-feedback-export-{export.id}",
            max_retries=5,
            description=export.env._("Feedback export of %s", export.model_id.name),
        )._build()


def _feedback(export):
    domain = [("model_id", "=", export.model_id.id)]
    if export.since:
        domain.append(("submitted_at", ">=", export.since))
    if export.until:
        domain.append(("submitted_at", "<", export.until))
    return export.env["mlops.feedback"].sudo().search(domain, order="id")


def line(feedback, call):
    """One exported line: the feedback, and its call when it was logged.
    The feedback's structured data (an object) leaves the version's
    personal fields out of its keys too."""
    version = feedback.version_id
    personal = version._personal_field_names()
    data = feedback.data
    if isinstance(data, dict) and personal:
        data = {k: v for k, v in data.items() if k not in personal}
    if call is not None:
        call = scrub({k: call[k] for k in CALL_KEYS if k in call}, personal)
    return {
        "feedback_id": feedback.id,
        "submitted_at": timestamp(feedback.submitted_at),
        "version": version.version,
        "version_id": version.id,
        "deployment_id": feedback.deployment_id.id or None,
        "environment": feedback.deployment_id.environment or None,
        "request_id": feedback.generation_request_id or None,
        "rating": feedback.rating or None,
        "comment": feedback.comment or None,
        "data": data or None,
        "call": call,
    }


def build(export):
    """Job: write and store the export; what happened, as the job's result."""
    jobs.lock(export)
    if export.state != "queued":
        return f"already {export.state}"
    written, problem = jobs.attempt(
        export.env, lambda: _write(export), "exporting the feedback"
    )
    if problem:
        export.write({"state": "failed", "error": problem})
        return problem
    export.write({**written, "state": "done", "finished_at": fields.Datetime.now()})
    return f"{written['lines']} feedback, {written['logged_lines']} with their call"


def _json_line(row):
    try:
        return orjson.dumps(row) + b"\n"
    except orjson.JSONEncodeError:
        # an integer past 64 bits in feedback's data: the standard library
        # writes any JSON the API accepted
        return json.dumps(row).encode() + b"\n"


def _write(export):
    """The export's lines, stored: the values the export keeps."""
    env, model = export.env, export.model_id
    backend = env["mlops.storage.backend"].sudo()._get_default()
    key = feedback_export_key(
        backend._object_prefix(), f"c{model.company_id.id}", model.slug, export.id
    )
    lines = logged = 0
    read = BatchRows()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for ids in split_every(CHUNK, _feedback(export).ids):
            chunk = env["mlops.feedback"].sudo().browse(ids)
            requested = {f.generation_request_id for f in chunk}
            found = calls(env, requested - {False}, model=model, read=read)
            for feedback in chunk:
                call = found.get(feedback.generation_request_id)
                logged += call is not None
                lines += 1
                spool.write(_json_line(line(feedback, call)))
            chunk.invalidate_recordset()
        spool.seek(0)
        stored = backend._get_store().put_stream(key, spool, "application/x-ndjson")
    forget_on_rollback(env, backend, key)
    return {
        "storage_backend_id": backend.id,
        "object_key": key,
        "uri": stored.uri,
        "sha256": stored.sha256,
        "size": stored.size,
        "lines": lines,
        "logged_lines": logged,
    }


def find(env, model, named):
    """The finished export of ``model`` that a version's lineage names (its
    id, or its URI), or ``Conflict`` (what the metadata's schema cannot
    say); the model's ``_find_named``."""
    Export = env["mlops.feedback.export"]
    domain = [("model_id", "=", model.id), ("state", "=", "done")]
    if isinstance(named, int) or (
        isinstance(named, str) and named.isascii() and named.isdigit()
    ):
        export = Export.search([*domain, ("id", "=", int(named))], limit=1)
    else:
        export = Export.search([*domain, ("uri", "=", named)], limit=1)
    if not export:
        error = Conflict(
            f"lineage.feedback_export: no finished feedback export of "
            f"{model.name} is {named!r}"
        )
        error.details = {"lineage.feedback_export": "a finished export of the model"}
        raise error
    return export


def download_path(export):
    """Where the export's file is downloaded (a browser's session or an API
    key; S3 answers with a presigned URL)."""
    return f"/mlops/feedback-exports/{export.id}/download"


def to_json(export):
    """GET /feedback/export/<id> (docs/reference/api.md)."""
    return {
        "export_id": export.id,
        "model_id": export.model_id.id,
        "since": timestamp(export.since),
        "until": timestamp(export.until),
        "state": export.state,
        "artifact": {
            "uri": export.uri,
            "sha256": export.sha256,
            "size": export.size,
            "download_url": download_path(export),
        }
        if export.state == "done"
        else None,
        "lines": export.lines,
        "logged_lines": export.logged_lines,
        "error": export.error or None,
        "versions": export.version_ids.ids,
        "created_at": timestamp(export.create_date),
        "finished_at": timestamp(export.finished_at),
    }
