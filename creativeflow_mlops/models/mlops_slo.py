# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..lifecycle import ENVIRONMENTS


class MlopsSlo(models.Model):
    """A service level objective: the most errors and the slowest p95 a
    deployment may show over a window, judged once it served enough
    requests. It applies to one deployment, or to an environment of one
    model, or to an environment of every model; the most specific applies.
    A breach is said on the deployment, to the model's owner, as the
    ``slo.breached`` event, and in production with *automatic rollback*
    the deployment is rolled back (``services/monitoring.py``)."""

    _name = "mlops.slo"
    _inherit = ["mail.thread"]
    _description = "MLOps Service Level Objective"
    _order = "sequence, id"

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    environment = fields.Selection(ENVIRONMENTS, required=True, default="production")
    model_id = fields.Many2one(
        "mlops.model", help="None: every model of the company.", ondelete="cascade"
    )
    deployment_id = fields.Many2one(
        "mlops.deployment",
        help="This deployment only (its environment and model).",
        ondelete="cascade",
    )
    max_error_rate = fields.Float(
        digits=(16, 4),
        default=0.05,
        tracking=True,
        help="5xx over the answers the model produced, 0 to 1; 0: not checked.",
    )
    max_p95_ms = fields.Integer(
        string="Max p95 (ms)", default=500, tracking=True, help="0: not checked."
    )
    min_requests = fields.Integer(
        default=50, tracking=True, help="Fewer requests in the window decide nothing."
    )
    window_minutes = fields.Integer(default=5, required=True, tracking=True)
    auto_rollback = fields.Boolean(
        string="Automatic Rollback",
        tracking=True,
        help="In production, a breach rolls the deployment back to the version "
        "before it, through the normal rollback (the ledger names the SLO and "
        "the values measured).",
    )

    @api.constrains(
        "max_error_rate",
        "max_p95_ms",
        "min_requests",
        "window_minutes",
        "deployment_id",
    )
    def _check_bounds(self):
        for slo in self:
            if not 0 <= slo.max_error_rate <= 1:
                raise ValidationError(self.env._("The error rate is from 0 to 1."))
            if slo.max_p95_ms < 0 or slo.min_requests < 0:
                raise ValidationError(
                    self.env._("The p95 and the minimum requests are not negative.")
                )
            if not 1 <= slo.window_minutes <= 24 * 60:
                raise ValidationError(
                    self.env._("The window is from 1 minute to a day.")
                )
            if not slo.max_error_rate and not slo.max_p95_ms:
                raise ValidationError(
                    self.env._("An SLO checks the error rate, the p95, or both.")
                )
            deployment = slo.deployment_id
            if deployment and (
                deployment.environment != slo.environment
                or (slo.model_id and slo.model_id != deployment.model_id)
            ):
                raise ValidationError(
                    self.env._(
                        "%(deployment)s serves %(model)s in %(environment)s: the "
                        "SLO's model and environment must be those.",
                        deployment=deployment.display_name,
                        model=deployment.model_id.name,
                        environment=deployment.environment,
                    )
                )

    @api.model
    def _for(self, deployment):
        """The SLO that applies to ``deployment``: its own, else its
        model's in its environment, else its environment's."""
        candidates = self.search(
            [
                ("company_id", "=", deployment.company_id.id),
                ("environment", "=", deployment.environment),
                "|",
                ("deployment_id", "=", deployment.id),
                "&",
                ("deployment_id", "=", False),
                "|",
                ("model_id", "=", deployment.model_id.id),
                ("model_id", "=", False),
            ]
        )
        return candidates.sorted(
            lambda s: (not s.deployment_id, not s.model_id, s.sequence, s.id)
        )[:1]

    def _problems(self, measured):
        """What ``measured`` (``monitoring.summary``) breaks of this SLO."""
        self.ensure_one()
        problems = []
        if self.max_error_rate and measured["error_rate"] > self.max_error_rate:
            problems.append(
                self.env._(
                    "error rate %(rate).2f%% above %(limit).2f%% (%(errors)s 5xx)",
                    rate=100 * measured["error_rate"],
                    limit=100 * self.max_error_rate,
                    errors=measured["errors_5xx"],
                )
            )
        p95 = measured["p95_ms"]
        if self.max_p95_ms and p95 is not None and p95 > self.max_p95_ms:
            problems.append(
                self.env._(
                    "p95 %(p95)s ms above %(limit)s ms",
                    p95=round(p95),
                    limit=self.max_p95_ms,
                )
            )
        return problems
