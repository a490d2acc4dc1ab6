# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class MlopsOutcome(models.Model):
    """A business outcome of a served call (a conversion, a revenue), posted
    against the call's request id (``POST /outcomes``): an experiment's
    metric when it names the outcome. The call's deployment is found in
    the inference log's index, now or once the log is collected."""

    _name = "mlops.outcome"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Business Outcome"
    _order = "id desc"
    _rec_name = "name"

    request_id = fields.Char(required=True, index=True, readonly=True)
    name = fields.Char(required=True, index=True, readonly=True)
    value = fields.Float(required=True, readonly=True, digits=(16, 6))
    deployment_id = fields.Many2one(
        "mlops.deployment", index=True, readonly=True, ondelete="set null"
    )
    company_id = fields.Many2one(
        "res.company", required=True, readonly=True, index=True
    )
    user_id = fields.Many2one(
        "res.users", readonly=True, default=lambda self: self.env.user
    )
    at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
