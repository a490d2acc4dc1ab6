# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..lifecycle import ENVIRONMENTS


class MlopsInvokeKeyWizard(models.TransientModel):
    """Makes an invoke key and shows it, once."""

    _name = "mlops.invoke.key.wizard"
    _description = "New Invoke Key"

    name = fields.Char(required=True)
    model_ids = fields.Many2many("mlops.model", string="Models")
    environment = fields.Selection(
        [*ENVIRONMENTS, ("all", "All")], required=True, default="production"
    )
    expires_at = fields.Datetime(string="Expires On")
    key = fields.Char(readonly=True)

    def action_generate(self):
        self.ensure_one()
        _record, token = self.env["mlops.invoke.key"]._generate(
            {
                "name": self.name,
                "model_ids": [fields.Command.set(self.model_ids.ids)],
                "environment": self.environment,
                "expires_at": self.expires_at,
            }
        )
        self.key = token
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": self.env._("Your invoke key"),
        }
