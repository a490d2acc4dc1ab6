# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import base64
import io
import json
import re
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..exceptions import (
    InvalidInput,
    TransitionNotAllowed,
)
from ..lifecycle import (
    INTERFACE_TYPES,
    MODEL_FORMATS,
    VERSION_CREATE_STATES,
    VERSION_STATES,
    VERSION_TRANSITIONS,
)
from ..scanners import catalog
from ..services import artifacts, errors, registry_changes, serving, validation
from ..services import deployment as deploy_service
from ..services import resources as resource_service
from ..services.metadata import PERSONAL_SPACES

FORM_UPLOAD_LIMIT = 64 * 1024**2
# tries of the settle job, paced by its job function's retry pattern (XML)
MAX_TRIES = 8
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

# What a version is made of: once it left draft, only the platform changes it,
# so the artifact that was validated is the one that gets approved and served.
IMMUTABLE_FIELDS = frozenset(
    {
        "model_id",
        "version",
        "model_format",
        "storage_backend_id",
        "artifact_uri",
        "artifact_object_key",
        "artifact_size",
        "artifact_sha256",
        "artifact_filename",
        "artifact_content_type",
        "personal_fields",
    }
)

# What a user may write: what the version is and describes. The state, the
# artifact, who uploaded it and its validation rounds are the platform's
# (mlops.guarded.mixin); the frozen ones above only while in draft.
USER_FIELDS = frozenset(
    {
        "model_id",
        "version",
        "description",
        "model_format",
        "interface_type",
        "parameters",
        "metrics",
        "input_schema",
        "output_schema",
        "parameters_text",
        "metrics_text",
        "input_schema_text",
        "output_schema_text",
        "source_run",
        "dataset",
        "git_commit",
        "parent_version_id",
        "feedback_export_id",
        "artifact_upload",
        "artifact_filename",
        "personal_fields",
    }
)

# Json field -> the editable text shown in the form
JSON_TEXT_FIELDS = {
    "parameters_text": "parameters",
    "metrics_text": "metrics",
    "input_schema_text": "input_schema",
    "output_schema_text": "output_schema",
}

# what an approval wizard does, by the state it starts from
PENDING_APPROVAL_STATES = {"validated": "staging", "staging": "production"}


class BigInteger(fields.Integer):
    """An Integer stored as ``int8``: artifact sizes pass 2 GiB."""

    _column_type = ("int8", "int8")


class MlopsModelVersion(models.Model):
    _name = "mlops.model.version"
    _description = "AI Model Version"
    _inherit = ["mail.thread", "mail.activity.mixin", "mlops.approval.mixin"]
    _order = "model_id, id desc"
    _rec_names_search = ["version", "model_id.name"]

    _lifecycle_transitions = VERSION_TRANSITIONS
    _lifecycle_create_states = VERSION_CREATE_STATES
    _event_resource = "version"
    _approval_pending_states = PENDING_APPROVAL_STATES
    _guarded_user_fields = USER_FIELDS

    model_id = fields.Many2one(
        "mlops.model",
        required=True,
        ondelete="cascade",
        index=True,
        tracking=True,
    )
    version = fields.Char(required=True, tracking=True)
    description = fields.Text()
    state = fields.Selection(
        VERSION_STATES,
        default="draft",
        required=True,
        readonly=True,
        copy=False,
        index=True,
        tracking=True,
    )
    model_format = fields.Selection(MODEL_FORMATS, required=True, default="onnx")
    interface_type = fields.Selection(
        INTERFACE_TYPES, required=True, default="kserve_v2"
    )
    task_type = fields.Selection(related="model_id.task_type")
    company_id = fields.Many2one(
        related="model_id.company_id", store=True, index=True, precompute=True
    )
    uploaded_by_id = fields.Many2one(
        "res.users",
        default=lambda self: self.env.user,
        readonly=True,
        copy=False,
        help="Separation of duties: this user cannot approve the version.",
    )
    # artifact
    storage_backend_id = fields.Many2one(
        "mlops.storage.backend",
        default=lambda self: self.env["mlops.storage.backend"].sudo()._get_default(),
        ondelete="restrict",
    )
    artifact_uri = fields.Char(string="Artifact URI", copy=False)
    artifact_object_key = fields.Char(copy=False)
    artifact_size = BigInteger(string="Size (bytes)", copy=False)
    artifact_sha256 = fields.Char(string="SHA-256", size=64, copy=False)
    artifact_verified_at = fields.Datetime(
        string="Verified On",
        copy=False,
        readonly=True,
        help="When the integrity check last read the stored object back and found "
        "the registered size and SHA-256.",
    )
    artifact_filename = fields.Char(string="Filename", copy=False)
    artifact_content_type = fields.Char(string="Content Type")
    # description of the model
    parameters = fields.Json(string="Parameters (data)")
    metrics = fields.Json(string="Metrics (data)")
    input_schema = fields.Json(string="Input Schema (data)")
    output_schema = fields.Json(string="Output Schema (data)")
    parameters_text = fields.Text(
        string="Parameters", compute="_compute_json_text", inverse="_inverse_json_text"
    )
    metrics_text = fields.Text(
        string="Metrics", compute="_compute_json_text", inverse="_inverse_json_text"
    )
    input_schema_text = fields.Text(
        string="Input Schema",
        compute="_compute_json_text",
        inverse="_inverse_json_text",
    )
    output_schema_text = fields.Text(
        string="Output Schema",
        compute="_compute_json_text",
        inverse="_inverse_json_text",
    )
    personal_fields = fields.Char(
        help="Inputs, outputs and request parameters that hold personal data, "
        "comma-separated: the inference log never keeps them (the model "
        "server drops them before writing anything). Fixed once the version "
        "leaves draft.",
    )
    # lineage
    source_run = fields.Char(help="Training run that produced the artifact.")
    dataset = fields.Char(help="Dataset name and version used for training.")
    git_commit = fields.Char(help="Commit of the training code.")
    parent_version_id = fields.Many2one(
        "mlops.model.version",
        domain="[('model_id', '=', model_id), ('id', '!=', id)]",
        ondelete="set null",
    )
    feedback_export_id = fields.Many2one(
        "mlops.feedback.export",
        string="Trained on Feedback",
        domain="[('model_id', '=', model_id), ('state', '=', 'done')]",
        ondelete="restrict",
        index="btree_not_null",
        help="The feedback export (with its calls) this version was trained on.",
    )
    # related records
    approval_ids = fields.One2many(
        "mlops.version.approval", "version_id", string="Approvals", readonly=True
    )
    validation_result_ids = fields.One2many(
        "mlops.validation.result", "version_id", string="Validation Results"
    )
    deployment_ids = fields.One2many(
        "mlops.deployment", "version_id", string="Deployments"
    )
    feedback_ids = fields.One2many("mlops.feedback", "version_id")
    validation_round = fields.Integer(readonly=True, copy=False)
    artifact_upload = fields.Binary(
        string="Upload Artifact",
        compute="_compute_artifact_upload",
        inverse="_inverse_artifact_upload",
        help="Browser upload of a draft's artifact, up to 64 MiB; larger artifacts "
        "go through the REST upload or the direct upload to S3.",
    )
    validation_count = fields.Integer(compute="_compute_counts")
    deployment_count = fields.Integer(compute="_compute_counts")
    feedback_count = fields.Integer(compute="_compute_counts")
    cost_total = fields.Monetary(
        string="Cost",
        currency_field="cost_currency_id",
        compute="_compute_cost_total",
        help="What its deployments' pods cost, as booked.",
    )
    cost_currency_id = fields.Many2one(related="company_id.currency_id")
    rating_average = fields.Float(
        compute="_compute_counts",
        digits=(16, 2),
        help="The mean of the version's feedback ratings (those rated).",
    )
    approval_count = fields.Integer(compute="_compute_counts")
    is_production = fields.Boolean(compute="_compute_is_production")

    _sql_constraints = [
        (
            "model_version_uniq",
            "unique (model_id, version)",
            "This model already has a version with this name.",
        ),
        (
            "artifact_size_positive",
            "CHECK (artifact_size IS NULL OR artifact_size >= 0)",
            "An artifact size cannot be negative.",
        ),
    ]

    # ------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------

    @api.depends("model_id.name", "version")
    def _compute_display_name(self):
        for version in self:
            version.display_name = (
                f"{version.model_id.name or ''} {version.version or ''}".strip()
            )

    @api.depends(*JSON_TEXT_FIELDS.values())
    def _compute_json_text(self):
        for version in self:
            for text_field, json_field in JSON_TEXT_FIELDS.items():
                value = version[json_field]
                version[text_field] = (
                    json.dumps(value, indent=2, sort_keys=True) if value else False
                )

    def _inverse_json_text(self):
        for version in self:
            values = {}
            for text_field, json_field in JSON_TEXT_FIELDS.items():
                text = (version[text_field] or "").strip()
                try:
                    parsed = json.loads(text) if text else False
                except ValueError as error:
                    raise ValidationError(
                        self.env._(
                            "%(field)s is not valid JSON: %(error)s",
                            field=version._fields[text_field].string,
                            error=error,
                        )
                    ) from error
                if parsed != version[json_field]:
                    values[json_field] = parsed
            if values:
                version.write(values)

    def _compute_artifact_upload(self):
        self.artifact_upload = False

    def _inverse_artifact_upload(self):
        for version in self.filtered("artifact_upload"):
            if version.state != "draft":
                raise UserError(self.env._("Only a draft receives an artifact."))
            # the browser sends base64 inside a JSON-RPC request that Odoo
            # holds in memory several times over: keep it small here
            if len(version.artifact_upload) * 3 // 4 > FORM_UPLOAD_LIMIT:
                raise UserError(
                    self.env._(
                        "The form takes artifacts up to %s MiB; upload larger ones "
                        "with POST /mlops/api/v1/models/upload (streamed) or "
                        "POST /mlops/api/v1/uploads (straight to S3).",
                        FORM_UPLOAD_LIMIT // 1024**2,
                    )
                )
            artifacts.store_artifact(
                version,
                io.BytesIO(base64.b64decode(version.artifact_upload)),
                version.artifact_filename
                or f"{version.version}.{version.model_format}",
            )

    def _compute_counts(self):
        def count(model, domain_field="version_id"):
            return dict(
                self.env[model]._read_group(
                    [(domain_field, "in", self.ids)], [domain_field], ["__count"]
                )
            )

        validations = count("mlops.validation.result")
        deployments = count("mlops.deployment")
        feedback = count("mlops.feedback")
        ratings = dict(
            self.env["mlops.feedback"]._read_group(
                [("version_id", "in", self.ids), ("rating", ">", 0)],
                ["version_id"],
                ["rating:avg"],
            )
        )
        approvals = count("mlops.version.approval")
        for version in self:
            version.validation_count = validations.get(version, 0)
            version.deployment_count = deployments.get(version, 0)
            version.feedback_count = feedback.get(version, 0)
            version.rating_average = ratings.get(version, 0.0)
            version.approval_count = approvals.get(version, 0)

    def _compute_cost_total(self):
        totals = dict(
            self.env["account.analytic.line"]
            .sudo()
            ._read_group(
                [("mlops_version_id", "in", self.ids)],
                ["mlops_version_id"],
                ["amount:sum"],
            )
        )
        for version in self:
            # booked as negative amounts, as Odoo's analytic lines do
            version.cost_total = -totals.get(version, 0.0)

    @api.depends("state")
    def _compute_is_production(self):
        for version in self:
            version.is_production = version.state == "production"

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains("version")
    def _check_version(self):
        for version in self:
            if not VERSION_PATTERN.match(version.version or ""):
                raise ValidationError(
                    self.env._(
                        "Version “%(version)s” is not valid: use up to 64 letters, "
                        "digits, dots, dashes, underscores or plus signs, starting "
                        "with a letter or digit (for example 1.4.0).",
                        version=version.version,
                    )
                )

    @api.constrains("artifact_sha256")
    def _check_artifact_sha256(self):
        for version in self:
            sha = version.artifact_sha256
            if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise ValidationError(
                    self.env._("The SHA-256 must be 64 lowercase hexadecimal digits.")
                )

    @api.constrains("parent_version_id", "model_id")
    def _check_parent_version_id(self):
        for version in self:
            parent = version.parent_version_id
            if parent and (parent == version or parent.model_id != version.model_id):
                raise ValidationError(
                    self.env._(
                        "The parent version must be another version of the same model."
                    )
                )

    @api.constrains("feedback_export_id", "model_id")
    def _check_feedback_export_id(self):
        for version in self:
            export = version.feedback_export_id
            if export and (
                export.model_id != version.model_id or export.state != "done"
            ):
                raise ValidationError(
                    self.env._(
                        "A version is trained on a finished feedback export of "
                        "its own model."
                    )
                )

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------

    def init(self):
        # the endpoint registry's change log (services.registry_changes)
        registry_changes.install(self.env.cr, self._table)

    def write(self, vals):
        if self.env.su:
            return super().write(vals)
        # what the platform owns first (mlops.guarded.mixin), then what a
        # user wrote in draft and may no longer change
        self._guard_check(vals)
        frozen = IMMUTABLE_FIELDS.intersection(vals)
        if frozen:
            sealed = self.filtered(lambda v: v.state != "draft")
            if sealed:
                raise UserError(
                    self.env._(
                        "%(versions)s left draft: %(fields)s can no longer change. "
                        "Register a new version instead.",
                        versions=", ".join(sealed.mapped("display_name")),
                        fields=", ".join(
                            sorted(self._fields[name].string for name in frozen)
                        ),
                    )
                )
        return super().write(vals)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_in_use(self):
        in_use = self.filtered(
            lambda v: v.state not in ("draft", "validation_failed", "archived")
        )
        if in_use:
            raise UserError(
                self.env._(
                    "Only draft, failed or archived versions can be deleted; archive "
                    "%(versions)s first.",
                    versions=", ".join(in_use.mapped("display_name")),
                )
            )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_validate(self, scan_types=None):
        """Re-validate: back to ``validating`` (Manager), all the scans of
        the format's policy or only ``scan_types``."""
        self._check_can_validate(scan_types)
        self._do_validate(scan_types)
        return True

    def action_approve_staging(
        self,
        reason=None,
        strategy="rolling",
        target=None,
        replicas=1,
        resources=None,
        override_freeze=None,
    ):
        """Approve the deployment of validated versions to staging: each
        gets its staging deployment and pipeline run. ``target`` is a
        deployment target's code (the default target when empty);
        ``resources`` what each model server asks for (GPUs, CPU, memory:
        ``services.resources``); ``override_freeze``: a Manager's reason to
        go past a deploy freeze (``mlops.deploy.freeze``)."""
        versions = self.with_context(
            mlops_reason=reason, mlops_freeze_override=override_freeze
        )
        target = deploy_service.resolve_target(self.env, target)
        resources = resource_service.parse(resources)
        versions._check_can_approve_staging()
        versions._check_can_deploy("staging", strategy, target, resources, replicas)
        versions._do_transition("staging_pending")
        versions._do_deploy("staging", strategy, target, replicas, resources=resources)
        return True

    def action_promote(
        self,
        reason=None,
        strategy="blue_green",
        canary_percent=None,
        target=None,
        override_freeze=None,
    ):
        """Approve the promotion of staging versions to production: the
        production deployment comes up beside the current one and takes the
        traffic, on the target named (a code), else where staging ran;
        ``override_freeze`` as for staging."""
        versions = self.with_context(
            mlops_reason=reason, mlops_freeze_override=override_freeze
        )
        target = target and deploy_service.resolve_target(self.env, target)
        if canary_percent is not None and (
            strategy != "canary"
            or not isinstance(canary_percent, int)
            or isinstance(canary_percent, bool)
            or not 1 <= canary_percent <= 99
        ):
            raise InvalidInput(
                self.env._(
                    "canary_percent, the canary's first share, is an integer from 1 "
                    "to 99, with the canary strategy."
                )
            )
        versions._check_can_promote()
        versions._check_can_deploy(
            "production", strategy, target, canary_percent=canary_percent
        )
        versions._do_transition("production_pending")
        versions._do_deploy(
            "production", strategy, target, canary_percent=canary_percent
        )
        return True

    def action_rollback(self, reason=None, target=None):
        """Roll production back to these deprecated versions, on the target
        named (a code), else where each served."""
        versions = self.with_context(mlops_reason=reason)
        target = target and deploy_service.resolve_target(self.env, target)
        versions._check_can_rollback()
        versions._check_can_deploy("production", "blue_green", target)
        versions._do_transition("production_pending")
        versions._do_deploy("production", "blue_green", target)
        return True

    def action_archive_version(self):
        """Retire versions: undeploy them, keep the artifact (Manager)."""
        self._check_can_archive()
        self._do_archive()
        return True

    def action_open_approval_wizard(self):
        wizard_action = self.env.context.get("mlops_approval_action")
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Approval"),
            "res_model": "mlops.version.approval.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {
                "default_version_ids": self.ids,
                "default_action": wizard_action or "approve_staging",
            },
        }

    def action_mass_validate(self):
        done, refused = self._lifecycle_apply_each("action_validate")
        return self._lifecycle_report_action(self.env._("Re-validate"), done, refused)

    def action_mass_archive(self):
        done, refused = self._lifecycle_apply_each("action_archive_version")
        return self._lifecycle_report_action(self.env._("Archive"), done, refused)

    def _action_open_related(self, res_model, title):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": title,
            "res_model": res_model,
            "view_mode": "list,form",
            "domain": [("version_id", "=", self.id)],
            "context": {"default_version_id": self.id},
        }

    def action_download_artifact(self):
        """A short-lived download link: presigned for S3, through Odoo for a
        local store."""
        self.ensure_one()
        if not self.artifact_object_key:
            raise UserError(self.env._("%s has no artifact yet.", self.display_name))
        store = self.storage_backend_id._get_store()
        with errors.backend_call():
            url = store.presigned_get(
                self.artifact_object_key,
                expires=timedelta(minutes=10),
                filename=self.artifact_filename,
            )
        return {
            "type": "ir.actions.act_url",
            "url": url or f"/mlops/artifacts/{self.id}/download",
            "target": "self",
        }

    def action_view_validations(self):
        return self._action_open_related(
            "mlops.validation.result", self.env._("Validation Results")
        )

    def action_view_deployments(self):
        return self._action_open_related("mlops.deployment", self.env._("Deployments"))

    def action_view_metrics(self):
        """How its deployments served, as a graph (and pivot and list)."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_deployment_metric_action"
        )
        action["domain"] = [("version_id", "=", self.id)]
        return action

    def action_view_costs(self):
        """Its deployments' analytic lines."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_cost_line_action"
        )
        action["domain"] = [("mlops_version_id", "=", self.id)]
        return action

    def action_view_feedback(self):
        return self._action_open_related("mlops.feedback", self.env._("Feedback"))

    def action_view_approvals(self):
        return self._action_open_related(
            "mlops.version.approval", self.env._("Approvals")
        )

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _personal_field_names(self):
        """The names the inference log never keeps."""
        self.ensure_one()
        names = (
            n.strip(PERSONAL_SPACES) for n in (self.personal_fields or "").split(",")
        )
        return frozenset(name for name in names if name)

    def _check_can_validate(self, scan_types=None):
        self._check_can_transition("validating")
        if scan_types is None:
            return
        known = set(catalog.SPECS)
        if (
            not isinstance(scan_types, list | tuple)
            or not scan_types
            or not all(isinstance(name, str) and name in known for name in scan_types)
        ):
            error = InvalidInput(
                self.env._(
                    "scan_types must be a non-empty list of: %s",
                    ", ".join(sorted(known)),
                )
            )
            error.details = {"scan_types": sorted(known)}
            raise error

    def _check_can_approve_staging(self):
        self._check_can_transition("staging_pending")

    def _check_can_deploy(
        self,
        environment,
        strategy,
        target=None,
        resources=None,
        replicas=1,
        canary_percent=None,
    ):
        for version in self:
            deploy_service.check_request(
                version,
                environment,
                strategy,
                target or deploy_service.target_for(version),
                resources
                if resources is not None
                else deploy_service.staged_resources(version, environment),
                replicas,
                canary_percent,
            )

    def _do_deploy(
        self,
        environment,
        strategy,
        target=None,
        replicas=1,
        canary_percent=None,
        resources=None,
    ):
        """The deployments of the approved versions (one each), on
        ``target``, else where each deployed before (``target_for``)."""
        deployments = self.env["mlops.deployment"]
        for version in self:
            deployments |= deploy_service.request(
                version,
                environment,
                strategy,
                target or deploy_service.target_for(version),
                replicas,
                canary_percent,
                resources,
            )
            version.approval_ids.sorted("id")[-1:].sudo().deployment_id = deployments[
                -1
            ]
        return deployments

    def _check_can_promote(self):
        self._check_state_in(("staging",), self.env._("Promote"))
        self._check_can_transition("production_pending")

    def _check_can_rollback(self):
        self._check_state_in(("deprecated",), self.env._("Roll back"))
        self._check_can_transition("production_pending")

    def _check_state_in(self, states, label):
        """Refuse ``label`` for the versions whose state is not in ``states``;
        for when one target state is reached by several actions."""
        for version in self.filtered(lambda v: v.state not in states):
            raise TransitionNotAllowed(
                self.env._(
                    "%(label)s is not possible for %(version)s: it is %(state)s, "
                    "and only versions in %(states)s can.",
                    label=label,
                    version=version.display_name,
                    state=version._lifecycle_state_label(version.state),
                    states=", ".join(version._lifecycle_state_label(s) for s in states),
                )
            )

    def _check_can_archive(self):
        self._check_can_transition("archived")
        for version in self:
            for deployment in version.sudo().deployment_ids.filtered(
                lambda d: d.state in serving.SERVING
            ):
                # a canary's pair shares a route: neither half goes alone
                deploy_service.check_no_canary(
                    deployment.model_id, deployment.environment
                )

    def _do_validate(self, scan_types=None):
        self._lifecycle_move("validating")
        self._enqueue_validation(scan_types)

    def _do_transition(self, target):
        self._lifecycle_move(target)

    def _do_archive(self):
        self._undeploy()
        self._lifecycle_move("archived")

    def _undeploy(self):
        """Take down every deployment of the versions that is not already
        finished with (their open runs cancelled)."""
        live = self.sudo().deployment_ids.filtered(lambda d: d.state != "deleted")
        with errors.target_call(", ".join(live.target_id.mapped("name"))):
            deploy_service.undeploy(
                live, self.env._("archived by %s", self.env.user.name)
            )

    def _enqueue_validation(self, scan_types=None, integrity_report=None):
        """Start a validation round on each version (services.validation)."""
        for version in self.sudo():
            validation.start_round(version, scan_types, integrity_report)

    def _settle_job(self, round_):
        """The delayable that settles ``round_`` once its scans are done."""
        self.ensure_one()
        return self.delayable(
            identity_key=validation.settle_identity(self, round_),
            max_retries=MAX_TRIES,
            description=self.env._(
                "Settle validation round %(round)s of %(version)s",
                round=round_,
                version=self.display_name,
            ),
        )._validation_settle(round_)

    def _validation_settle(self, round_):
        """Queued job: decide the verdict of ``round_`` (see
        services.validation.settle)."""
        self.ensure_one()
        return validation.settle(self.sudo(), round_)

    @api.model
    def _cron_validation_watchdog(self):
        """Cron: settle the rounds whose jobs ended without settling them."""
        return validation.watchdog(self.env)

    def _event_values(self):
        return {
            "model_id": self.model_id.id,
            "version_id": self.id,
            "company_id": self.company_id.id,
            "data": {"model": self.model_id.name, "version": self.version},
        }

    def _lifecycle_check_transition(self, target):
        transition = super()._lifecycle_check_transition(target)
        # a deploy freeze holds approvals back, on every path
        self.env["mlops.deploy.freeze"]._check_move(self, transition)
        return transition

    def _lifecycle_after_transition(self, transition):
        result = super()._lifecycle_after_transition(transition)
        if transition.target == "production":
            self._deprecate_previous_production()
        return result

    def _approval_values(self, stage):
        return {
            **super()._approval_values(stage),
            **self.env["mlops.deploy.freeze"]._override_values(self, stage),
        }

    def _approval_preferred_approver(self):
        return self.model_id.owner_id

    def _approval_activity_summary(self, stage):
        if stage == "staging":
            return self.env._("Approve %s for staging", self.display_name)
        return self.env._("Promote %s to production", self.display_name)

    def _deprecate_previous_production(self):
        previous = self.sudo().search(
            [
                ("model_id", "=", self.model_id.id),
                ("state", "=", "production"),
                ("id", "!=", self.id),
            ]
        )
        previous.write({"state": "deprecated"})
        for version in previous:
            version.message_post(
                body=self.env._("Replaced in production by %s.", self.display_name),
                subtype_xmlid="mail.mt_note",
            )
