# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from ..lifecycle import SCAN_TYPES, VALIDATION_STATES


class MlopsValidationResult(models.Model):
    _name = "mlops.validation.result"
    _description = "AI Model Validation Result"
    _order = "version_id, id desc"

    version_id = fields.Many2one(
        "mlops.model.version", required=True, ondelete="cascade", index=True
    )
    model_id = fields.Many2one(related="version_id.model_id", store=True)
    company_id = fields.Many2one(related="version_id.company_id", store=True)
    scan_type = fields.Selection(SCAN_TYPES, required=True)
    state = fields.Selection(
        VALIDATION_STATES, default="pending", required=True, index=True
    )
    blocking = fields.Boolean(
        default=True, help="A failure of a blocking scan fails the version."
    )
    summary = fields.Text()
    details = fields.Json()
    report_uri = fields.Char(string="Report URI", help="Full JSON report in the store.")
    started_at = fields.Datetime()
    finished_at = fields.Datetime()
    duration = fields.Float(compute="_compute_duration", string="Duration (s)")
    validated_by_id = fields.Many2one("res.users", string="Requested By")

    @api.depends("started_at", "finished_at")
    def _compute_duration(self):
        for result in self:
            if result.started_at and result.finished_at:
                result.duration = (
                    result.finished_at - result.started_at
                ).total_seconds()
            else:
                result.duration = 0.0

    @api.depends("version_id", "scan_type")
    def _compute_display_name(self):
        labels = dict(SCAN_TYPES)
        for result in self:
            result.display_name = (
                f"{result.version_id.display_name}: {labels.get(result.scan_type, '')}"
            )
