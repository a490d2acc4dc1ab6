# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST v1 under /mlops/api/v1 (shared/contract/api.md): bearer API keys,
JSON in and out, every error in the contract's JSON shape."""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import functools
import json
import logging
import random
import time

import psycopg2.errors
import werkzeug.exceptions

from odoo import http
from odoo.exceptions import (
    AccessDenied,
    AccessError,
    MissingError,
    UserError,
    ValidationError,
)
from odoo.http import request
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY

from ..adapters.storage import StorageError
from ..exceptions import InvalidInput, MLOpsError, NotFound
from ..lifecycle import VERSION_STATES
from ..services import artifacts, errors, serializers, settings
from ..utils import parse_json

_logger = logging.getLogger(__name__)

API = errors.REST_PREFIX
MAX_LIMIT = 200
error_body = errors.error_body


class JsonHTTPError(werkzeug.exceptions.HTTPException):
    """An HTTP error whose body is the contract's JSON, usable before the
    route's code runs (Odoo returns HTTPExceptions as they are)."""

    def __init__(self, status, code, message, details=None, headers=None):
        super().__init__(message)
        self.code = status
        self._body = error_body(code, message, details)
        self._headers = headers or {}

    def get_response(self, environ=None, scope=None):
        return werkzeug.wrappers.Response(
            json.dumps(self._body),
            status=self.code,
            headers=[("Content-Type", "application/json"), *self._headers.items()],
        )


def _json(data, status=200):
    return request.make_json_response(data, status=status)


def _authenticate():
    """Run as the owner of the bearer API key, or fail with a JSON 401."""
    header = request.httprequest.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise JsonHTTPError(
            401,
            "unauthorized",
            "Send an Odoo API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    uid = request.env["res.users.apikeys"]._check_credentials(
        scope="rpc", key=token.strip()
    )
    if not uid:
        raise JsonHTTPError(
            401,
            "unauthorized",
            "The API key is invalid or expired.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.update_env(user=uid)


def _wants_json():
    """A script (a bearer key, or JSON preferred over HTML in ``Accept``)
    rather than a browser."""
    headers = request.httprequest.headers
    if headers.get("Authorization"):
        return True
    accept = request.httprequest.accept_mimetypes
    return accept.quality("application/json") > accept.quality("text/html")


def _translate(error):
    """(status, code, message, details) of an exception."""
    if isinstance(error, JsonHTTPError):
        return error.code, error._body["error"]["code"], error.description, {}
    if isinstance(error, StorageError):
        error = errors.to_contract(error)
    if isinstance(error, MLOpsError):
        return (
            error.http_status,
            error.code,
            error.args[0],
            getattr(error, "details", {}),
        )
    if isinstance(error, psycopg2.errors.UniqueViolation):
        return (
            409,
            "conflict",
            "Another request created the same thing at the same time; nothing was "
            "kept from this one.",
            {},
        )
    # serialization failures, deadlocks, locks not available
    if getattr(error, "pgcode", None) in PG_CONCURRENCY_ERRORS_TO_RETRY:
        return (
            503,
            "busy",
            "Another request changed the same records at the same time; nothing was "
            "kept from this one, try again.",
            {},
        )
    if isinstance(error, AccessError | AccessDenied):
        return 403, getattr(error, "code", "forbidden"), error.args[0], {}
    if isinstance(error, MissingError):
        return 404, "not_found", error.args[0], {}
    if isinstance(error, ValidationError):
        return 422, "invalid_input", error.args[0], {}
    if isinstance(error, UserError):
        return 400, "invalid_request", error.args[0], {}
    if isinstance(error, werkzeug.exceptions.RequestEntityTooLarge):
        return 413, "payload_too_large", "The request is larger than allowed.", {}
    if isinstance(error, werkzeug.exceptions.HTTPException):
        return error.code, "http_error", error.description, {}
    return 500, "internal_error", "An unexpected error occurred; it was logged.", {}


def api_route(path, methods, **kwargs):
    """A REST route: bearer auth, JSON errors, nothing committed on error."""

    def decorator(func):
        @http.route(
            f"{API}{path}",
            type="http",
            auth="public",
            methods=methods,
            csrf=False,
            save_session=False,
            **kwargs,
        )
        @functools.wraps(func)
        def wrapper(self, *args, **kw):
            try:
                return _retrying(lambda: func(self, *args, **kw))
            except Exception as error:  # noqa: BLE001 - every error becomes JSON
                request.env.cr.rollback()
                streamed = getattr(request, "mlops_stream", None)
                if streamed:
                    streamed[0].writer.abort()
                if getattr(error, "after_rollback", None):
                    try:
                        error.after_rollback()
                    except Exception:  # noqa: BLE001 - the JSON answer still goes
                        _logger.exception("MLOps API %s: clean-up failed", path)
                status, code, message, details = _translate(error)
                if status >= 500 and status != 503:
                    _logger.exception("MLOps API %s %s failed", methods, path)
                response = _json(error_body(code, message, details), status)
                if status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                return response

        return wrapper

    return decorator


MAX_TRIES = 5


def _is_race(error):
    """Another transaction got there first: a concurrent update, or the same
    row inserted (a new model's name, a version) while this one ran."""
    code = getattr(error, "pgcode", None)
    return code in PG_CONCURRENCY_ERRORS_TO_RETRY or isinstance(
        error, psycopg2.errors.UniqueViolation
    )


def _rewind_body():
    """Whether the request can be run again: its body is still there (JSON
    kept by ``_body``, multipart parts spooled by werkzeug), not streamed
    into the store."""
    if getattr(request, "mlops_stream", None):
        return False
    for upload in request.httprequest.files.values():
        if not upload.stream.seekable():
            return False
        upload.stream.seek(0)
    return True


def _retrying(call):
    """``call()`` as the caller, run again from a fresh transaction when it
    lost a race, the way Odoo's dispatcher retries serialization failures:
    after a rollback the next try sees what the other transaction committed,
    so a model created meanwhile is found, and a duplicate version is told
    apart from a passing conflict. Only 409 for a real duplicate."""
    for attempt in range(1, MAX_TRIES + 1):
        try:
            _authenticate()
            return call()
        except Exception as error:
            if attempt == MAX_TRIES or not _is_race(error) or not _rewind_body():
                raise
            request.env.cr.rollback()
            request.env.invalidate_all()
            _logger.info("MLOps API: lost a race (%s), try %s", error.pgcode, attempt)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise RuntimeError("unreachable")


# PostgreSQL takes a LIMIT or OFFSET up to int8; no page is that far
MAX_OFFSET = 2**31 - 1


def _int_arg(name, default, low=0, high=MAX_OFFSET):
    raw = request.httprequest.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise JsonHTTPError(
            400, "invalid_request", f"{name} must be an integer"
        ) from error
    if value < low or (high is not None and value > high):
        raise JsonHTTPError(
            400, "invalid_request", f"{name} must be between {low} and {high}"
        )
    return value


def _text_arg(name):
    """A query-string text, or None; NUL (which PostgreSQL refuses in text)
    is a 400."""
    raw = request.httprequest.args.get(name)
    if raw is not None and "\x00" in raw:
        raise JsonHTTPError(400, "invalid_request", f"{name} must not contain NUL")
    return raw


def _contains(text):
    """An ``=ilike`` pattern matching ``text`` anywhere, its own ``%``,
    ``_`` and backslashes taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _body():
    # kept: a request that lost a race is run again with the same body
    if not hasattr(request, "mlops_body"):
        request.mlops_body = request.httprequest.get_data(cache=False)
    mimetype = request.httprequest.mimetype
    if request.mlops_body and mimetype != "application/json":
        raise JsonHTTPError(
            415,
            "unsupported_media_type",
            f"Send the body as application/json, not {mimetype or 'nothing'}.",
        )
    try:
        data = parse_json(request.mlops_body or b"{}")
    except ValueError as error:
        raise JsonHTTPError(
            400, "malformed_json", f"The body is not JSON: {error}"
        ) from error
    if not isinstance(data, dict):
        raise JsonHTTPError(400, "malformed_json", "The body must be a JSON object.")
    return data


def _page(model, domain, order, serialize):
    """``{"items", "total"}`` for the ``limit`` and ``offset`` of the query."""
    limit = _int_arg("limit", 50, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0)
    Model = request.env[model]
    records = Model.search(domain, limit=limit, offset=offset, order=order)
    return _json(
        {"items": [serialize(r) for r in records], "total": Model.search_count(domain)}
    )


def _get(model, record_id, label):
    """A record the caller may read. No rights on the model at all is a 403;
    a record that does not exist or that a rule hides (another company's) is
    the same 404, so ids do not tell what exists elsewhere."""
    Model = request.env[model]
    Model.check_access("read")
    record = Model.browse(record_id).exists()
    if not record or not record.has_access("read"):
        raise NotFound(f"No {label} {record_id}.")
    return record


HEAD_SIZE = 64 * 1024


class _Prefixed:
    """A stream with bytes already read put back in front."""

    def __init__(self, head, stream):
        self._head = head
        self._stream = stream

    def read(self, size=-1):
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)

    def readline(self, size=-1):
        if self._head:
            end = self._head.find(b"\n")
            if end >= 0:
                data, self._head = self._head[: end + 1], self._head[end + 1 :]
                return data
            return self.read(len(self._head)) + self._stream.readline(size)
        return self._stream.readline(size)


def _leading_metadata(head, boundary):
    """The value of the ``metadata`` part when it is the body's first part
    and fits in ``head``; else None."""
    opening = b"--" + boundary + b"\r\n"
    if not head.startswith(opening):
        return None
    headers_end = head.find(b"\r\n\r\n", len(opening))
    if headers_end < 0:
        return None
    headers = head[len(opening) : headers_end].lower()
    if b'name="metadata"' not in headers or b"filename=" in headers:
        return None
    value_end = head.find(b"\r\n--" + boundary, headers_end + 4)
    if value_end < 0:
        return None
    return head[headers_end + 4 : value_end].decode("utf-8", "replace")


class _GuardedWriter:
    """The store writer as werkzeug's form parser sees it (its errors are
    answered by _max_upload, which runs the parse)."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, data):
        return self.writer.write(data)

    def seek(self, *args):
        return 0

    def tell(self):
        return self.writer.size

    def flush(self):
        return None


def _stream_into_store():
    """When the ``metadata`` part comes first, send the ``file`` part to the
    store while it arrives instead of spooling it to disk first."""
    raw = request.httprequest._HTTPRequest__wrapped  # the werkzeug request
    boundary = raw.mimetype_params.get("boundary")
    if raw.mimetype != "multipart/form-data" or not boundary:
        return
    stream = raw.stream
    head = b""
    while len(head) < HEAD_SIZE:  # a socket read may return less
        chunk = stream.read(HEAD_SIZE - len(head))
        if not chunk:
            break
        head += chunk
    raw.__dict__["stream"] = _Prefixed(head, stream)  # werkzeug's cached_property
    text = _leading_metadata(head, boundary.encode("latin-1"))
    if text is None:
        return
    env = request.env
    try:
        metadata = artifacts.parse_metadata(env, text)
    except MLOpsError:
        return  # the route reports it once the body is parsed
    try:
        # nothing of the body but its head has been read: a lost race (a new
        # model created by another upload meanwhile) is run again
        backend, model = _retrying(
            lambda: artifacts.plan_streamed_upload(request.env, metadata)
        )
    except Exception as error:  # noqa: BLE001 - answered in JSON before the body
        status, code, message, details = _translate(error)
        raise JsonHTTPError(status, code, message, details) from error
    default_factory = raw._get_file_stream

    def factory(total_content_length, content_type, filename=None, content_length=None):
        if getattr(request, "mlops_stream", None) is not None:
            return default_factory(
                total_content_length, content_type, filename, content_length
            )
        try:
            key = model._artifact_key(backend, metadata["version"], filename or "")
            artifacts.reserve_key(request.env, backend, key)
            writer = backend._get_store().open_writer(key, content_type)
        except ValueError:  # a filename that makes no key: spooled, refused later
            return default_factory(
                total_content_length, content_type, filename, content_length
            )
        # any other error is answered by _max_upload, which runs this parse
        request.mlops_stream = (_GuardedWriter(writer), backend)
        return request.mlops_stream[0]

    raw._get_file_stream = factory


def _drain(raw, chunk=1024 * 1024):
    """Read what is left of a request body and drop it."""
    try:
        while raw.stream.read(chunk):
            pass
    except Exception:  # noqa: BLE001 - the client may be gone too
        _logger.debug("draining an upload that failed", exc_info=True)


def _max_upload(controller):
    """Called before the body is read: authenticate, refuse an oversized
    upload while nothing has been received yet, and stream the artifact to
    the store as it arrives when the metadata comes first."""
    _authenticate()
    gigabytes = settings.get(request.env, "max_upload_gb")
    limit = gigabytes * 1024**3
    length = request.httprequest.content_length
    if length is not None and length > limit:
        raise JsonHTTPError(
            413,
            "payload_too_large",
            f"Uploads through Odoo are limited to {gigabytes} GiB; "
            "use POST /uploads for a direct upload.",
        )
    _stream_into_store()
    # parse the body here rather than in Odoo's dispatcher: a client going
    # away or a body over the limit then removes what was already stored
    # and is answered in JSON
    raw = request.httprequest._HTTPRequest__wrapped
    raw.max_content_length = limit
    try:
        raw.form  # noqa: B018 - werkzeug parses form and files on first access
    except Exception as error:
        streamed = getattr(request, "mlops_stream", None)
        if streamed:
            streamed[0].writer.abort()
        if isinstance(error, werkzeug.exceptions.ClientDisconnected):
            raise JsonHTTPError(
                400,
                "invalid_request",
                "The request body ended before its announced length; nothing was kept.",
            ) from error
        status, code, message, details = _translate(error)
        if status == 503:
            # the store went away while the client still sends: take the rest
            # of the body (discarded) so that the client reads the answer
            _drain(raw)
        if isinstance(error, JsonHTTPError):
            raise
        raise JsonHTTPError(status, code, message, details) from error
    return limit


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

    # ------------------------------------------------------------------
    # Everything else under the prefix: the contract's JSON, never HTML
    # ------------------------------------------------------------------

    @http.route(
        [API, f"{API}/<path:_rest>"],
        type="http",
        auth="none",
        csrf=False,
        save_session=False,
    )
    def not_found(self, _rest=None, **_params):
        """No route has this path (404), or not for this method (405, with
        the methods that have it in ``Allow``). Werkzeug tries this rule
        last: every other one is more specific."""
        allowed = _methods_for(request.httprequest)
        if allowed:
            error = JsonHTTPError(
                405,
                "method_not_allowed",
                f"{request.httprequest.method} is not allowed here; use "
                f"{', '.join(allowed)}.",
                headers={"Allow": ", ".join(allowed)},
            )
        else:
            error = JsonHTTPError(
                404, "not_found", f"No route {request.httprequest.path}."
            )
        return error.get_response()


CATCH_ALL = f"{API}/<path:_rest>"


def _methods_for(httprequest):
    """The methods some other API route takes at this path."""
    adapter = request.env["ir.http"].routing_map().bind_to_environ(httprequest.environ)
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            rule, _args = adapter.match(method=method, return_rule=True)
        except werkzeug.exceptions.HTTPException:
            continue
        if rule.rule not in (API, CATCH_ALL):
            allowed.append(method)
    return allowed
