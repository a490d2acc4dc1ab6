# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..lifecycle import PIPELINE_STAGES, STAGE_STATES

LOG_LIMIT = 20_000


class MlopsPipelineStage(models.Model):
    """One stage of a pipeline run, with its own state, times and log."""

    _name = "mlops.pipeline.stage"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Pipeline Stage"
    _order = "run_id, sequence, id"

    run_id = fields.Many2one(
        "mlops.pipeline.run", required=True, ondelete="cascade", index=True
    )
    company_id = fields.Many2one(related="run_id.company_id", store=True)
    name = fields.Selection(PIPELINE_STAGES, required=True)
    sequence = fields.Integer()
    state = fields.Selection(STAGE_STATES, default="pending", required=True)
    started_at = fields.Datetime()
    finished_at = fields.Datetime()
    log = fields.Text()

    _sql_constraints = [
        ("stage_uniq", "unique (run_id, name)", "A run has each stage once."),
    ]

    def _start(self):
        self.write({"state": "running", "started_at": fields.Datetime.now()})

    def _finish(self, state, log=""):
        self.write(
            {
                "state": state,
                "finished_at": fields.Datetime.now(),
                "log": ((self.log or "") + (log or ""))[-LOG_LIMIT:],
            }
        )
