# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class MlopsInferenceRecord(models.Model):
    """The index of the inference log: one row per logged call, naming the
    batch and line that hold what was asked and answered. Found by request
    id (``X-Request-Id``), which feedback and business outcomes carry.
    Written in bulk by the platform only."""

    _name = "mlops.inference.record"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Inference Log Record"
    _order = "at desc, id desc"
    _rec_name = "request_id"
    _log_access = False

    batch_id = fields.Many2one(
        "mlops.inference.batch",
        required=True,
        index=True,
        readonly=True,
        ondelete="cascade",
    )
    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, index=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one("res.company", required=True, readonly=True)
    request_id = fields.Char(required=True, index=True, readonly=True)
    line = fields.Integer(readonly=True, help="The record's line in its batch, from 0.")
    at = fields.Datetime(readonly=True)
    status = fields.Integer(readonly=True)
    latency_ms = fields.Float(string="Latency (ms)", readonly=True, digits=(16, 3))
