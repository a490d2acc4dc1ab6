# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The JSON-RPC face (docs/reference/api.md): ``POST /mlops/rpc/<operation>``
with Odoo's JSON-RPC 2.0 envelope and the Odoo session cookie, for the PWA.
It runs the same operations as REST (``services.operations``) as the
session's user: ``result`` is the REST answer's body, an error is a
JSON-RPC ``error`` whose ``data`` is the REST error (``code``, ``message``,
``details``, ``http_status``).

A route of type ``http`` rather than Odoo's ``json``: Odoo's would answer
every error as "Odoo Server Error". It takes no CSRF token, as Odoo's JSON
routes do not: it accepts only ``application/json``, which a page of
another site cannot send with the user's cookie without a CORS preflight
that Odoo never grants."""

import json
import logging

from odoo import http
from odoo.http import request

from ..services import operations
from ..utils import parse_json
from .framework import JsonHTTPError, _raw_body, _retrying, _translate

_logger = logging.getLogger(__name__)

MAX_RPC_BYTES = 1024 * 1024
# JSON-RPC 2.0's own codes, for a call that is not one; an operation's
# error carries its HTTP status as its code
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def _answer(call_id, result=None, error=None):
    body = {"jsonrpc": "2.0", "id": call_id}
    if error is None:
        body["result"] = result
    else:
        body["error"] = error
    return request.make_response(
        json.dumps(body, default=str),
        headers=[("Content-Type", "application/json"), ("Cache-Control", "no-store")],
    )


def _error(code, status, error_code, message, details=None):
    return {
        "code": code,
        "message": message,
        "data": {
            "code": error_code,
            "message": message,
            "details": details or {},
            "http_status": status,
        },
    }


class MlopsRpcApi(http.Controller):
    @http.route(
        "/mlops/rpc/<string:operation>",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def rpc(self, operation, **_params):
        call_id = None
        try:
            if request.httprequest.mimetype != "application/json":
                raise JsonHTTPError(
                    415,
                    "unsupported_media_type",
                    "Send the JSON-RPC envelope as application/json.",
                )
            try:
                envelope = parse_json(_raw_body(MAX_RPC_BYTES) or b"")
            except ValueError as error:
                return _answer(
                    None,
                    error=_error(
                        PARSE_ERROR, 400, "malformed_json", f"Not JSON: {error}"
                    ),
                )
            if not isinstance(envelope, dict):
                raise JsonHTTPError(
                    400, "invalid_request", "The envelope is a JSON object."
                )
            call_id = envelope.get("id")
            params = envelope.get("params", {})
            if envelope.get("jsonrpc") != "2.0" or not isinstance(params, dict):
                return _answer(
                    call_id,
                    error=_error(
                        INVALID_REQUEST,
                        400,
                        "invalid_request",
                        'Send {"jsonrpc": "2.0", "method": "call", "params": '
                        '{...}, "id": ...}.',
                    ),
                )
            if request.env.user._is_public():
                raise JsonHTTPError(
                    401,
                    "unauthorized",
                    "Log in first: JSON-RPC runs with the Odoo session.",
                )
            _status, result = _retrying(
                lambda: operations.run(request.env, operation, params), "session"
            )
            return _answer(call_id, result)
        except Exception as error:  # noqa: BLE001 - every error becomes JSON-RPC
            request.env.cr.rollback()
            status, code, message, details = _translate(error)
            if status >= 500 and status != 503:
                _logger.exception("MLOps JSON-RPC %s failed", operation)
            return _answer(
                call_id, error=_error(status, status, code, message, details)
            )
