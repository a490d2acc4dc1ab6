# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class AccountAnalyticLine(models.Model):
    """A deployment's cost for a period, booked by the platform
    (``services/costs.py``): the hours its pods ran and what they used.
    Those fields are the platform's (``mlops.guarded.mixin``); the line's
    own are analytic accounting's, as on any line."""

    _name = "account.analytic.line"
    _inherit = ["account.analytic.line", "mlops.guarded.mixin"]

    mlops_deployment_id = fields.Many2one(
        "mlops.deployment",
        string="Deployment",
        index="btree_not_null",
        readonly=True,
        ondelete="restrict",
    )
    mlops_version_id = fields.Many2one(
        related="mlops_deployment_id.version_id", string="Model Version", store=True
    )
    mlops_model_id = fields.Many2one(
        related="mlops_deployment_id.model_id", string="AI Model", store=True
    )
    mlops_environment = fields.Selection(
        related="mlops_deployment_id.environment", string="Environment", store=True
    )
    mlops_period_start = fields.Datetime(string="From", readonly=True)
    mlops_period_end = fields.Datetime(string="To", readonly=True)
    mlops_gpu_hours = fields.Float(string="GPU Hours", readonly=True, digits=(16, 3))
    mlops_cpu_hours = fields.Float(
        string="CPU Core Hours", readonly=True, digits=(16, 3)
    )
    mlops_memory_gib_hours = fields.Float(
        string="Memory GiB Hours", readonly=True, digits=(16, 3)
    )
