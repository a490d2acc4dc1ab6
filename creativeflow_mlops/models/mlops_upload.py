# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import logging
import math
import re
import uuid
from datetime import timedelta

from odoo import api, fields, models

from ..adapters.storage import StorageError, StoredObject, object_key, sanitize_filename
from ..exceptions import BackendUnavailable, Conflict, InvalidInput, NotFound
from ..services import artifacts

_logger = logging.getLogger(__name__)

MIN_PART = 16 * 1024 * 1024
MAX_PARTS = 10_000


class MlopsUpload(models.Model):
    """A direct multipart upload: the client sends the parts straight to S3
    with presigned URLs; completing it checks the size the store reports and
    registers the version, whose first validation job reads the object back
    and verifies its SHA-256 before any other scan runs (S3 keeps no
    whole-object SHA-256 of a multipart upload, and reading 1 GiB back
    inside the request would cost the client more than the parts). A cron
    aborts the uploads left unfinished."""

    _name = "mlops.upload"
    _description = "MLOps Direct Upload"
    _order = "id desc"

    token = fields.Char(
        required=True, index=True, readonly=True, default=lambda s: uuid.uuid4().hex
    )
    version_id = fields.Many2one("mlops.model.version", ondelete="set null", index=True)
    storage_backend_id = fields.Many2one("mlops.storage.backend", required=True)
    company_id = fields.Many2one("res.company", default=lambda s: s.env.company)
    user_id = fields.Many2one("res.users", default=lambda s: s.env.user, required=True)
    object_key = fields.Char(required=True)
    s3_upload_id = fields.Char(required=True)
    filename = fields.Char()
    content_type = fields.Char()
    size = fields.Float(digits=(20, 0), help="Announced size in bytes.")
    expected_sha256 = fields.Char()
    part_size = fields.Integer()
    part_count = fields.Integer()
    state = fields.Selection(
        [
            ("open", "Open"),
            ("completed", "Completed"),
            ("failed", "Failed"),
            ("aborted", "Aborted"),
        ],
        default="open",
        required=True,
        index=True,
    )
    expires_at = fields.Datetime(required=True, index=True)
    message = fields.Char()

    _sql_constraints = [("token_uniq", "unique (token)", "Upload tokens are unique.")]

    @api.model
    def _start(self, payload):
        """Create the draft version and the multipart upload; return the
        answer of ``POST /uploads``."""
        env = self.env
        if not isinstance(payload, dict):
            raise InvalidInput(env._("The body must be a JSON object."))
        size = payload.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidInput(env._("size must be a positive number of bytes"))
        metadata = dict(payload.get("metadata") or {})
        metadata.setdefault("model", payload.get("model"))
        metadata.setdefault("version", payload.get("version"))
        sha256 = metadata.pop("sha256", None) or payload.get("sha256")
        if sha256 is not None and not (
            isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)
        ):
            error = InvalidInput(env._("sha256 must be 64 hexadecimal digits"))
            error.details = {"sha256": "64 hexadecimal digits"}
            raise error
        metadata = artifacts.parse_metadata(env, metadata)
        try:
            filename = sanitize_filename(payload.get("filename") or "")
        except ValueError as error:
            raise InvalidInput(
                env._("The filename is not usable: %s", error)
            ) from error
        backend = env["mlops.storage.backend"].sudo()._get_default()
        if backend.kind != "s3":
            raise Conflict(
                env._(
                    "Direct uploads need an S3 backend; the default store is a local "
                    "folder: use POST /models/upload."
                )
            )
        part_size = max(MIN_PART, math.ceil(size / MAX_PARTS))
        part_count = math.ceil(size / part_size)
        version = artifacts.create_version(env, metadata)
        version.storage_backend_id = backend
        key = object_key(
            backend._object_prefix(), version.model_id.slug, version.version, filename
        )
        store = backend._get_store()
        try:
            upload_id = store.create_multipart(key, payload.get("content_type"))
            urls = [
                {"part_number": n, "url": store.presigned_part_url(key, upload_id, n)}
                for n in range(1, part_count + 1)
            ]
        except StorageError as error:
            raise BackendUnavailable(str(error)) from error
        upload = self.sudo().create(
            {
                "version_id": version.id,
                "storage_backend_id": backend.id,
                "object_key": key,
                "s3_upload_id": upload_id,
                "filename": filename,
                "content_type": payload.get("content_type"),
                "size": size,
                "expected_sha256": sha256.lower() if sha256 else False,
                "part_size": part_size,
                "part_count": part_count,
                "user_id": env.uid,
                "company_id": version.company_id.id,
                "expires_at": fields.Datetime.now()
                + timedelta(hours=backend.upload_expiry_hours or 24),
            }
        )
        return {"upload_id": upload.token, "part_size": part_size, "parts": urls}

    @api.model
    def _find(self, token):
        upload = self.sudo().search([("token", "=", token)], limit=1)
        if not upload or upload.user_id != self.env.user:
            raise NotFound(self.env._("No upload %s.", token))
        return upload

    def _complete(self, parts):
        """Finish the multipart upload, check its size, register the version
        (its integrity job verifies the content)."""
        self.ensure_one()
        env = self.env
        if self.state != "open":
            raise Conflict(env._("This upload is %s.", self.state))
        if (
            not isinstance(parts, list)
            or not parts
            or not all(
                isinstance(p, dict)
                and isinstance(p.get("part_number"), int)
                and isinstance(p.get("etag"), str)
                for p in parts
            )
        ):
            raise InvalidInput(env._("parts must be a list of {part_number, etag}"))
        store = self.storage_backend_id._get_store()
        try:
            store.complete_multipart(self.object_key, self.s3_upload_id, parts)
            size = store.stat(self.object_key)
        except StorageError as error:
            raise BackendUnavailable(str(error)) from error
        problem = None
        if size != int(self.size):
            problem = env._(
                "%(got)s bytes arrived, %(want)s announced",
                got=size,
                want=int(self.size),
            )
        if problem:
            error = InvalidInput(env._("The upload was refused: %s.", problem))
            error.after_rollback = lambda: self._discard(problem, "failed")
            raise error
        version = self.version_id
        artifacts.register_stored(
            version,
            self.storage_backend_id,
            StoredObject(
                self.object_key,
                size,
                self.expected_sha256 or False,
                store.uri(self.object_key),
            ),
            self.filename,
            self.content_type,
        )
        self.write({"state": "completed"})
        return version

    def _discard(self, message, state):
        """Remove what the upload left: the object or the S3 upload, and the
        draft version it created."""
        store = self.storage_backend_id._get_store()
        try:
            if state == "aborted":
                store.abort_multipart(self.object_key, self.s3_upload_id)
            else:
                store.delete(self.object_key)
        except StorageError as error:
            _logger.warning("cleaning upload %s: %s", self.token, error)
        version = self.version_id.sudo()
        self.sudo().write({"state": state, "message": message, "version_id": False})
        if version.state == "draft":
            version.unlink()

    @api.model
    def _cron_abort_expired(self):
        expired = self.sudo().search(
            [("state", "=", "open"), ("expires_at", "<", fields.Datetime.now())]
        )
        for upload in expired:
            upload._discard(self.env._("not completed in time"), "aborted")
        return len(expired)
