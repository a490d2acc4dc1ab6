# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from ..lifecycle import ENVIRONMENTS
from ..services import monitoring

PERIODS = [("minute", "Minute"), ("hour", "Hour")]


class MlopsDeploymentMetric(models.Model):
    """How a deployment served over one time bucket, as its target reported
    it: answers by status class, latency quantiles, throughput, and CPU
    and memory where the target says. Collected by a cron and queued jobs,
    never on a request's path (``services/monitoring.py``); minute buckets
    are rolled up into hours, and both pruned, by the retention settings.
    Written by the platform only."""

    _name = "mlops.deployment.metric"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Deployment Metrics"
    _order = "at desc, id desc"
    _rec_name = "at"

    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, index=True, readonly=True, ondelete="cascade"
    )
    model_id = fields.Many2one(related="deployment_id.model_id", store=True)
    version_id = fields.Many2one(related="deployment_id.version_id", store=True)
    environment = fields.Selection(ENVIRONMENTS, readonly=True)
    target_id = fields.Many2one(related="deployment_id.target_id", store=True)
    company_id = fields.Many2one(related="deployment_id.company_id", store=True)
    at = fields.Datetime(
        string="From", required=True, readonly=True, help="The bucket's start."
    )
    period = fields.Selection(PERIODS, required=True, default="minute", readonly=True)
    seconds = fields.Integer(readonly=True, help="The window the figures cover.")
    requests = fields.Integer(readonly=True, default=0, aggregator="sum")
    errors_4xx = fields.Integer(
        string="4xx", readonly=True, default=0, aggregator="sum"
    )
    errors_5xx = fields.Integer(
        string="5xx", readonly=True, default=0, aggregator="sum"
    )
    error_rate = fields.Float(
        compute="_compute_error_rate",
        store=True,
        aggregator="avg",
        digits=(16, 4),
        help="5xx over the answers the model produced (4xx are the callers').",
    )
    throughput = fields.Float(
        string="Requests/s",
        compute="_compute_throughput",
        store=True,
        aggregator="avg",
        digits=(16, 3),
    )
    p50_ms = fields.Float(string="p50 (ms)", readonly=True, aggregator="avg")
    p95_ms = fields.Float(string="p95 (ms)", readonly=True, aggregator="max")
    p99_ms = fields.Float(string="p99 (ms)", readonly=True, aggregator="max")
    cpu_cores = fields.Float(readonly=True, aggregator="avg")
    memory_mb = fields.Float(string="Memory (MiB)", readonly=True, aggregator="avg")

    _sql_constraints = [
        (
            "bucket_unique",
            "UNIQUE (deployment_id, period, at)",
            "One bucket per deployment, period and start.",
        ),
    ]

    @api.depends("requests", "errors_4xx", "errors_5xx")
    def _compute_error_rate(self):
        for metric in self:
            produced = metric.requests - metric.errors_4xx
            metric.error_rate = metric.errors_5xx / produced if produced > 0 else 0.0

    @api.depends("requests", "seconds")
    def _compute_throughput(self):
        for metric in self:
            metric.throughput = (
                metric.requests / metric.seconds if metric.seconds else 0.0
            )

    @api.model
    def _cron_collect(self):
        """Cron: queue the collection of every target's live deployments."""
        return monitoring.schedule(self.env)

    @api.model
    def _cron_rollup(self):
        """Cron: minute buckets into hours, old buckets dropped."""
        return monitoring.rollup(self.env)
