# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

METHODS = [
    ("ks", "Kolmogorov-Smirnov (p-value)"),
    ("wasserstein", "Wasserstein (normed)"),
    ("chisquare", "Chi-square (p-value)"),
    ("jensenshannon", "Jensen-Shannon"),
    ("psi", "Population stability index"),
]


class MlopsDriftFeature(models.Model):
    """One feature of a drift report: the method that judged it, its value
    and threshold, and whether it moved."""

    _name = "mlops.drift.feature"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Drift Report Feature"
    _order = "report_id desc, drifted desc, name"

    report_id = fields.Many2one(
        "mlops.drift.report",
        required=True,
        index=True,
        readonly=True,
        ondelete="cascade",
    )
    deployment_id = fields.Many2one(related="report_id.deployment_id", store=True)
    company_id = fields.Many2one(related="report_id.company_id", store=True)
    name = fields.Char(required=True, readonly=True)
    method = fields.Selection(METHODS, required=True, readonly=True)
    value = fields.Float(readonly=True, digits=(16, 6), aggregator="max")
    threshold = fields.Float(readonly=True, digits=(16, 4))
    drifted = fields.Boolean(readonly=True)

    def _to_json(self):
        return {
            "name": self.name,
            "method": self.method,
            "value": round(self.value, 6),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }
