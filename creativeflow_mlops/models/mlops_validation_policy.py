# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..lifecycle import MODEL_FORMATS, SCAN_TYPES
from ..validation import MODES, default_mode


class MlopsValidationPolicy(models.Model):
    """Per model format, whether a scan blocks, only warns, or does not run.
    A missing row keeps the built-in default (``validation.default_mode``)."""

    _name = "mlops.validation.policy"
    _description = "MLOps Validation Policy"
    _order = "model_format, scan_type"

    model_format = fields.Selection(MODEL_FORMATS, required=True)
    scan_type = fields.Selection(SCAN_TYPES, required=True)
    mode = fields.Selection(MODES, required=True, default="block")
    default_mode = fields.Selection(MODES, compute="_compute_default_mode")

    _sql_constraints = [
        (
            "format_scan_uniq",
            "unique (model_format, scan_type)",
            "This format already has a rule for this scan.",
        )
    ]

    @api.depends("model_format", "scan_type")
    def _compute_default_mode(self):
        for policy in self:
            policy.default_mode = default_mode(policy.model_format, policy.scan_type)

    @api.constrains("scan_type", "mode")
    def _check_mode(self):
        for policy in self:
            if policy.scan_type == "integrity" and policy.mode == "off":
                raise ValidationError(
                    self.env._(
                        "The integrity check cannot be turned off: it is where a "
                        "direct upload's SHA-256 is verified."
                    )
                )

    @api.model
    def _get_plan(self, model_format):
        """[(scan_type, mode)] for a format, overrides applied."""
        overrides = {
            policy.scan_type: policy.mode
            for policy in self.sudo().search([("model_format", "=", model_format)])
        }
        return [
            (scan_type, overrides.get(scan_type, default_mode(model_format, scan_type)))
            for scan_type, _label in SCAN_TYPES
        ]
