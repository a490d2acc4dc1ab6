# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Everything under the REST and JSON-RPC prefixes that no route takes: the
contract's JSON 404 or 405, never an HTML page."""

import werkzeug.exceptions

from odoo import http
from odoo.http import request

from .framework import (
    API,
    JsonHTTPError,
)

RPC = "/mlops/rpc"
# this controller's own rules: what no other route takes under the prefixes
FALLBACK_RULES = (API, f"{API}/<path:_rest>", RPC, f"{RPC}/<path:_rest>")


class MlopsApiFallback(http.Controller):
    # ------------------------------------------------------------------
    # Everything else under the prefix: the contract's JSON, never HTML
    # ------------------------------------------------------------------

    @http.route(
        list(FALLBACK_RULES),
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


def _methods_for(httprequest):
    """The methods some other API route takes at this path."""
    adapter = request.env["ir.http"].routing_map().bind_to_environ(httprequest.environ)
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            rule, _args = adapter.match(method=method, return_rule=True)
        except werkzeug.exceptions.HTTPException:
            continue
        if rule.rule not in FALLBACK_RULES:
            allowed.append(method)
    return allowed
