# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.tools import SQL

from odoo.addons.queue_job.delay import chain

from ..adapters.targets import PAUSES, STAGES
from ..lifecycle import (
    PIPELINE_CREATE_STATES,
    PIPELINE_OPEN_STATES,
    PIPELINE_PROVIDERS,
    PIPELINE_STATES,
    PIPELINE_TRANSITIONS,
)
from ..services import deployment as service
from ..services import gitops, jobs, pipeline

MAX_TRIES = 5


class MlopsPipelineRun(models.Model):
    """The CI/CD run that brings a deployment up: its stages, each with its
    state and log; one run per model and environment at a time. The
    ``internal`` provider runs the stages its target's kind names as queued
    jobs on ``root.mlops.deploy``, one after the other (a chain; a run that
    waits for a review, ``waiting``, has the stages after the pull request
    queued once it is merged, ``services.gitops``); the others
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
    # gitops: the commit, and the pull or merge request under review
    change_commit = fields.Char(string="Commit", readonly=True, copy=False)
    change_branch = fields.Char(string="Branch", readonly=True, copy=False)
    change_number = fields.Integer(
        string="Pull Request", readonly=True, copy=False, index=True
    )
    change_url = fields.Char(string="Pull Request URL", readonly=True, copy=False)
    waiting_since = fields.Datetime(readonly=True, copy=False)
    callback_nonce = fields.Char(
        readonly=True,
        copy=False,
        default=lambda self: pipeline.new_nonce(),
        groups="base.group_system",
    )

    def init(self):
        # one run per model and environment at a time; made anew when the
        # open states it covers are not today's (they grew with waiting)
        cr = self.env.cr
        cr.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
            (service.ONE_OPEN_RUN,),
        )
        found = cr.fetchone()
        if found and all(f"'{state}'" in found[0] for state in PIPELINE_OPEN_STATES):
            return
        cr.execute(
            SQL(
                "DROP INDEX IF EXISTS %(index)s; "
                "CREATE UNIQUE INDEX %(index)s "
                "ON mlops_pipeline_run (model_id, environment) "
                "WHERE state IN %(states)s",
                index=SQL.identifier(service.ONE_OPEN_RUN),
                states=tuple(PIPELINE_OPEN_STATES),
            )
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
                for number, name in enumerate(run._stage_names())
            ]
        return runs

    def _stage_names(self):
        """The stages of its runs: its target kind's (an external
        pipeline's are the internal ones)."""
        if self.provider != "internal":
            return STAGES
        return self.deployment_id.target_id._kind_class().stages

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
        """Queue the pending stages, each after the one before, up to a
        stage after which the run may wait for a review (``PAUSES``: the
        rest is queued when that stage ends and the run does not wait); an
        external run's one job triggers its pipeline."""
        for run in jobs.as_platform(self):
            if run.provider != "internal":
                run.with_delay(
                    channel="root.mlops.deploy",
                    identity_key=f"mlops-run-{run.id}-trigger",
                    max_retries=MAX_TRIES,
                    description=self.env._("Trigger %s", run.display_name),
                )._trigger()
                continue
            pending = run.stage_ids.sorted("sequence").filtered(
                lambda s: s.state == "pending"
            )
            upto = pending.filtered(lambda s: s.name in PAUSES)[:1]
            if upto:
                pending = pending.filtered(lambda s, u=upto: s.sequence <= u.sequence)
            if not pending:
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
                    for stage in pending
                )
            ).delay()

    def _trigger(self):
        """Queued job: start the external pipeline (services.pipeline)."""
        self.ensure_one()
        return pipeline.trigger(jobs.as_platform(self))

    @api.model
    def _cron_expire(self):
        pipeline.expire(self.env)
        gitops.expire_reviews(self.env)

    def _run_stage(self, stage_name):
        """Queued job: one stage (services.deployment.run_stage)."""
        self.ensure_one()
        return service.run_stage(jobs.as_platform(self), stage_name)
