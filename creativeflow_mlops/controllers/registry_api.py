# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of the registry: uploads, models, versions, validation,
artifact downloads."""

import logging

import werkzeug.exceptions

from odoo import http
from odoo.http import request

from ..exceptions import InvalidInput, NotFound
from ..lifecycle import VERSION_STATES
from ..services import artifacts, errors, serializers
from .framework import (
    JsonHTTPError,
    _authenticate,
    _body,
    _contains,
    _get,
    _json,
    _page,
    _text_arg,
    _translate,
    _wants_json,
    api_route,
    error_body,
)
from .multipart import (
    _max_upload,
)

_logger = logging.getLogger(__name__)


class MlopsApi(http.Controller):
    # ------------------------------------------------------------------
    # Uploads
    # ------------------------------------------------------------------

    @api_route("/models/upload", ["POST"], max_content_length=_max_upload)
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
        return _json(self._accepted(version), 202)

    @api_route("/uploads", ["POST"])
    def start_upload(self, **_params):
        answer = request.env["mlops.upload"]._start(_body())
        return _json(answer, 201)

    @api_route("/uploads/<string:token>/complete", ["POST"])
    def complete_upload(self, token, **_params):
        body = _body()
        upload = request.env["mlops.upload"]._find(token)
        version = upload._complete(body.get("parts"))
        # the version stays draft until the queued verification registers it
        # (its SHA-256 is unknown until then); GET /uploads/<upload_id> tells
        # how that went
        answer = self._accepted(version)
        if version.state == "draft":
            answer["artifact"].update(
                uri=upload.storage_backend_id._get_store().uri(upload.object_key),
                size=int(upload.size),
                filename=upload.filename,
            )
        return _json({**answer, "upload_id": upload.token}, 202)

    @api_route("/uploads/<string:token>", ["GET"])
    def upload_status(self, token, **_params):
        """Where a direct upload stands: ``verifying`` after the completion,
        ``completed`` once its version is registered, ``failed`` or
        ``aborted`` with the reason (not in the contract's table: added so a
        client can tell why a draft went away)."""
        upload = request.env["mlops.upload"]._find(token)
        return _json(
            {
                "upload_id": upload.token,
                "state": upload.state,
                "message": upload.message or None,
                "version_id": upload.version_id.id or None,
                "part_size": upload.part_size,
                "parts": upload.part_count,
                "expires_at": serializers.timestamp(upload.expires_at),
            }
        )

    @staticmethod
    def _accepted(version):
        return {
            "model_id": version.model_id.id,
            "version_id": version.id,
            "state": version.state,
            "artifact": serializers.artifact(version),
        }

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    @api_route("/models", ["GET"])
    def models(self, **_params):
        domain = []
        query = _text_arg("q")
        if query:
            pattern = _contains(query)
            domain = [
                "|",
                ("name", "=ilike", pattern),
                ("description", "=ilike", pattern),
            ]
        return _page("mlops.model", domain, "name, id", serializers.model)

    @api_route("/models/<int:model_id>", ["GET"])
    def model(self, model_id, **_params):
        return _json(serializers.model(_get("mlops.model", model_id, "model"), True))

    @api_route("/models/<int:model_id>/versions", ["GET"])
    def model_versions(self, model_id, **_params):
        _get("mlops.model", model_id, "model")
        domain = [("model_id", "=", model_id)]
        state = request.httprequest.args.get("state")
        if state:
            if state not in dict(VERSION_STATES):
                raise InvalidInput(
                    f"state must be one of {', '.join(dict(VERSION_STATES))}"
                )
            domain.append(("state", "=", state))
        return _page("mlops.model.version", domain, "id desc", serializers.version)

    @api_route("/versions/<int:version_id>", ["GET"])
    def version(self, version_id, **_params):
        record = _get("mlops.model.version", version_id, "version")
        return _json(serializers.version(record, full=True))

    @api_route("/versions/<int:version_id>/validate", ["POST"])
    def validate(self, version_id, **_params):
        body = _body()
        scan_types = body.get("scan_types")
        if scan_types is not None and not (
            isinstance(scan_types, list) and all(isinstance(s, str) for s in scan_types)
        ):
            raise JsonHTTPError(
                422, "invalid_input", "scan_types must be a list of names"
            )
        record = _get("mlops.model.version", version_id, "version")
        record.action_validate(scan_types)
        return _json({"version_id": record.id, "state": record.state}, 202)

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
            return self._artifact_response(version_id)
        except Exception as error:  # noqa: BLE001 - answered as the client asked
            status, code, message, details = _translate(error)
            if status >= 500 and status != 503:
                _logger.exception("MLOps artifact download %s failed", version_id)
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
        store = version.storage_backend_id.sudo()._get_store()
        path = store.local_path(version.artifact_object_key)
        if path is None:
            with errors.backend_call():
                url = store.presigned_get(
                    version.artifact_object_key, filename=version.artifact_filename
                )
            return request.redirect(url, code=303, local=False)
        if not path.exists():
            raise NotFound(f"The artifact of version {version_id} is missing.")
        stream = http.Stream(
            type="path",
            path=str(path),
            size=path.stat().st_size,
            mimetype=version.artifact_content_type or "application/octet-stream",
            download_name=version.artifact_filename or path.name,
            conditional=False,
        )
        return stream.get_response(as_attachment=True)
