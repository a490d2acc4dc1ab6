# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..lifecycle import ENVIRONMENTS, STRATEGIES


class MlopsPromotion(models.Model):
    """The promotion ledger: one line per change of what serves a model's
    environment (who approved it, when, why, and from when until when it
    served). Written by the deployment service when traffic moves, never by
    hand; a rollback reads it to know what served before."""

    _name = "mlops.promotion"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Promotion Ledger"
    _order = "live_from desc, id desc"

    model_id = fields.Many2one(
        "mlops.model", required=True, index=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="model_id.company_id", store=True)
    environment = fields.Selection(ENVIRONMENTS, required=True, readonly=True)
    version_before_id = fields.Many2one(
        "mlops.model.version", string="Before", readonly=True, ondelete="set null"
    )
    version_after_id = fields.Many2one(
        "mlops.model.version",
        string="After",
        required=True,
        readonly=True,
        ondelete="cascade",
    )
    deployment_id = fields.Many2one(
        "mlops.deployment", readonly=True, ondelete="set null"
    )
    strategy = fields.Selection(STRATEGIES, readonly=True)
    kind = fields.Selection(
        [("promotion", "Promotion"), ("rollback", "Rollback")],
        default="promotion",
        required=True,
        readonly=True,
    )
    approved_by_id = fields.Many2one("res.users", readonly=True)
    approved_at = fields.Datetime(readonly=True)
    reason = fields.Text(readonly=True)
    freeze_override = fields.Text(
        readonly=True, help="Approved past a deploy freeze: the Manager's reason."
    )
    live_from = fields.Datetime(required=True, readonly=True)
    live_until = fields.Datetime(readonly=True)

    def _current(self, model, environment):
        return self.search(
            [
                ("model_id", "=", model.id),
                ("environment", "=", environment),
                ("live_until", "=", False),
            ],
            order="live_from desc, id desc",
            limit=1,
        )
