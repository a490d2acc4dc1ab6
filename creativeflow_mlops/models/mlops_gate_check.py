# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..lifecycle import ENVIRONMENTS


class MlopsGateCheck(models.Model):
    """One question a cluster asked Odoo before going on (Flagger's
    ``confirm-rollout`` / ``confirm-promotion`` webhooks, an Argo Rollouts
    ``web`` metric): may this version of this model roll out in this
    environment? Every answer is kept, the refusals too, beside the ledger
    line that served when it was asked (``services.gates``)."""

    _name = "mlops.gate.check"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Gate Check"
    _order = "checked_at desc, id desc"

    model_id = fields.Many2one(
        "mlops.model", required=True, index=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="model_id.company_id", store=True)
    environment = fields.Selection(ENVIRONMENTS, required=True, readonly=True)
    version = fields.Char(
        string="Version Asked", readonly=True, help="The version the caller named."
    )
    version_id = fields.Many2one(
        "mlops.model.version", readonly=True, ondelete="set null"
    )
    caller_id = fields.Many2one("res.users", readonly=True)
    phase = fields.Char(
        readonly=True, help="What the caller said it was at (Flagger's phase)."
    )
    source = fields.Char(
        readonly=True, help="Who asked, as the request said (Flagger's canary name)."
    )
    approved = fields.Boolean(readonly=True)
    status = fields.Integer(readonly=True, help="The HTTP status answered.")
    reason = fields.Text(readonly=True)
    promotion_id = fields.Many2one(
        "mlops.promotion",
        readonly=True,
        ondelete="set null",
        string="Ledger Line",
        help="The ledger line that served the environment when it was asked.",
    )
    checked_at = fields.Datetime(
        default=fields.Datetime.now, required=True, readonly=True
    )
