# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import werkzeug.exceptions
import werkzeug.routing

from odoo import models
from odoo.http import request

from ..services.errors import REST_PREFIX, error_body


def _under_rest(path):
    return path == REST_PREFIX or path.startswith(f"{REST_PREFIX}/")


class IrHttp(models.AbstractModel):
    """Paths under the REST prefix that no rule can match (a newline in a
    segment, ``//``) get the contract's JSON 404 too, not Odoo's HTML page
    or Werkzeug's redirect: the API's catch-all route answers the rest."""

    _inherit = "ir.http"

    @classmethod
    def _match(cls, path_info):
        try:
            return super()._match(path_info)
        except werkzeug.routing.RequestRedirect as redirect:
            if not _under_rest(path_info):
                raise
            raise werkzeug.exceptions.NotFound() from redirect

    @classmethod
    def _serve_fallback(cls):
        path = request.httprequest.path
        if not _under_rest(path):
            return super()._serve_fallback()
        return request.make_json_response(
            error_body("not_found", f"No route {path!r}."), status=404
        )
