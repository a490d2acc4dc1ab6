# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /gates/<model>/<environment>``: may this version roll out there?
Asked by Flagger's confirm webhooks or an Argo Rollouts ``web`` metric
(docs/gitops/README.md); answered by ``services.gates``, and every answer
kept, the refusals included (so they are answers, not errors that roll the
transaction back)."""

from odoo import http
from odoo.http import request

from ..exceptions import NotFound
from ..lifecycle import ENVIRONMENTS
from ..services import gates
from .framework import _body, _json, api_route
from .openapi_schemas import BODIES, ref


class MlopsGatesApi(http.Controller):
    @api_route(
        "/gates/<string:model>/<string:environment>",
        ["POST"],
        auth="gate",
        summary="Whether Odoo holds an approved promotion of a version "
        "(Flagger's confirm webhooks, an Argo Rollouts web metric)",
        body=BODIES["gate"],
        answer=(200, ref("GateAnswer")),
        errors=(409,),
    )
    def gates_check(self, model, environment, **_params):
        body = _body()
        gates.check_body(body)
        if environment not in dict(ENVIRONMENTS):
            raise NotFound(f"No environment {environment!r}: staging or production.")
        found = request.env["mlops.model"].search(
            ["|", ("name", "=", model), ("slug", "=", model)], limit=1
        )
        if not found:
            raise NotFound(f"No model {model!r} you can read.")
        status, answer = gates.decide(request.env, found, environment, body)
        return _json(answer, status)
