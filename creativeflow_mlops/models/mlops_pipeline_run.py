# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models

from odoo.addons.queue_job.delay import chain

from ..lifecycle import (
    PIPELINE_CREATE_STATES,
    PIPELINE_PROVIDERS,
    PIPELINE_STAGES,
    PIPELINE_STATES,
    PIPELINE_TRANSITIONS,
)
from ..services import deployment as service
from ..services import jobs, pipeline

MAX_TRIES = 5


class MlopsPipelineRun(models.Model):
    """The CI/CD run that brings a deployment up: its stages, each with its
    state and log; one run per model and environment at a time. The
    ``internal`` provider runs the stages as queued jobs on
    ``root.mlops.deploy``, one after the other (a chain); the others
    (``gitlab``, ``github``, ``webhook``: the target's CI provider) are
    triggered by one job and report their stages through ``POST
    /ci/callback``, signed with the run's own secret
    (``services.pipeline``)."""

    _name = "mlops.pipeline.run"
    _description = "MLOps Pipeline Run"
    _inherit = ["mail.thread", "mlops.lifecycle.mixin"]
    _order = "id desc"

    _lifecycle_transitions = PIPELINE_TRANSITIONS
    _lifecycle_create_states = PIPELINE_CREATE_STATES
    _event_resource = "pipeline_run"

    deployment_id = fields.Many2one(
        "mlops.deployment", required=True, ondelete="cascade", index=True
    )
    version_id = fields.Many2one(related="deployment_id.version_id", store=True)
    model_id = fields.Many2one(related="deployment_id.model_id", store=True)
    company_id = fields.Many2one(related="deployment_id.company_id", store=True)
    environment = fields.Selection(related="deployment_id.environment", store=True)
    provider = fields.Selection(PIPELINE_PROVIDERS, required=True, default="internal")
    state = fields.Selection(
        PIPELINE_STATES,
        default="queued",
        required=True,
        readonly=True,
        index=True,
        tracking=True,
    )
    ci_provider_id = fields.Many2one(
        "mlops.ci.provider", string="CI Provider", readonly=True, ondelete="restrict"
    )
    stage_ids = fields.One2many("mlops.pipeline.stage", "run_id", string="Stages")
    delivery_ids = fields.One2many(
        "mlops.pipeline.delivery", "run_id", string="Reports", readonly=True
    )
    started_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    last_heard_at = fields.Datetime(
        readonly=True,
        default=fields.Datetime.now,
        help="The last word from its pipeline: the trigger, or a signed report.",
    )
    message = fields.Text(readonly=True)
    external_id = fields.Char(string="Pipeline ID", readonly=True, copy=False)
    external_url = fields.Char(string="Pipeline URL", readonly=True, copy=False)
    image = fields.Char(readonly=True, copy=False, help="As the pipeline built it.")
    # with the database secret, derives the secret the pipeline signs with
    callback_nonce = fields.Char(
        readonly=True,
        copy=False,
        default=lambda self: pipeline.new_nonce(),
        groups="base.group_system",
    )

    def init(self):
        # one run per model and environment at a time
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS mlops_pipeline_run_one_open "
            "ON mlops_pipeline_run (model_id, environment) "
            "WHERE state IN ('queued', 'running')"
        )

    @api.depends("deployment_id")
    def _compute_display_name(self):
        for run in self:
            run.display_name = self.env._(
                "Run %(id)s: %(deployment)s",
                id=run.id,
                deployment=run.deployment_id.display_name,
            )

    @api.model_create_multi
    def create(self, vals_list):
        runs = super().create(vals_list)
        for run in runs:
            run.stage_ids = [
                fields.Command.create({"name": name, "sequence": number})
                for number, (name, _label) in enumerate(PIPELINE_STAGES)
            ]
        return runs

    # ------------------------------------------------------------------
    # Jobs
    # ------------------------------------------------------------------

    def _event_values(self):
        deployment = self.deployment_id
        return {
            "model_id": deployment.model_id.id,
            "version_id": deployment.version_id.id,
            "company_id": deployment.version_id.company_id.id,
            "data": {
                "deployment_id": deployment.id,
                "environment": deployment.environment,
                "provider": self.provider,
                "message": self.message or None,
            },
        }

    def _enqueue(self):
        """Queue the stages, each after the one before; an external run's
        one job triggers its pipeline."""
        for run in jobs.as_platform(self):
            if run.provider != "internal":
                run.with_delay(
                    channel="root.mlops.deploy",
                    identity_key=f"mlops-run-{run.id}-trigger",
                    max_retries=MAX_TRIES,
                    description=self.env._("Trigger %s", run.display_name),
                )._trigger()
                continue
            chain(
                *(
                    run.delayable(
                        channel="root.mlops.deploy",
                        identity_key=f"mlops-run-{run.id}-{stage.name}",
                        max_retries=MAX_TRIES,
                        description=self.env._(
                            "%(stage)s of %(run)s",
                            stage=stage.name,
                            run=run.display_name,
                        ),
                    )._run_stage(stage.name)
                    for stage in run.stage_ids.sorted("sequence")
                )
            ).delay()

    def _trigger(self):
        """Queued job: start the external pipeline (services.pipeline)."""
        self.ensure_one()
        return pipeline.trigger(jobs.as_platform(self))

    @api.model
    def _cron_expire(self):
        pipeline.expire(self.env)

    def _run_stage(self, stage_name):
        """Queued job: one stage (services.deployment.run_stage)."""
        self.ensure_one()
        return service.run_stage(jobs.as_platform(self), stage_name)
