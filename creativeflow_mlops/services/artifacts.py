"""Storing artifacts and registering uploaded versions."""

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile

from odoo import fields

from ..adapters.storage import (
    CHUNK_SIZE,
    StorageRefused,
    StorageUnavailable,
    sanitize_filename,
)
from ..exceptions import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    MalformedJson,
)
from ..utils import NulCharacter, parse_json
from . import errors
from .metadata import check as check_metadata

_logger = logging.getLogger(__name__)

METADATA_FIELDS = {
    "model",
    "version",
    "model_format",
    "interface_type",
    "task_type",
    "description",
    "parameters",
    "metrics",
    "lineage",
    "signature",
    "personal_fields",
}
LINEAGE_FIELDS = {
    "source_run": "source_run",
    "dataset": "dataset",
    "git_commit": "git_commit",
}  # parent_version, looked up among the model's versions, and
# feedback_export, among its finished exports


def store_artifact(version, stream, filename, content_type=None, max_size=None):
    """Stream ``stream`` into the version's store, then move the draft to
    ``validating`` and queue its scans. Nothing half-written survives a
    failure: the adapter removes a partial object, the caller's transaction
    loses the record."""
    env = version.env
    try:
        filename = sanitize_filename(filename or "")
    except ValueError as error:
        raise InvalidInput(env._("The filename is not usable: %s", error)) from error
    backend = (
        version.storage_backend_id or env["mlops.storage.backend"].sudo()._get_default()
    )
    if not backend:
        raise BackendUnavailable(env._("No artifact storage backend is configured."))
    key = version.model_id._artifact_key(backend, version.version, filename)
    reserve_key(env, backend, key)
    with errors.backend_call(
        what=env._("The artifact store cannot take the artifact now")
    ):
        stored = backend._get_store().put_stream(key, stream, content_type, max_size)
    forget_on_rollback(env, backend, key)
    try:
        register_stored(version, backend, stored, filename, content_type)
    except BaseException:
        # the record goes with the transaction; the object must go too
        with contextlib.suppress(StorageUnavailable, StorageRefused):
            backend._get_store().delete(key)
        raise
    return stored


def register_stored(
    version, backend, stored, filename, content_type, integrity_report=None
):
    """Record a stored, hashed artifact on its draft version and queue its
    scans. ``integrity_report``: the object was already read back (a direct
    upload's verification), and that settles the round's integrity check."""
    if not stored.size:
        # nothing to validate or serve; the caller removes the object
        error = InvalidInput(version.env._("The artifact is empty (0 bytes)."))
        error.details = {"file": "at least one byte"}
        raise error
    values = {
        "storage_backend_id": backend.id,
        "artifact_object_key": stored.key,
        "artifact_uri": stored.uri,
        "artifact_size": stored.size,
        "artifact_sha256": stored.sha256,
        "artifact_filename": filename,
        "artifact_content_type": content_type or "application/octet-stream",
        "state": "validating",
    }
    if integrity_report is not None and integrity_report.state == "passed":
        values["artifact_verified_at"] = fields.Datetime.now()
    version.sudo().write(values)
    version._enqueue_validation(integrity_report=integrity_report)


def parse_metadata(env, raw):
    """The ``metadata`` part of an upload, checked: a dict of clean values."""
    if isinstance(raw, str | bytes):
        try:
            raw = parse_json(raw)
        except NulCharacter as error:
            refused = InvalidInput(env._("metadata: %s", error))
            refused.details = {error.path: "text without a NUL character"}
            raise refused from None
        except ValueError as error:
            raise MalformedJson(
                env._("metadata is not valid JSON: %s", error)
            ) from error
    if not isinstance(raw, dict):
        raise InvalidInput(env._("metadata must be a JSON object"))
    unknown = set(raw) - METADATA_FIELDS
    if unknown:
        raise InvalidInput(
            env._("unknown metadata fields: %s", ", ".join(sorted(unknown)))
        )
    raw, problems = check_metadata(raw)
    if problems:
        error = InvalidInput(env._("The metadata has invalid values."))
        error.details = problems
        raise error
    return raw


def _check_new_version(env, model, version):
    if env["mlops.model.version"].search_count(
        [("model_id", "=", model.id), ("version", "=", version)]
    ):
        raise Conflict(
            env._(
                "Model %(model)s already has a version %(version)s.",
                model=model.name,
                version=version,
            )
        )


def _create_model(env, metadata):
    values = {"name": metadata["model"]}
    if metadata.get("task_type"):
        values["task_type"] = metadata["task_type"]
    return env["mlops.model"].create(values)


def create_version(env, metadata):
    """The model (found by name in the company, or created) and a new draft
    version, with the caller's rights."""
    Model = env["mlops.model"]
    model = Model.search([("name", "=", metadata["model"])], limit=1)
    if not model:
        model = _create_model(env, metadata)
    _check_new_version(env, model, metadata["version"])
    lineage = metadata.get("lineage") or {}
    signature = metadata.get("signature") or {}
    values = {
        "model_id": model.id,
        "version": metadata["version"],
        "model_format": metadata["model_format"],
        "interface_type": metadata.get("interface_type") or "kserve_v2",
        "description": metadata.get("description"),
        "parameters": metadata.get("parameters"),
        "metrics": metadata.get("metrics"),
        "input_schema": signature.get("inputs"),
        "output_schema": signature.get("outputs"),
        "personal_fields": ",".join(metadata.get("personal_fields") or ()) or False,
    }
    values.update({field: lineage.get(key) for key, field in LINEAGE_FIELDS.items()})
    if lineage.get("parent_version"):
        parent = env["mlops.model.version"].search(
            [("model_id", "=", model.id), ("version", "=", lineage["parent_version"])],
            limit=1,
        )
        values["parent_version_id"] = parent.id
    if lineage.get("feedback_export") is not None:
        values["feedback_export_id"] = (
            env["mlops.feedback.export"]
            ._find_named(model, lineage["feedback_export"])
            .id
        )
    return env["mlops.model.version"].create(values)


def register_upload(env, metadata, stream, filename, content_type=None, max_size=None):
    """Create the version and store its artifact, all or nothing."""
    metadata = parse_metadata(env, metadata)
    with env.cr.savepoint():
        version = create_version(env, metadata)
        store_artifact(version, stream, filename, content_type, max_size)
    return version


def plan_streamed_upload(env, metadata):
    """Before the body of an upload arrives: refuse a duplicate version, and
    say where the artifact will go: (backend, model). A new model is
    created now (in the request's transaction), so its slug, and with it the
    object key, is its own before a byte is written."""
    Model = env["mlops.model"]
    model = Model.search([("name", "=", metadata["model"])], limit=1)
    if model:
        _check_new_version(env, model, metadata["version"])
    else:
        model = _create_model(env, metadata)
    backend = env["mlops.storage.backend"].sudo()._get_default()
    if not backend:
        raise BackendUnavailable(env._("No artifact storage backend is configured."))
    return backend, model


def reserve_key(env, backend, key):
    """Hold an object key until the transaction ends: a second upload to the
    same place meanwhile is refused (409) rather than overwriting it."""
    digest = hashlib.sha256(f"{backend.id}:{key}".encode()).digest()
    env.cr.execute(
        "SELECT pg_try_advisory_xact_lock(%s)",
        [int.from_bytes(digest[:8], "big", signed=True)],
    )
    if not env.cr.fetchone()[0]:
        raise Conflict(
            env._("Another upload is writing %s right now; try again later.", key)
        )


def register_streamed(env, metadata, writer, backend, filename, content_type=None):
    """Register a version whose artifact was streamed into ``writer`` while
    the request arrived; all or nothing."""
    try:
        metadata = parse_metadata(env, metadata)
        with env.cr.savepoint():
            version = create_version(env, metadata)
            version.sudo().storage_backend_id = backend
            expected = version.model_id._artifact_key(
                backend, version.version, sanitize_filename(filename or "")
            )
            if expected != writer.key:
                raise InvalidInput(env._("The artifact does not match the metadata."))
            with errors.backend_call(
                what=env._("The artifact store cannot take the artifact now")
            ):
                stored = writer.close()
            forget_on_rollback(env, backend, writer.key)
            register_stored(
                version, backend, stored, writer.key.rsplit("/", 1)[-1], content_type
            )
    except BaseException:
        writer.abort()
        raise
    return version


def forget_on_rollback(env, backend, key):
    """The object goes if the transaction that records it is rolled back
    (say, another field of the same form save fails): no record, no object."""
    store = backend._get_store()

    def forget():
        try:
            store.delete(key)
        except (StorageUnavailable, StorageRefused) as error:
            _logger.warning("removing %s after a rollback: %s", key, error)

    env.cr.postrollback.add(forget)


@contextlib.contextmanager
def local_copy(version):
    """The version's artifact as a local file: in place for a local store,
    else a temporary copy streamed from the store, whose SHA-256 must be
    the registered one (a scan looks at the bytes the integrity check
    vouched for)."""
    store = version.storage_backend_id._get_store()
    key = version.artifact_object_key
    local = store.local_path(key)
    if local is not None:
        yield local
        return
    folder = tempfile.mkdtemp(prefix="mlops-scan-")
    try:
        path = os.path.join(folder, os.path.basename(key))
        sha = hashlib.sha256()
        with store.open(key) as source, open(path, "wb") as target:
            while chunk := source.read(CHUNK_SIZE):
                sha.update(chunk)
                target.write(chunk)
        if version.artifact_sha256 and sha.hexdigest() != version.artifact_sha256:
            raise StorageRefused(
                f"{key} changed in the store since it was registered (its SHA-256 "
                "differs)"
            )
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
