# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models, tools

from ..services import events, webhooks

RESOURCES = [
    ("version", "Model Version"),
    ("deployment", "Deployment"),
    ("pipeline_run", "Pipeline Run"),
    ("experiment", "Experiment"),
]


class MlopsEvent(models.Model):
    """The event log: one line per state change of a version, a deployment
    or a pipeline run, written in the transaction of the change (so a change
    rolled back leaves no event); ``seq``, drawn as the transaction commits,
    is the cursor of ``GET /events`` and the ``id`` the faces show. The bus
    and the webhooks carry the same events (services.events)."""

    _name = "mlops.event"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Event"
    _order = "id"
    _log_access = False

    seq = fields.Integer(string="Cursor", readonly=True, index=True, copy=False)
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

    _sql_constraints = [
        ("seq_unique", "UNIQUE (seq)", "Two events cannot share a cursor."),
    ]

    def init(self):
        events.install(self.env.cr)
        # a record's ledger, in order (the costs read a deployment's)
        tools.create_index(
            self.env.cr,
            "mlops_event_resource_ledger_index",
            self._table,
            ["resource", "resource_id", "at"],
        )

    @api.model
    def _settle(self):
        """The events without a cursor get theirs, reach the bus and queue
        their webhooks (services.events.settle)."""
        settled = events.settle(self.env)
        webhooks.enqueue(settled)
        return settled

    @api.model
    def _cron_settle(self):
        events.settle_apart(self.env.registry)

    @api.model
    def _cron_retention(self):
        return events.purge(self.env)
