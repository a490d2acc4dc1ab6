# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of the registry: uploads, models, versions, validation,
artifact downloads."""

import logging

import werkzeug.exceptions

from odoo import http
from odoo.http import request

from ..exceptions import NotFound
from ..lifecycle import VERSION_STATES
from ..services import artifacts, errors, operations, upload_parts
from .framework import (
    JsonHTTPError,
    _authenticate,
    _body,
    _json,
    _operate,
    _query,
    _translate,
    _wants_json,
    api_route,
    error_body,
)
from .multipart import (
    _max_upload,
    body_stream,
)
from .openapi_schemas import BODIES, PAGE, STRING, page_of, ref

_logger = logging.getLogger(__name__)


class MlopsApi(http.Controller):
    # ------------------------------------------------------------------
    # Uploads
    # ------------------------------------------------------------------

    @api_route(
        "/models/upload",
        ["POST"],
        summary="Upload a version: the artifact streamed to the store",
        body="multipart",
        answer=(202, ref("Accepted")),
        errors=(409, 413),
        max_content_length=_max_upload,
    )
    def upload(self, **_params):
        files = request.httprequest.files
        form = request.httprequest.form
        if "file" not in files or "metadata" not in form:
            raise JsonHTTPError(
                400, "invalid_request", "Send multipart parts 'file' and 'metadata'."
            )
        upload = files["file"]
        streamed = getattr(request, "mlops_stream", None)
        if streamed and upload.stream is streamed[0]:
            version = artifacts.register_streamed(
                request.env,
                form["metadata"],
                streamed[0].writer,
                streamed[1],
                upload.filename,
                upload.mimetype,
            )
        else:
            version = artifacts.register_upload(
                request.env,
                form["metadata"],
                upload.stream,
                upload.filename,
                upload.mimetype,
            )
        return _json(operations.accepted(version), 202)

    @api_route(
        "/uploads",
        ["POST"],
        summary="Start a direct multipart upload to the object store",
        body=BODIES["upload"],
        answer=(
            201,
            {"type": "object", "required": ["upload_id", "part_size", "parts"]},
        ),
        errors=(409, 413),
    )
    def start_upload(self, **_params):
        return _operate("uploads.create", _body())

    @api_route(
        "/uploads/<string:token>/complete",
        ["POST"],
        summary="Complete a direct upload",
        body=BODIES["complete"],
        answer=(202, ref("Accepted")),
        errors=(409,),
    )
    def complete_upload(self, token, **_params):
        return _operate("uploads.complete", _body(), id=token)

    @api_route(
        "/uploads/parts/<string:upload_id>/<int:part_number>",
        ["PUT"],
        auth="signature",
        summary="Receive a part of a direct upload to a local store (presigned)",
        query=(
            ("expires", {"type": "integer"}),
            ("signature", {"type": "string"}),
        ),
        body="binary",
        answer=(
            200,
            {
                "type": "object",
                "required": ["part_number", "etag"],
                "properties": {"part_number": {"type": "integer"}, "etag": STRING},
            },
        ),
        errors=(409, 411, 413),
    )
    def upload_part(self, upload_id, part_number, **_params):
        """What S3 does with a presigned part URL, for a local store: the
        URL's signature is the credential."""
        args = request.httprequest.args
        secret = request.env["ir.config_parameter"].sudo().get_param("database.secret")
        if not upload_parts.check(
            secret, upload_id, part_number, args.get("expires"), args.get("signature")
        ):
            raise JsonHTTPError(
                401,
                "unauthorized",
                "The part URL is not signed for this part or has expired; ask "
                "GET /uploads/<id> and start again if the upload expired.",
            )
        length = request.httprequest.content_length
        if length is None:
            raise JsonHTTPError(
                411, "length_required", "Send the part with a Content-Length."
            )
        etag = (
            request.env["mlops.upload"]
            .sudo()
            ._receive_part(upload_id, part_number, body_stream(), length)
        )
        response = _json({"part_number": part_number, "etag": etag})
        response.headers["ETag"] = f'"{etag}"'
        return response

    @api_route(
        "/uploads/<string:token>",
        ["GET"],
        summary="Where a direct upload stands",
        answer=(200, ref("Upload")),
    )
    def upload_status(self, token, **_params):
        return _operate("uploads.get", id=token)

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    @api_route(
        "/models",
        ["GET"],
        summary="Models",
        query=(("q", STRING), *PAGE),
        answer=(200, page_of("Model")),
    )
    def models(self, **_params):
        return _operate("models.list", _query())

    @api_route(
        "/models/<int:model_id>",
        ["GET"],
        summary="A model, with its versions",
        answer=(200, ref("Model")),
    )
    def model(self, model_id, **_params):
        return _operate("models.get", id=model_id)

    @api_route(
        "/models/<int:model_id>/versions",
        ["GET"],
        summary="A model's versions",
        query=(("state", {"enum": [s for s, _label in VERSION_STATES]}), *PAGE),
        answer=(200, page_of("Version")),
    )
    def model_versions(self, model_id, **_params):
        return _operate("versions.list", _query(), model_id=model_id)

    @api_route(
        "/versions/<int:version_id>",
        ["GET"],
        summary="A version, with its validations and deployments",
        answer=(200, ref("Version")),
    )
    def version(self, version_id, **_params):
        return _operate("versions.get", id=version_id)

    @api_route(
        "/versions/<int:version_id>/validate",
        ["POST"],
        summary="Validate a version again",
        body=BODIES["validate"],
        answer=(202, ref("VersionAccepted")),
        errors=(409,),
    )
    def validate(self, version_id, **_params):
        return _operate("versions.validate", _body(), id=version_id)

    # ------------------------------------------------------------------
    # Artifact download (local stores; S3 answers with a presigned URL)
    # ------------------------------------------------------------------

    @http.route(
        "/mlops/artifacts/<int:version_id>/download",
        type="http",
        auth="public",
        methods=["GET", "HEAD"],
        save_session=False,
    )
    def download(self, version_id, **_params):
        """The artifact's bytes: streamed from a local store, a redirect to a
        short-lived presigned URL for S3. A browser comes with its session
        (and is sent to the login page without one); a script with its API
        key as a bearer token, and gets its errors in the contract's JSON."""
        return self._serve_download(lambda: self._artifact_response(version_id))

    @http.route(
        "/mlops/feedback-exports/<int:export_id>/download",
        type="http",
        auth="public",
        methods=["GET", "HEAD"],
        save_session=False,
    )
    def export_download(self, export_id, **_params):
        """A finished feedback export's JSONL, as an artifact is served."""
        return self._serve_download(lambda: self._export_response(export_id))

    def _serve_download(self, respond):
        wants_json = _wants_json()
        try:
            if request.httprequest.headers.get("Authorization"):
                _authenticate()
            elif request.env.user._is_public():
                if not wants_json:
                    return request.redirect_query(
                        "/web/login", {"redirect": request.httprequest.full_path}
                    )
                _authenticate()  # the JSON 401
            return respond()
        except Exception as error:  # noqa: BLE001 - answered as the client asked
            status, code, message, details = _translate(error)
            if status >= 500 and status != 503:
                _logger.exception("MLOps download %s failed", request.httprequest.path)
            if not wants_json:
                if isinstance(error, werkzeug.exceptions.HTTPException):
                    raise
                page = werkzeug.exceptions.default_exceptions.get(
                    status, werkzeug.exceptions.InternalServerError
                )
                raise page(description=message) from error
            response = _json(error_body(code, message, details), status)
            if status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response

    def _artifact_response(self, version_id):
        version = request.env["mlops.model.version"].browse(version_id).exists()
        if not version or not version.has_access("read"):
            raise NotFound(f"No version {version_id}.")
        if not version.artifact_object_key:
            raise NotFound(f"Version {version_id} has no artifact.")
        return self._stored_response(
            version.storage_backend_id,
            version.artifact_object_key,
            version.artifact_filename,
            version.artifact_content_type,
        )

    def _export_response(self, export_id):
        export = request.env["mlops.feedback.export"].browse(export_id).exists()
        if not export or not export.has_access("read"):
            raise NotFound(f"No feedback export {export_id}.")
        if export.state != "done":
            raise NotFound(f"Feedback export {export_id} is {export.state}.")
        return self._stored_response(
            export.storage_backend_id,
            export.object_key,
            f"feedback-export-{export.id}.jsonl",
            "application/x-ndjson",
        )

    def _stored_response(self, backend, key, filename, content_type):
        """An object of a store: streamed from a local one, a redirect to a
        presigned URL for S3."""
        store = backend.sudo()._get_store()
        path = store.local_path(key)
        if path is None:
            with errors.backend_call():
                url = store.presigned_get(key, filename=filename)
            return request.redirect(url, code=303, local=False)
        if not path.exists():
            raise NotFound(f"{filename or key} is missing from its store.")
        stream = http.Stream(
            type="path",
            path=str(path),
            size=path.stat().st_size,
            mimetype=content_type or "application/octet-stream",
            download_name=filename or path.name,
            conditional=False,
        )
        return stream.get_response(as_attachment=True)
