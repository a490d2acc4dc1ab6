# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /ci/callback``: an external pipeline reports a stage of its run
(docs/reference/api.md). No API key: the report is signed with the run's
own secret (``services.pipeline.verify``)."""

from odoo import http
from odoo.http import request

from ..services import pipeline
from .framework import _body, _json, _raw_body, api_route
from .openapi_schemas import BODIES, ref


class MlopsCiApi(http.Controller):
    @api_route(
        "/ci/callback",
        ["POST"],
        auth="signature",
        summary="An external pipeline reports a stage (signed)",
        body=BODIES["callback"],
        answer=(200, ref("CallbackAnswer")),
        errors=(413,),
    )
    def ci_callback(self, **_params):
        raw = _raw_body(pipeline.MAX_CALLBACK_BYTES)
        body = _body()
        run = pipeline.find_run(request.env, body.get("run_id"))
        headers = request.httprequest.headers
        signature, sent = pipeline.verify(
            run,
            headers.get("X-MLOps-Timestamp"),
            headers.get("X-MLOps-Signature"),
            raw,
        )
        return _json(pipeline.report(run, body, signature, sent))
