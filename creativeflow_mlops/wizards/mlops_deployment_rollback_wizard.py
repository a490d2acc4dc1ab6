# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class MlopsDeploymentRollbackWizard(models.TransientModel):
    """Asks why production is rolled back."""

    _name = "mlops.deployment.rollback.wizard"
    _description = "Roll Back a Production Deployment"

    deployment_id = fields.Many2one("mlops.deployment", required=True)
    reason = fields.Text(required=True)

    def action_confirm(self):
        self.ensure_one()
        self.deployment_id.action_rollback(reason=self.reason)
        return {"type": "ir.actions.act_window_close"}
