# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError


class MlopsFeedback(models.Model):
    _name = "mlops.feedback"
    _description = "AI Model Feedback"
    _order = "id desc"
    _inherit = ["mlops.guarded.mixin"]
    _rec_name = "version_id"
    # who gave it and when are the platform's
    _guarded_user_fields = frozenset(
        {
            "version_id",
            "deployment_id",
            "generation_request_id",
            "rating",
            "comment",
            "data",
        }
    )

    version_id = fields.Many2one(
        "mlops.model.version",
        compute="_compute_version_id",
        store=True,
        readonly=False,
        required=True,
        ondelete="cascade",
        index=True,
    )
    deployment_id = fields.Many2one("mlops.deployment", ondelete="set null", index=True)
    model_id = fields.Many2one(related="version_id.model_id", store=True, index=True)
    company_id = fields.Many2one(related="version_id.company_id", store=True)
    user_id = fields.Many2one(
        "res.users", default=lambda self: self.env.user, index=True
    )
    generation_request_id = fields.Char(index=True)
    rating = fields.Integer(help="From 1 (worst) to 5 (best).", aggregator="avg")
    comment = fields.Text()
    data = fields.Json(string="Structured Feedback")
    submitted_at = fields.Datetime(default=fields.Datetime.now, readonly=True)

    _sql_constraints = [
        (
            "rating_range",
            "CHECK (rating IS NULL OR rating = 0 OR rating BETWEEN 1 AND 5)",
            "A rating goes from 1 to 5.",
        ),
    ]

    @api.depends("deployment_id")
    def _compute_version_id(self):
        for feedback in self:
            if feedback.deployment_id:
                feedback.version_id = feedback.deployment_id.version_id

    @api.constrains("version_id", "deployment_id")
    def _check_deployment_version(self):
        for feedback in self:
            deployment = feedback.deployment_id
            if deployment and deployment.version_id != feedback.version_id:
                raise ValidationError(
                    self.env._("The feedback's deployment serves another version.")
                )
