# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..lifecycle import (
    ENVIRONMENTS,
    EXPERIMENT_CREATE_STATES,
    EXPERIMENT_METRICS,
    EXPERIMENT_STATES,
    EXPERIMENT_TRANSITIONS,
)
from ..services import experiments

VERDICTS = [("winner", "A Winning Arm"), ("no_difference", "No Difference")]


class MlopsExperiment(models.Model):
    """An A/B experiment: two or more versions of a model served on one
    route (model and environment) in the shares its arms say, the router
    keeping a caller on one arm (``X-MLOps-Caller``), judged on a primary
    metric (``services/experiments.py``). Approvers make, start, stop and
    conclude it; its results and verdict are the platform's."""

    _name = "mlops.experiment"
    _inherit = ["mail.thread", "mlops.lifecycle.mixin"]
    _description = "MLOps A/B Experiment"
    _order = "id desc"

    _lifecycle_transitions = EXPERIMENT_TRANSITIONS
    _lifecycle_create_states = EXPERIMENT_CREATE_STATES
    _event_resource = "experiment"
    _guarded_user_fields = frozenset(
        {
            "name",
            "model_id",
            "environment",
            "metric",
            "outcome_name",
            "higher_is_better",
            "alpha",
            "ends_at",
            "arm_ids",
        }
    )

    name = fields.Char(required=True, tracking=True)
    model_id = fields.Many2one(
        "mlops.model", required=True, index=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="model_id.company_id", store=True)
    environment = fields.Selection(ENVIRONMENTS, required=True, default="production")
    state = fields.Selection(
        EXPERIMENT_STATES, default="draft", required=True, readonly=True, tracking=True
    )
    metric = fields.Selection(
        EXPERIMENT_METRICS,
        required=True,
        default="rating",
        help="Feedback ratings (higher is better), the error rate and the p95 "
        "latency (lower is better), or a business outcome posted against "
        "the calls' request ids.",
    )
    outcome_name = fields.Char(help="The business outcome's name (POST /outcomes).")
    higher_is_better = fields.Boolean(
        default=True, help="For a business outcome: whether more is better."
    )
    alpha = fields.Float(
        default=0.05, digits=(16, 3), help="The false-winner rate the verdict allows."
    )
    ends_at = fields.Datetime(tracking=True)
    started_at = fields.Datetime(readonly=True, copy=False)
    stopped_at = fields.Datetime(readonly=True, copy=False)
    arm_ids = fields.One2many("mlops.experiment.arm", "experiment_id", string="Arms")
    verdict = fields.Selection(VERDICTS, readonly=True, copy=False, tracking=True)
    winner_arm_id = fields.Many2one(
        "mlops.experiment.arm", readonly=True, copy=False, ondelete="set null"
    )
    results_at = fields.Datetime(string="Results From", readonly=True, copy=False)

    _sql_constraints = [
        (
            "alpha_range",
            "CHECK (alpha > 0 AND alpha < 0.5)",
            "Alpha is between 0 and 0.5.",
        ),
    ]

    @api.constrains("metric", "outcome_name")
    def _check_outcome_name(self):
        for experiment in self:
            if experiment.metric == "outcome" and not experiment.outcome_name:
                raise ValidationError(
                    self.env._("A business outcome metric needs the outcome's name.")
                )

    @api.constrains("arm_ids", "model_id")
    def _check_arms(self):
        for experiment in self:
            versions = experiment.arm_ids.version_id
            if versions.model_id - experiment.model_id:
                raise ValidationError(
                    self.env._("Every arm is a version of the experiment's model.")
                )
            if len(versions) != len(experiment.arm_ids):
                raise ValidationError(self.env._("Each arm is another version."))

    def write(self, vals):
        if not self.env.su and set(vals) & {
            "model_id",
            "environment",
            "metric",
            "arm_ids",
        }:
            if self.filtered(lambda e: e.state != "draft"):
                raise UserError(
                    self.env._("An experiment's arms and metric change only in draft.")
                )
        return super().write(vals)

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_start(self):
        for experiment in self:
            experiment._check_can_start()
            experiments.start(experiment)
        return True

    def action_stop(self):
        for experiment in self:
            experiment._check_can_transition("stopped")
            experiments.stop(experiment)
        return True

    def action_conclude(self):
        for experiment in self:
            experiment._check_can_transition("concluded")
            experiments.conclude(experiment)
        return True

    def action_refresh_results(self):
        for experiment in self:
            experiments.measure(experiment.sudo())
        return True

    def action_promote_winner(self):
        """The winner's version promoted through the normal approval path
        (the approval wizard, with its reason and separation of duties)."""
        self.ensure_one()
        if self.state != "concluded" or not self.winner_arm_id:
            raise UserError(
                self.env._("Only a concluded experiment's winner is promoted.")
            )
        return self.winner_arm_id.version_id.action_open_approval_wizard()

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _check_can_start(self):
        self._check_can_transition("running")
        experiments.check_can_start(self)

    def _event_values(self):
        return {
            "model_id": self.model_id.id,
            "version_id": self.winner_arm_id.version_id.id or False,
            "company_id": self.company_id.id,
            "data": experiments.to_json(self),
        }

    @api.model
    def _running_routes(self, target):
        """{route: [(colour, weight)]} of the experiments running on ``target``."""
        return experiments.routes(target)

    @api.model
    def _pinned_deployments(self):
        """The colours running experiments' arms need kept."""
        return experiments.pinned(self.env)

    @api.model
    def _cron_measure(self):
        """Cron: running experiments' results; those past their end stopped
        and concluded."""
        return experiments.measure_running(self.env)
