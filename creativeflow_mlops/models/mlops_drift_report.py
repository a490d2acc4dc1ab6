# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from ..services import drift_reports

REFERENCES = [
    ("staging", "The version's staging traffic"),
    ("own", "The deployment's first logged calls"),
]


class MlopsDriftReport(models.Model):
    """How a deployment's recent inputs compare with a reference window,
    feature by feature (``services/drift_reports.py``): the share of
    features that moved is its score, and the data drifts when the share
    reaches the setting's. Written by the platform only."""

    _name = "mlops.drift.report"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Drift Report"
    _order = "at desc, id desc"
    _rec_name = "at"

    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, index=True, readonly=True, ondelete="cascade"
    )
    version_id = fields.Many2one(related="deployment_id.version_id", store=True)
    model_id = fields.Many2one(related="deployment_id.model_id", store=True)
    company_id = fields.Many2one(related="deployment_id.company_id", store=True)
    environment = fields.Selection(related="deployment_id.environment", store=True)
    at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    score = fields.Float(
        readonly=True, digits=(16, 4), help="The share of features that drifted."
    )
    drifted = fields.Boolean(readonly=True)
    share = fields.Float(
        string="Drift Share",
        readonly=True,
        digits=(16, 2),
        help="The data drifts when this share of its features does.",
    )
    reference = fields.Selection(REFERENCES, readonly=True)
    reference_rows = fields.Integer(readonly=True)
    reference_from = fields.Datetime(readonly=True)
    reference_to = fields.Datetime(readonly=True)
    current_rows = fields.Integer(readonly=True)
    current_from = fields.Datetime(readonly=True)
    current_to = fields.Datetime(readonly=True)
    feature_ids = fields.One2many("mlops.drift.feature", "report_id", readonly=True)
    drifted_features = fields.Integer(
        compute="_compute_drifted_features", store=True, readonly=True
    )

    @api.depends("feature_ids.drifted")
    def _compute_drifted_features(self):
        for report in self:
            report.drifted_features = len(report.feature_ids.filtered("drifted"))

    @api.model
    def _cron_schedule(self):
        """Cron: a drift job per live deployment that logs its calls."""
        return drift_reports.schedule(self.env)

    def action_view_features(self):
        """Its features as a chart (and list)."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_drift_feature_action"
        )
        action["domain"] = [("report_id", "=", self.id)]
        return action
