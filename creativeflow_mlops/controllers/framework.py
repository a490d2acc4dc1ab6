# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The REST face's framework (docs/reference/api.md): the route decorator
(bearer API keys; JSON in and out; every error in the contract's shape,
nothing committed on error; a lost race run again before any answer), the
error contract, and the helpers routes read their arguments with. Route
modules (``registry_api``, ``deployments_api``) and the multipart streaming
(``multipart``) build on it; no route lives here."""

import functools
import json
import logging
import random
import time

import psycopg2.errors
import werkzeug.exceptions

from odoo import SUPERUSER_ID, http
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
from ..exceptions import InvalidInput, MLOpsError
from ..services import apikeys, errors, gates, operations
from ..utils import NulCharacter, parse_json

_logger = logging.getLogger(__name__)

API = errors.REST_PREFIX
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


def _operate(name, params=None, **path):
    """Answer with the operation ``name`` (``services.operations``), given
    the request's ``params`` and the path's ids over them."""
    status, body = operations.run(request.env, name, {**(params or {}), **path})
    if status == 204:
        return request.make_response("", status=204)
    return _json(body, status)


def _query():
    """The query string's arguments, for a GET's operation."""
    return request.httprequest.args.to_dict()


def _authenticate(token=None):
    """Run as the owner of the bearer API key (or of ``token``, a key the
    route found elsewhere), or fail with a JSON 401."""
    scheme = "bearer"
    if token is None:
        header = request.httprequest.headers.get("Authorization", "")
        scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise JsonHTTPError(
            401,
            "unauthorized",
            "Send an Odoo API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    uid = apikeys.check(request.env, token.strip())
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


# what each route declares of itself, for /openapi.json (controllers.openapi)
ROUTES = []


def api_route(
    path,
    methods,
    auth="bearer",
    summary=None,
    query=(),
    body=None,
    answer=(200, None),
    errors=(),
    headers=(),
    **kwargs,
):
    """A REST route: JSON errors, nothing committed on error. ``auth``:
    ``bearer`` (an Odoo API key, the caller's rights), ``signature`` (the
    route checks an HMAC signature itself, as the public user) or
    ``target_key`` (the route checks a target's inference log key itself)
    or ``gate`` (an API key, in the header or in Flagger's body).

    The rest is what the OpenAPI document says of it: ``summary``,
    ``query`` ((name, schema) pairs), ``headers`` ((name, description)
    pairs it needs), ``body`` (a JSON Schema, or
    ``"multipart"``), ``answer`` ((status, schema)) and the ``errors`` it
    answers beyond those every route may (400, 401, 403, 404, 415, 422,
    503)."""
    challenge = {
        "bearer": "Bearer",
        "gate": "Bearer",
        "signature": 'HMAC-SHA256 realm="mlops"',
        "target_key": 'Bearer realm="inference-log"',
    }[auth]

    def decorator(func):
        ROUTES.append(
            {
                "path": path,
                "methods": methods,
                "auth": auth,
                "summary": summary or (func.__doc__ or func.__name__).split("\n")[0],
                "query": query,
                "body": body,
                "answer": answer,
                "errors": errors,
                "headers": headers,
                "name": func.__name__,
            }
        )

        @http.route(
            f"{API}{path}",
            type="http",
            # a bearer route runs as no one until its key is checked (Odoo's
            # public user would cost a lookup and a read on every request)
            auth="none" if auth in ("bearer", "gate") else "public",
            # Odoo makes an auth="none" route's transaction read-only
            readonly=False,
            methods=methods,
            csrf=False,
            save_session=False,
            **kwargs,
        )
        @functools.wraps(func)
        def wrapper(self, *args, **kw):
            try:
                return _retrying(lambda: func(self, *args, **kw), auth)
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
                    response.headers["WWW-Authenticate"] = challenge
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


def _retrying(call, auth="bearer"):
    """``call()`` as the caller, run again from a fresh transaction when it
    lost a race, the way Odoo's dispatcher retries serialization failures:
    after a rollback the next try sees what the other transaction committed,
    so a model created meanwhile is found, and a duplicate version is told
    apart from a passing conflict. Only 409 for a real duplicate."""
    for attempt in range(1, MAX_TRIES + 1):
        try:
            if auth == "bearer":
                _authenticate()
            elif auth == "gate":
                _authenticate_gate()
            result = call()
            # the writes reach the database here, not after the answer is
            # made: a constraint (say, one open pipeline run per model and
            # environment) that a concurrent request beat is a race retried
            # here, and its next try answers as the contract says
            request.env.flush_all()
            return result
        except Exception as error:
            if attempt == MAX_TRIES or not _is_race(error) or not _rewind_body():
                raise
            request.env.cr.rollback()
            request.env.invalidate_all()
            _logger.info("MLOps API: lost a race (%s), try %s", error.pgcode, attempt)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise RuntimeError("unreachable")


def _authenticate_gate():
    """A gate's caller: signed with the gate secret (run as the platform,
    which reads every company's models), or an API key's owner."""
    headers = request.httprequest.headers
    if headers.get("X-MLOps-Signature"):
        gates.verify_signature(
            headers.get("X-MLOps-Timestamp"),
            headers.get("X-MLOps-Signature"),
            _raw_body(MAX_JSON_BYTES),
        )
        request.update_env(user=SUPERUSER_ID, su=True)
        return
    _authenticate(_gate_key())


def _gate_key():
    """A gate's caller's API key: the bearer header, else Flagger's
    ``metadata.api_key`` (Flagger's webhooks send no header of their own);
    None: the header's answer (a 401 when there is none)."""
    if request.httprequest.headers.get("Authorization"):
        return None
    metadata = _body().get("metadata")
    key = metadata.get("api_key") if isinstance(metadata, dict) else None
    return key if isinstance(key, str) else None


# a JSON body's cap: 10,000 upload parts come to about 600 KB
MAX_JSON_BYTES = 1024 * 1024


def _raw_body(max_bytes=None):
    """The request's bytes (kept: a request that lost a race is run again
    with the same body); a 413 past ``max_bytes``, before reading them when
    the length is declared, while reading them when it is not (chunked)."""
    if not hasattr(request, "mlops_body"):
        too_large = JsonHTTPError(
            413, "payload_too_large", f"The body is larger than {max_bytes} bytes."
        )
        if max_bytes is not None:
            if (request.httprequest.content_length or 0) > max_bytes:
                raise too_large
            # werkzeug stops reading an undeclared length there
            request.httprequest.max_content_length = max_bytes
        try:
            data = request.httprequest.get_data(cache=False)
        except werkzeug.exceptions.RequestEntityTooLarge:
            raise too_large from None
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large
        request.mlops_body = data
    return request.mlops_body


def _body(max_bytes=None):
    """The JSON object sent, ``MAX_JSON_BYTES`` at most unless the route
    read the raw bytes first under a cap of its own."""
    _raw_body(max_bytes or MAX_JSON_BYTES)
    mimetype = request.httprequest.mimetype
    if request.mlops_body and mimetype != "application/json":
        raise JsonHTTPError(
            415,
            "unsupported_media_type",
            f"Send the body as application/json, not {mimetype or 'nothing'}.",
        )
    try:
        data = parse_json(request.mlops_body or b"{}")
    except NulCharacter as error:
        refused = InvalidInput(str(error))
        refused.details = {error.path: "text without a NUL character"}
        raise refused from None
    except ValueError as error:
        raise JsonHTTPError(
            400, "malformed_json", f"The body is not JSON: {error}"
        ) from error
    if not isinstance(data, dict):
        raise JsonHTTPError(400, "malformed_json", "The body must be a JSON object.")
    return data


# how much of a multipart body is read before its parts are known
HEAD_SIZE = 64 * 1024
