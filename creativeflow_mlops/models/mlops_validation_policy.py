# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..lifecycle import MODEL_FORMATS
from ..scanners import catalog


class MlopsValidationPolicy(models.Model):
    """Per model format, whether a scan blocks, only warns, or does not run.
    A missing row keeps the scan's built-in default (``scanners.catalog``)."""

    _name = "mlops.validation.policy"
    _description = "MLOps Validation Policy"
    _order = "model_format, scan_type"

    model_format = fields.Selection(MODEL_FORMATS, required=True)
    scan_type = fields.Selection(catalog.SELECTION, required=True)
    mode = fields.Selection(catalog.MODES, required=True, default=catalog.BLOCK)
    default_mode = fields.Selection(catalog.MODES, compute="_compute_default_mode")

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
            policy.default_mode = catalog.default_mode(
                policy.model_format, policy.scan_type
            )

    @api.constrains("scan_type", "mode")
    def _check_mode(self):
        for policy in self:
            if policy.scan_type == catalog.FIRST and policy.mode == catalog.OFF:
                raise ValidationError(
                    self.env._(
                        "The integrity check cannot be turned off: it is where a "
                        "direct upload's SHA-256 is verified."
                    )
                )

    @api.model
    def _get_plan(self, model_format):
        """[(scan_type, mode)] for a format, overrides applied, in the order
        of the catalog."""
        overrides = {
            policy.scan_type: policy.mode
            for policy in self.sudo().search([("model_format", "=", model_format)])
        }
        return [
            (
                scan_type,
                overrides.get(scan_type, catalog.default_mode(model_format, scan_type)),
            )
            for scan_type in catalog.SPECS
        ]
