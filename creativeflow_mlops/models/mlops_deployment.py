# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import UserError

from ..adapters.targets import TargetFailed
from ..exceptions import InvalidInput, TransitionNotAllowed
from ..lifecycle import (
    APPROVER,
    DEPLOYMENT_CREATE_STATES,
    DEPLOYMENT_STATES,
    DEPLOYMENT_TRANSITIONS,
    DRIFT_STATES,
    ENVIRONMENTS,
    STRATEGIES,
)
from ..services import (
    canary,
    costs,
    drift_reports,
    errors,
    experiments,
    jobs,
    registry_changes,
    serving,
    settings,
)
from ..services import deployment as deploy_service

# a deployment in one of these states serves or may serve traffic
LIVE_STATES = (
    "requested",
    "deploying",
    "active",
    "inactive_bluegreen",
    "rolling_out_canary",
)


class MlopsDeployment(models.Model):
    _name = "mlops.deployment"
    _description = "AI Model Deployment"
    _inherit = ["mail.thread", "mlops.lifecycle.mixin"]
    _order = "id desc"

    _lifecycle_transitions = DEPLOYMENT_TRANSITIONS
    _lifecycle_create_states = DEPLOYMENT_CREATE_STATES
    _event_resource = "deployment"

    version_id = fields.Many2one(
        "mlops.model.version",
        required=True,
        ondelete="restrict",
        index=True,
        tracking=True,
    )
    model_id = fields.Many2one(related="version_id.model_id", store=True, index=True)
    company_id = fields.Many2one(
        related="version_id.company_id", store=True, index=True
    )
    environment = fields.Selection(
        ENVIRONMENTS, required=True, default="staging", index=True
    )
    strategy = fields.Selection(STRATEGIES, required=True, default="rolling")
    state = fields.Selection(
        DEPLOYMENT_STATES,
        default="requested",
        required=True,
        readonly=True,
        copy=False,
        index=True,
        tracking=True,
    )
    replicas = fields.Integer(default=1, tracking=True)
    traffic_percent = fields.Integer(
        default=100, help="Share of the environment's traffic this deployment serves."
    )
    canary_percent = fields.Integer(help="Target share for a canary rollout.")
    endpoint_url = fields.Char(string="Endpoint URL", copy=False)
    target_id = fields.Many2one(
        "mlops.deployment.target",
        ondelete="restrict",
        default=lambda self: self.env["mlops.deployment.target"].sudo()._get_default(),
    )
    target = fields.Char(related="target_id.code", string="Target Code")
    run_ids = fields.One2many("mlops.pipeline.run", "deployment_id", string="Runs")
    stage_ids = fields.One2many(
        "mlops.pipeline.stage", compute="_compute_stage_ids", string="Stages"
    )
    log_tail = fields.Text(compute="_compute_log_tail", string="Runtime Log")
    gpu = fields.Integer(string="GPUs")
    gpu_type = fields.Char(string="GPU Type")
    cpu = fields.Char(string="CPU", help="Kubernetes quantity, e.g. 2 or 500m.")
    memory = fields.Char(help="Kubernetes quantity, e.g. 8Gi.")
    config = fields.Json()
    deployed_by_id = fields.Many2one(
        "res.users",
        default=lambda self: self.env.user,
        readonly=True,
    )
    deployed_at = fields.Datetime(readonly=True, copy=False)
    # what its pods cost (services/costs.py)
    cost_booked_until = fields.Datetime(readonly=True, copy=False)
    cost_total = fields.Float(
        string="Cost",
        readonly=True,
        copy=False,
        digits=(16, 2),
        help="What its pods cost, as booked to the model's analytic account.",
    )
    message = fields.Text(string="Last Message", copy=False)
    image = fields.Char(
        readonly=True,
        copy=False,
        help="The ModelCar image the deployment serves, with its digest "
        "(registry/repository@sha256:...), once built and pushed.",
    )
    inference_log_rate = fields.Float(
        string="Logged Share",
        default=lambda self: settings.get(self.env, "inference_log_rate"),
        readonly=True,
        digits=(16, 4),
        help="The share of calls its model servers keep in the inference log, "
        "with what was asked and answered (less the version's personal "
        "fields): the setting when it was deployed.",
    )
    inference_batch_ids = fields.One2many(
        "mlops.inference.batch", "deployment_id", string="Inference Log"
    )
    data_drift_score = fields.Float(
        readonly=True,
        copy=False,
        digits=(16, 2),
        help="The share of input features that moved in the last drift report.",
    )
    data_drifted = fields.Boolean(
        readonly=True,
        copy=False,
        help="The last drift report found the inputs moved from the reference.",
    )
    drift_report_ids = fields.One2many(
        "mlops.drift.report", "deployment_id", string="Drift Reports"
    )
    drift = fields.Selection(
        DRIFT_STATES,
        default="unknown",
        readonly=True,
        copy=False,
        help="What reconciliation found on the target: in sync with what Odoo "
        "applied, drifted (edited there), missing (gone there), or not "
        "checked yet.",
    )
    drift_detail = fields.Text(readonly=True, copy=False)
    metrics_cursor = fields.Json(
        readonly=True,
        copy=False,
        groups="base.group_system",
        help="The target's last reading: where the next metrics window starts.",
    )
    metric_ids = fields.One2many(
        "mlops.deployment.metric", "deployment_id", string="Metrics", readonly=True
    )
    slo_state = fields.Selection(
        [("met", "Met"), ("breached", "Breached")],
        string="SLO",
        readonly=True,
        copy=False,
        help="Its SLO over the SLO's window, once it served enough requests.",
    )
    slo_detail = fields.Text(string="SLO Detail", readonly=True, copy=False)
    restart_count = fields.Integer(
        readonly=True, copy=False, help="Restarts of its model server in a row."
    )
    restart_after = fields.Datetime(
        readonly=True, copy=False, help="No restart before this time (backoff)."
    )

    _sql_constraints = [
        ("replicas_positive", "CHECK (replicas >= 0)", "Replicas cannot be negative."),
        (
            "traffic_percent_range",
            "CHECK (traffic_percent BETWEEN 0 AND 100)",
            "Traffic must be between 0 and 100 percent.",
        ),
        (
            "canary_percent_range",
            "CHECK (canary_percent IS NULL OR canary_percent BETWEEN 0 AND 100)",
            "The canary share must be between 0 and 100 percent.",
        ),
    ]

    def init(self):
        # the endpoint registry's change log (services.registry_changes)
        registry_changes.install(self.env.cr, self._table)

    def _compute_stage_ids(self):
        for deployment in self:
            deployment.stage_ids = deployment.run_ids[:1].stage_ids

    def _compute_log_tail(self):
        for deployment in self:
            target = deployment.target_id.sudo()
            deployment.log_tail = (
                target._get_client().log_tail(serving.plan(deployment))
                if target and target._capabilities().logs
                else ""
            )

    @api.depends("version_id", "environment")
    def _compute_display_name(self):
        labels = dict(ENVIRONMENTS)
        for deployment in self:
            deployment.display_name = self.env._(
                "%(version)s on %(environment)s",
                version=deployment.version_id.display_name,
                environment=labels.get(deployment.environment, ""),
            )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_undeploy(self):
        """Take deployments down (Approver): a pipeline run still open is
        cancelled, then they leave the router and their model servers stop
        after the requests in flight. What serves production is not
        undeployed: it is rolled back, replaced, or archived with its
        version."""
        self._check_can_undeploy()
        with errors.target_call(", ".join(self.target_id.mapped("name"))):
            deploy_service.undeploy(
                self, self.env._("undeployed by %s", self.env.user.name)
            )
        return True

    def action_rollback(self, reason=None):
        """Return production to the version that served before this one, in
        one action (Approver), and record why."""
        self.ensure_one()
        self._check_can_rollback(reason)
        with errors.target_call(self.target_id.name):
            return deploy_service.switch_back(self, reason)

    def action_canary_promote(self):
        """Give the canary all the traffic now (Approver)."""
        self._check_canary()
        for deployment in self:
            with errors.target_call(deployment.target_id.name):
                canary.promote(jobs.as_platform(deployment))
        return True

    def action_canary_abort(self, reason=None):
        """Roll the canary back now (Approver); the previous version takes
        all the traffic again."""
        self._check_canary()
        for deployment in self:
            with errors.target_call(deployment.target_id.name):
                canary.abort(
                    jobs.as_platform(deployment),
                    self.env._(
                        "aborted by %(user)s: %(reason)s",
                        user=self.env.user.name,
                        reason=reason or self.env._("no reason given"),
                    ),
                )
        return True

    def action_set_canary_share(self, percent):
        """Move a canary's share of the traffic now (Approver)."""
        self._check_canary()
        if (
            not isinstance(percent, int)
            or isinstance(percent, bool)
            or not (1 <= percent <= 99)
        ):
            raise InvalidInput(self.env._("canary_percent is an integer from 1 to 99."))
        for deployment in self:
            deploy_service.check_share(deployment.target_id, percent)
        for deployment in self:
            with errors.target_call(deployment.target_id.name):
                canary.set_share(jobs.as_platform(deployment), percent)
        return True

    def action_set_replicas(self, replicas):
        """Scale a deployment (Approver), up to what its target runs; a
        serving one is scaled on its target now (out of reach: a 503 that
        changes nothing)."""
        for deployment in self:
            deployment._lifecycle_check_actor(APPROVER, self.env._("Scale"))
            deploy_service.check_replicas(deployment.target_id, replicas)
        self.sudo().write({"replicas": replicas})
        for deployment in self:
            with errors.target_call(deployment.target_id.name):
                deploy_service.scale(jobs.as_platform(deployment))
        return True

    def action_view_metrics(self):
        """Its metrics as a graph (and pivot and list)."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_deployment_metric_action"
        )
        action["domain"] = [("deployment_id", "=", self.id)]
        action["context"] = {"graph_measure": "requests"}
        return action

    def _lifecycle_after_transition(self, transition):
        result = super()._lifecycle_after_transition(transition)
        # only a colour that could serve an arm leaves one: the pipeline's
        # own moves (requested, deploying...) look nothing up
        arms = experiments.ARM_STATES
        if transition.source in arms and transition.target not in arms:
            experiments.arm_left(self)
        return result

    @api.model
    def _cron_book_costs(self):
        """Cron: a job per deployment whose pods ran since its last booking."""
        return costs.schedule(self.env)

    def _book_cost(self, now):
        """Job (queue_job): book what its pods cost up to ``now``."""
        self.ensure_one()
        return costs.book(self, now)

    def action_view_drift(self):
        """Its drift reports, the latest first."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_drift_report_action"
        )
        action["domain"] = [("deployment_id", "=", self.id)]
        return action

    def _compute_drift(self):
        """Job: a drift report of its recent inputs."""
        self.ensure_one()
        return drift_reports.compute(self)

    def action_view_inference_log(self):
        """The calls its model servers logged."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_inference_batch_action"
        )
        action["domain"] = [("deployment_id", "=", self.id)]
        return action

    def action_reapply(self):
        """Apply again what Odoo wants of a colour that drifted or went
        missing on its target (Approver): what was edited by hand there is
        overwritten, what was deleted comes back."""
        self._check_can_reapply()
        for deployment in self:
            deploy_service.reapply(jobs.as_platform(deployment), self.env.user)
        return True

    def _check_can_reapply(self):
        for deployment in self:
            deployment._lifecycle_check_actor(APPROVER, self.env._("Re-apply"))
            if deployment.state not in serving.KEEP_RUNNING:
                raise TransitionNotAllowed(
                    self.env._(
                        "%(deployment)s is %(state)s: only a deployment that runs "
                        "is applied again.",
                        deployment=deployment.display_name,
                        state=deployment._lifecycle_state_label(deployment.state),
                    )
                )

    def _check_can_undeploy(self):
        self._check_can_transition("deleted")
        for deployment in self.filtered(lambda d: d.environment == "production"):
            if deployment.state == "rolling_out_canary":
                raise TransitionNotAllowed(
                    self.env._(
                        "%s is a canary rolling out: abort it (or promote it) instead.",
                        deployment.display_name,
                    )
                )
            if deployment.state == "active":
                raise TransitionNotAllowed(
                    self.env._(
                        "%s serves production: roll it back to the version "
                        "before, promote another version, or archive its version "
                        "to take production down for good.",
                        deployment.display_name,
                    )
                )

    def _check_canary(self):
        for deployment in self:
            if deployment.state != "rolling_out_canary":
                raise TransitionNotAllowed(
                    self.env._(
                        "%(name)s is %(state)s, not a canary rolling out.",
                        name=deployment.display_name,
                        state=deployment._lifecycle_state_label(deployment.state),
                    )
                )
            deployment._lifecycle_check_actor(APPROVER, self.env._("Canary"))

    def _canary_analyze(self, step):
        """Queued job: the gates of a canary's step (services.canary)."""
        self.ensure_one()
        return canary.analyze(jobs.as_platform(self), step)

    def _check_can_rollback(self, reason):
        if not (reason or "").strip():
            raise UserError(self.env._("Say why production is rolled back."))
        if self.environment != "production" or self.state != "active":
            raise TransitionNotAllowed(
                self.env._(
                    "Only the active production deployment rolls back; %(name)s is "
                    "%(state)s in %(environment)s.",
                    name=self.display_name,
                    state=self._lifecycle_state_label(self.state),
                    environment=self.environment,
                )
            )
        self._lifecycle_check_actor(APPROVER, self.env._("Roll back"))

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _event_values(self):
        return {
            "model_id": self.model_id.id,
            "version_id": self.version_id.id,
            "company_id": self.version_id.company_id.id,
            "data": {
                "model": self.model_id.name,
                "version": self.version_id.version,
                "environment": self.environment,
                "strategy": self.strategy,
                "traffic_percent": self.traffic_percent,
                "endpoint_url": self.endpoint_url or None,
                "message": self.message or None,
            },
        }

    @api.model
    def _cron_supervise(self):
        """Cron: keep the local runtime as the deployments say it should be."""
        return serving.supervise(self.env)

    @api.model
    def _cron_prune_registry_changes(self):
        """Cron: drop the endpoint registry's change rows every transaction
        already sees."""
        registry_changes.prune(self.env.cr)

    def _live_status(self):
        """What the target says of it now (serving deployments only)."""
        self.ensure_one()
        if self.state not in (
            "deploying",
            "active",
            "inactive_bluegreen",
            "rolling_out_canary",
        ):
            return None
        client = self.target_id.sudo()._get_client()
        try:
            status = client.verify(serving.plan(self))
        except TargetFailed as error:
            # a read never fails for a target out of reach: it says so
            return {"ready": None, "message": errors.describe(error)}
        return {"ready": status.ready, "message": status.message}

    @api.ondelete(at_uninstall=False)
    def _unlink_except_live(self):
        live = self.filtered(lambda d: d.state in LIVE_STATES)
        if live:
            raise UserError(
                self.env._(
                    "Undeploy %(deployments)s before deleting it.",
                    deployments=", ".join(live.mapped("display_name")),
                )
            )
