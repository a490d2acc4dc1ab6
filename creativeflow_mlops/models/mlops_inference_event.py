# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

KINDS = [("request", "Request"), ("response", "Response")]


class MlopsInferenceEvent(models.Model):
    """A KServe payload logger CloudEvent (a request or a response), already
    stripped of the version's personal fields, waiting for its pair: the
    inference log's collector joins the two by id into one record of a
    batch, then drops them (``services/inference_log.py``). Written by the
    platform only."""

    _name = "mlops.inference.event"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Inference Log Event (waiting for its pair)"
    _order = "id"
    _log_access = False

    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, index=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="deployment_id.company_id", store=True)
    request_id = fields.Char(required=True, index=True, readonly=True)
    kind = fields.Selection(KINDS, required=True, readonly=True)
    payload = fields.Json(readonly=True)
    received_at = fields.Datetime(
        required=True, readonly=True, default=fields.Datetime.now
    )

    _sql_constraints = [
        (
            "event_unique",
            "UNIQUE (deployment_id, request_id, kind)",
            "A call's request and response are each kept once.",
        ),
    ]
