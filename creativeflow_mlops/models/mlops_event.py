# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from ..services import events, webhooks

RESOURCES = [
    ("version", "Model Version"),
    ("deployment", "Deployment"),
    ("pipeline_run", "Pipeline Run"),
]


class MlopsEvent(models.Model):
    """The event log: one line per state change of a version, a deployment
    or a pipeline run, written in the transaction of the change (so a change
    rolled back leaves no event), its id the cursor of ``GET /events``. The
    bus and the webhooks carry the same events (services.events)."""

    _name = "mlops.event"
    _description = "MLOps Event"
    _order = "id"
    _log_access = False

    type = fields.Char(required=True, readonly=True, index=True)
    resource = fields.Selection(RESOURCES, required=True, readonly=True)
    resource_id = fields.Integer(string="Resource ID", required=True, readonly=True)
    model_id = fields.Many2one("mlops.model", readonly=True, ondelete="set null")
    version_id = fields.Many2one(
        "mlops.model.version", readonly=True, ondelete="set null"
    )
    company_id = fields.Many2one("res.company", readonly=True, index=True)
    state = fields.Char(readonly=True)
    previous_state = fields.Char(readonly=True)
    at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    data = fields.Json(readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        logged = super().create(vals_list)
        webhooks.enqueue(logged)
        return logged

    @api.model
    def _cron_retention(self):
        return events.purge(self.env)
