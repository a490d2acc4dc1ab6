# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class MlopsVersionApproval(models.Model):
    """Who approved or refused what, when and why: an append-only audit
    trail written by the lifecycle, never by hand."""

    _name = "mlops.version.approval"
    _inherit = ["mlops.guarded.mixin"]
    _description = "AI Model Version Approval"
    _order = "create_date desc, id desc"

    version_id = fields.Many2one(
        "mlops.model.version",
        required=True,
        ondelete="cascade",
        index=True,
        readonly=True,
    )
    model_id = fields.Many2one(related="version_id.model_id", store=True)
    company_id = fields.Many2one(related="version_id.company_id", store=True)
    stage = fields.Selection(
        [
            ("staging", "Staging"),
            ("production", "Production"),
            ("rollback", "Rollback"),
        ],
        required=True,
        readonly=True,
    )
    decision = fields.Selection(
        [("approved", "Approved"), ("rejected", "Rejected")],
        required=True,
        readonly=True,
    )
    user_id = fields.Many2one(
        "res.users",
        string="By",
        required=True,
        readonly=True,
        default=lambda s: s.env.user,
    )
    date = fields.Datetime(default=fields.Datetime.now, required=True, readonly=True)
    reason = fields.Text(readonly=True)
    freeze_override = fields.Text(
        readonly=True,
        help="The Manager's reason for going past a deploy freeze, and the freeze.",
    )
    deployment_id = fields.Many2one(
        "mlops.deployment",
        readonly=True,
        ondelete="set null",
        help="The deployment this approval started.",
    )
    strategy = fields.Selection(
        related="deployment_id.strategy", store=True, readonly=True
    )
