# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /inference-log``: KServe's payload logger posts each call's
request and response as CloudEvents in binary mode (``ce-*`` headers, the
payload as the body), with the target's inference log key
(docs/reference/monitoring.md). No Odoo API key: the key names the target,
and the events name its deployment."""

from odoo import http
from odoo.http import request

from ..services import inference_log
from .framework import _body, _json, _raw_body, api_route

CE_HEADERS = (
    ("ce-id", "The call's id (KServe's request id)."),
    (
        "ce-type",
        "org.kubeflow.serving.inference.request or "
        "org.kubeflow.serving.inference.response.",
    ),
    ("ce-inferenceservicename", "The InferenceService (the colour) that served."),
)


class MlopsInferenceLogApi(http.Controller):
    @api_route(
        "/inference-log",
        ["POST"],
        auth="target_key",
        summary="A payload logger's CloudEvent: a call's request or response",
        body={"type": "object", "description": "The call's request or response."},
        headers=CE_HEADERS,
        answer=(202, {"type": "object", "properties": {"kept": {"type": "boolean"}}}),
        errors=(413,),
    )
    def inference_log(self, **_params):
        headers = request.httprequest.headers
        target = inference_log.target_for_key(request.env, headers.get("Authorization"))
        _raw_body(inference_log.MAX_EVENT_BYTES)
        payload = _body(inference_log.MAX_EVENT_BYTES)
        event = inference_log.accept_event(
            target, {k.lower(): v for k, v in headers.items()}, payload
        )
        return _json({"kept": bool(event)}, 202)
