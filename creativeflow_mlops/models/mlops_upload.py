# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import logging
import math
import re
import uuid
from datetime import timedelta

from odoo import api, fields, models

from ..adapters.storage import (
    StorageError,
    StorageRefused,
    StorageUnavailable,
    StoredObject,
    sanitize_filename,
)
from ..exceptions import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from ..scanners import integrity
from ..services import artifacts, errors, jobs, settings
from ..services import metadata as metadata_rules

_logger = logging.getLogger(__name__)

# a media type (RFC 6838 names), sent to the store as a header
CONTENT_TYPE_PATTERN = (
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
MIN_PART = 16 * 1024 * 1024
MAX_PARTS = 10_000
MAX_TRIES = 8


class MlopsUpload(models.Model):
    """A direct multipart upload: the client sends the parts straight to the
    store with presigned URLs (S3's own; for a local store, the addon's
    signed part route, ``services.upload_parts``). Completing it checks the
    parts the store holds and the size, then a queued job reads the object
    back, hashes it and only then registers the version (draft ->
    validating); S3 keeps no whole-object SHA-256 of a multipart upload, and
    reading the object back inside the request would cost the client most of
    what the direct path saves. A cron aborts the uploads left unfinished."""

    _name = "mlops.upload"
    _inherit = ["mlops.guarded.mixin"]
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
            ("verifying", "Verifying"),
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
    cleanup_pending = fields.Boolean(
        help="The object could not be deleted (store unreachable): the cron retries."
    )

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
        limit_gb = settings.get(env, "max_direct_upload_gb")
        if size > limit_gb * 1024**3:
            # the size asked is out of range (the body itself is small)
            error = InvalidInput(
                env._("Direct uploads are limited to %s GiB.", limit_gb)
            )
            error.details = {"size": f"at most {limit_gb * 1024**3} bytes"}
            raise error
        content_type = payload.get("content_type")
        if content_type is not None and not (
            isinstance(content_type, str)
            and re.fullmatch(metadata_rules.CONTENT_TYPE_PATTERN, content_type)
        ):
            # it is sent to the store as a header: ASCII, a media type
            error = InvalidInput(
                env._(
                    "content_type is a media type, e.g. %s", "application/octet-stream"
                )
            )
            error.details = {"content_type": "a media type: type/subtype"}
            raise error
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidInput(env._("metadata must be a JSON object"))
        metadata = dict(metadata)
        # the top-level names obey the metadata's rules, used or not
        given = {
            k: payload[k] for k in ("model", "version") if payload.get(k) is not None
        }
        if given:
            _clean, problems = metadata_rules.check(
                {"model": "m", "version": "1", "model_format": "onnx", **given}
            )
            problems = {k: v for k, v in problems.items() if k in given}
            if problems:
                error = InvalidInput(
                    env._("The upload's model or version is not valid.")
                )
                error.details = problems
                raise error
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
        part_size = max(MIN_PART, math.ceil(size / MAX_PARTS))
        part_count = math.ceil(size / part_size)
        self._replace_own_open_upload(metadata)
        version = artifacts.create_version(env, metadata)
        version.sudo().storage_backend_id = backend
        key = version.model_id._artifact_key(backend, version.version, filename)
        store = backend._get_store()
        with errors.backend_call():
            upload_id = store.create_multipart(key, payload.get("content_type"))
            urls = [
                {"part_number": n, "url": store.presigned_part_url(key, upload_id, n)}
                for n in range(1, part_count + 1)
            ]
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

    # ------------------------------------------------------------------
    # Actions (Operations → Direct Uploads, managers)
    # ------------------------------------------------------------------

    def action_abort(self):
        """Abort open uploads: the S3 upload and the draft version go."""
        self._check_can_abort()
        for upload in self:
            upload._discard(self.env._("aborted by %s", self.env.user.name), "aborted")
        return True

    def action_verify_again(self):
        """Queue the verification of uploads left ``verifying`` once more."""
        self._check_state_in(("verifying",), self.env._("verified again"))
        for upload in self:
            upload._queue_verification()
        return True

    def _check_can_abort(self):
        self._check_state_in(("open",), self.env._("aborted"))

    def _check_state_in(self, states, what):
        wrong = self.filtered(lambda u: u.state not in states)
        if wrong:
            raise Conflict(
                self.env._(
                    "Only %(states)s uploads can be %(what)s.",
                    states=", ".join(states),
                    what=what,
                )
            )

    @api.model
    def _replace_own_open_upload(self, metadata):
        """The caller starts again the upload of a version they left open
        (a crashed client): the old one is aborted so the version is free."""
        previous = self.sudo().search(
            [
                ("state", "=", "open"),
                ("user_id", "=", self.env.uid),
                ("version_id.model_id.name", "=", metadata["model"]),
                ("version_id.version", "=", metadata["version"]),
                ("version_id.state", "=", "draft"),
            ]
        )
        for upload in previous:
            upload._discard(self.env._("replaced by a new upload"), "aborted")

    @api.model
    def _find(self, token):
        # tokens are uuid4 hex: anything else (NUL included) is no upload
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            raise NotFound(self.env._("No upload %s.", repr(token)[:80]))
        upload = self.sudo().search([("token", "=", token)], limit=1)
        if not upload or upload.user_id != self.env.user:
            raise NotFound(self.env._("No upload %s.", token))
        return upload

    def _complete(self, parts):
        """Finish the multipart upload and register the version.

        Nothing is asked of the store until the request is consistent with
        what the store holds (ListParts): a part that has not arrived is a
        409 and an ETag that differs a 422, both leaving the upload open so
        the client can send the part and complete again; a total size that
        differs from the announced one removes the upload and its draft.
        The content is verified by the version's integrity job."""
        self.ensure_one()
        env = self.env
        # two completions of one upload: the second waits, then sees it done
        jobs.lock(self)
        if self.state != "open":
            raise Conflict(env._("This upload is %s.", self.state))
        if self.expires_at < fields.Datetime.now():
            raise Conflict(env._("This upload expired; start a new one."))
        claimed = self._check_parts(parts)
        expected = range(1, self.part_count + 1)
        store = self.storage_backend_id._get_store()
        try:
            arrived = {
                part["part_number"]: part
                for part in store.list_parts(self.object_key, self.s3_upload_id)
            }
        except StorageRefused as error:
            if error.code != "NoSuchUpload":
                raise BackendUnavailable(str(error)) from error
            if self._already_assembled(store):
                # an earlier completion reached the store, its answer did not
                return self._start_verification()
            problem = env._("the store no longer has this upload")
            conflict = Conflict(
                env._("The upload was refused: %s; start a new one.", problem)
            )
            conflict.after_rollback = lambda: self._discard_after_rollback(
                problem, "failed"
            )
            raise conflict from error
        except StorageError as error:
            raise errors.to_contract(error) from error
        missing = [number for number in expected if number not in arrived]
        if missing:
            error = Conflict(
                env._(
                    "%(count)s of %(total)s parts have not arrived in the store yet "
                    "(first: %(first)s); send them, then complete again.",
                    count=len(missing),
                    total=self.part_count,
                    first=missing[0],
                )
            )
            error.details = {"missing_parts": missing[:1000]}
            raise error
        differing = [n for n in expected if claimed.get(n) != arrived[n]["etag"]]
        if differing:
            error = InvalidInput(
                env._(
                    "The ETags of %(count)s parts differ from those the store holds "
                    "or are missing from the request (first: part %(first)s).",
                    count=len(differing),
                    first=differing[0],
                )
            )
            error.details = {"etag_mismatch": differing[:1000]}
            raise error
        size = sum(arrived[number]["size"] or 0 for number in expected)
        if size != int(self.size):
            problem = env._(
                "%(got)s bytes arrived, %(want)s announced",
                got=size,
                want=int(self.size),
            )
            error = InvalidInput(env._("The upload was refused: %s.", problem))
            error.after_rollback = lambda: self._discard_after_rollback(
                problem, "failed"
            )
            raise error
        # a refusal here is the store's own rules (say, a part under its
        # minimum size)
        with errors.backend_call(refused=InvalidInput):
            store.complete_multipart(
                self.object_key,
                self.s3_upload_id,
                [{"part_number": n, "etag": arrived[n]["etag"]} for n in expected],
            )
            stored_size = store.stat(self.object_key)
        if stored_size != size:
            problem = env._(
                "the store assembled %(got)s bytes from parts of %(want)s",
                got=stored_size,
                want=size,
            )
            error = InvalidInput(env._("The upload was refused: %s.", problem))
            error.after_rollback = lambda: self._discard_after_rollback(
                problem, "failed", completed=True
            )
            raise error
        return self._start_verification()

    def _already_assembled(self, store):
        with errors.backend_call():
            return store.stat(self.object_key) == int(self.size)

    def _start_verification(self):
        """The object is whole in the store: queue the job that reads it back
        and registers the version. The version stays ``draft`` (artifact not
        complete yet) until its SHA-256 is known."""
        self.write({"state": "verifying"})
        self._queue_verification()
        return self.version_id

    def _queue_verification(self):
        self.with_delay(
            identity_key=f"mlops-upload-verify-{self.id}",
            max_retries=MAX_TRIES,
            description=self.env._(
                "Verify the upload of %s", self.version_id.display_name
            ),
        )._verify()

    def _verify(self):
        """Queued job: read the assembled object back, hash it and register
        the version (``validating``, its integrity result settled from what
        was read). An announced SHA-256 stays the registered one, so a
        version whose bytes differ fails its integrity check now and on
        every re-validation. Idempotent, under the upload's row lock;
        whatever goes wrong for good settles the upload rather than leaving
        it ``verifying``."""
        self.ensure_one()
        upload = jobs.lock(self.sudo())
        if upload.state != "verifying" or not upload.version_id:
            return f"nothing to verify: the upload is {upload.state}"
        if upload.version_id.state != "draft":
            problem = self.env._(
                "the version became %s meanwhile", upload.version_id.state
            )
            upload._discard(problem, "failed", completed=True)
            return problem
        summary, problem = jobs.attempt(
            self.env,
            upload._verify_and_register,
            self.env._("verifying the upload"),
        )
        if problem:
            upload._discard(problem, "failed", completed=True)
            return problem
        return summary

    def _verify_and_register(self):
        upload = self  # already sudo, locked, still verifying
        store = upload.storage_backend_id._get_store()
        size, sha256 = store.hash_object(upload.object_key)
        report = integrity.verify(
            size, sha256, int(upload.size), upload.expected_sha256 or None
        )
        artifacts.register_stored(
            upload.version_id,
            upload.storage_backend_id,
            StoredObject(
                upload.object_key,
                size,
                upload.expected_sha256 or sha256,
                store.uri(upload.object_key),
            ),
            upload.filename,
            upload.content_type,
            integrity_report=report,
        )
        upload.write({"state": "completed"})
        return f"{upload.version_id.display_name}: {report.state}: {report.summary}"

    @api.model
    def _receive_part(self, store_upload_id, part_number, stream, length):
        """A part PUT to a local store's signed URL: stored when its upload is
        open, the part one of its parts and its size at most the part size;
        its ETag."""
        env = self.env
        upload = self.sudo().search([("s3_upload_id", "=", store_upload_id)], limit=1)
        if not upload:
            raise NotFound(env._("No upload %s.", store_upload_id))
        if upload.state != "open" or upload.expires_at < fields.Datetime.now():
            raise Conflict(
                env._(
                    "This upload is %s.",
                    "expired" if upload.state == "open" else upload.state,
                )
            )
        if not 1 <= part_number <= upload.part_count:
            raise NotFound(
                env._(
                    "This upload has parts 1 to %(count)s, not %(number)s.",
                    count=upload.part_count,
                    number=part_number,
                )
            )
        if length > upload.part_size:
            raise PayloadTooLarge(
                env._("A part is at most %s bytes.", upload.part_size)
            )
        store = upload.storage_backend_id._get_store()
        with errors.backend_call(refused=InvalidInput):
            return store.put_part(
                store_upload_id, part_number, stream, length, upload.part_size
            )

    def _check_parts(self, parts):
        """The request's ``parts``: {part_number: etag}, or InvalidInput."""
        env = self.env
        if not isinstance(parts, list) or not parts:
            raise InvalidInput(env._("parts must be a list of {part_number, etag}"))
        claimed = {}
        for part in parts:
            if not (
                isinstance(part, dict)
                and isinstance(part.get("part_number"), int)
                and not isinstance(part.get("part_number"), bool)
                and isinstance(part.get("etag"), str)
            ):
                raise InvalidInput(env._("parts must be a list of {part_number, etag}"))
            number = part["part_number"]
            if not 1 <= number <= self.part_count:
                raise InvalidInput(
                    env._(
                        "part_number %(number)s is not one of this upload's parts "
                        "(1 to %(count)s)",
                        number=number,
                        count=self.part_count,
                    )
                )
            if number in claimed:
                raise InvalidInput(env._("part %s is listed twice", number))
            claimed[number] = part["etag"].strip().strip('"')
        return claimed

    def _discard(self, message, state, completed=False):
        """Remove what the upload left, the S3 upload or, once ``completed``,
        the object, and the draft version it created. False when the store
        could not be reached: an abort is then left for the cron's next run,
        an object to delete is flagged for it."""
        reached = True
        try:
            store = self.storage_backend_id._get_store()
            if not completed:
                try:
                    store.abort_multipart(self.object_key, self.s3_upload_id)
                except StorageRefused as error:
                    if error.code != "NoSuchUpload":
                        raise
                    completed = True  # a completion may have reached the store
            if completed:
                store.delete(self.object_key)
        except (StorageUnavailable, BackendUnavailable) as error:
            _logger.warning("cleaning upload %s: %s", self.token, error)
            reached = False
        except StorageError as error:
            _logger.info("cleaning upload %s: %s", self.token, error)
        if not reached and state == "aborted":
            return False
        version = self.version_id.sudo()
        self.sudo().write(
            {
                "state": state,
                "message": message,
                "version_id": False,
                "cleanup_pending": not reached,
            }
        )
        if version.state == "draft":
            version.unlink()
        return reached

    def _discard_after_rollback(self, message, state, completed=False):
        """``_discard`` for a request that failed: its transaction is gone,
        so lock the upload again and leave it if another request moved it
        meanwhile."""
        try:
            jobs.lock(self)
            if self.state in ("open", "verifying"):
                self._discard(message, state, completed=completed)
        except Exception:  # noqa: BLE001 - the request's answer must still go
            _logger.exception("cleaning upload %s after a refusal", self.token)

    @api.model
    def _cron_abort_expired(self):
        expired = self.sudo().search(
            [("state", "=", "open"), ("expires_at", "<", fields.Datetime.now())]
        )
        aborted = 0
        for upload in expired:
            try:
                with self.env.cr.savepoint():
                    aborted += upload._discard(
                        self.env._("not completed in time"), "aborted"
                    )
            except Exception:  # noqa: BLE001 - one upload never stops the others
                _logger.exception("aborting upload %s", upload.token)
        # objects whose deletion found the store down
        for upload in self.sudo().search([("cleanup_pending", "=", True)]):
            try:
                upload.storage_backend_id._get_store().delete(upload.object_key)
            except (StorageError, BackendUnavailable) as error:
                _logger.warning("deleting %s: %s", upload.object_key, error)
                continue
            upload.cleanup_pending = False
        # verifications that died with their worker: queued again (idempotent)
        stuck = self.sudo().search(
            [
                ("state", "=", "verifying"),
                ("write_date", "<", fields.Datetime.now() - timedelta(hours=1)),
            ]
        )
        for upload in stuck:
            upload.write({"message": self.env._("verification queued again")})
            upload._queue_verification()
        # and what no record tracks (a clean-up that found the store down)
        for backend in (
            self.env["mlops.storage.backend"].sudo().search([("kind", "=", "s3")])
        ):
            try:
                swept = backend._abort_stale_multipart_uploads(
                    timedelta(hours=backend.upload_expiry_hours or 24)
                )
            except (StorageError, BackendUnavailable) as error:
                _logger.warning("sweeping %s: %s", backend.code, error)
                continue
            if swept:
                _logger.info("aborted %s stale uploads in %s", swept, backend.code)
        return aborted
