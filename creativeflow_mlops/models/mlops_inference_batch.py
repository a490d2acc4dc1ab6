# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from ..services import inference_log

SOURCES = [
    ("runtime", "Model server"),
    ("cloudevents", "KServe payload logger"),
]


class MlopsInferenceBatch(models.Model):
    """One file of a deployment's inference log in the object store: a
    sample of the calls it answered, as JSONL, with what was asked and
    answered less the version's personal fields. Its calls are indexed by
    request id (``mlops.inference.record``), the key feedback and business
    outcomes name. Written by the platform only
    (``services/inference_log.py``)."""

    _name = "mlops.inference.batch"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Inference Log Batch"
    _order = "first_at desc, id desc"

    name = fields.Char(required=True, readonly=True)
    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, index=True, readonly=True, ondelete="cascade"
    )
    version_id = fields.Many2one(related="deployment_id.version_id", store=True)
    model_id = fields.Many2one(related="deployment_id.model_id", store=True)
    company_id = fields.Many2one(related="deployment_id.company_id", store=True)
    environment = fields.Selection(related="deployment_id.environment", store=True)
    source = fields.Selection(SOURCES, required=True, readonly=True)
    storage_backend_id = fields.Many2one(
        "mlops.storage.backend", required=True, readonly=True, ondelete="restrict"
    )
    object_key = fields.Char(required=True, readonly=True)
    uri = fields.Char(string="URI", readonly=True)
    rows = fields.Integer(readonly=True, aggregator="sum")
    size = fields.Integer(string="Bytes", readonly=True, aggregator="sum")
    first_at = fields.Datetime(string="From", readonly=True)
    last_at = fields.Datetime(string="To", readonly=True)
    record_ids = fields.One2many("mlops.inference.record", "batch_id", readonly=True)

    _sql_constraints = [
        (
            "name_unique",
            "UNIQUE (deployment_id, name)",
            "A deployment's log file is kept once.",
        ),
    ]

    @api.model
    def _cron_collect(self):
        """Cron: queue the collection of every target's inference logs."""
        return inference_log.schedule(self.env)

    def _read_rows(self):
        """The batch's records, as the model server wrote them."""
        self.ensure_one()
        return inference_log.read_batch(self)
