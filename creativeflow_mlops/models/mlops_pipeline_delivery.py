# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..lifecycle import PIPELINE_STAGES, STAGE_STATES


class MlopsPipelineDelivery(models.Model):
    """A signed report an external pipeline delivered to ``POST
    /ci/callback``, kept whether it changed anything or not: what the
    pipeline said and when, and the signature that makes a replay of it
    refused (unique)."""

    _name = "mlops.pipeline.delivery"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Pipeline Report"
    _order = "id desc"

    run_id = fields.Many2one(
        "mlops.pipeline.run", required=True, ondelete="cascade", index=True
    )
    company_id = fields.Many2one(related="run_id.company_id", store=True)
    signature = fields.Char(required=True, readonly=True)
    sent_at = fields.Datetime(readonly=True, help="Its X-MLOps-Timestamp.")
    stage = fields.Selection(PIPELINE_STAGES, readonly=True)
    status = fields.Selection(STAGE_STATES, readonly=True)
    changed = fields.Boolean(readonly=True)
    note = fields.Char(readonly=True)

    _sql_constraints = [
        (
            "signature_uniq",
            "unique (signature)",
            "This report was delivered before.",
        ),
    ]
