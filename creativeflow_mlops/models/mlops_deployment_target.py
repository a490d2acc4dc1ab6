# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import hashlib
import json
import os
import secrets

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError, ValidationError

from ..adapters import costing
from ..adapters.targets import (
    OptionsInvalid,
    TargetContext,
    kind_selection,
    kinds,
    route_name,
)
from ..services import inference_log, monitoring, registry_changes


class MlopsDeploymentTarget(models.Model):
    """Where deployments run. A target is a record with a ``code`` and a
    ``kind``: each kind is one file of ``adapters/`` (``target_<kind>.py``,
    see ``adapters.targets``) declaring its options, what it can do and how
    its client is built, so that nothing here or in the services names a
    kind. The embedded ``local`` runtime (model servers on this machine
    behind an HAProxy router) is created on install: a fresh ``bin/serve``
    deploys with nothing else configured."""

    _name = "mlops.deployment.target"
    _inherit = ["mlops.backend.mixin"]
    _description = "MLOps Deployment Target"
    _order = "is_default desc, name"

    _backend_secret_scope = "target"
    _backend_stamp = ("options", "ci_provider_id")

    kind = fields.Selection(
        selection=lambda self: kind_selection(),
        required=True,
        default="local",
        help="What serves; each kind is an adapter (adapters/target_<kind>.py). "
        "Local: model servers on this machine, run by Odoo's own pipeline. "
        "External: a CI provider's pipeline deploys and reports back. "
        "Kubernetes: a cluster, through its API.",
    )
    options = fields.Json(
        string="Options (data)",
        help="The kind's settings, a JSON object (docs/reference/targets.md "
        "lists each kind's). Never secrets: those come from the environment "
        "or the server configuration.",
    )
    options_text = fields.Text(
        string="Options",
        compute="_compute_options_text",
        inverse="_inverse_options_text",
        help="The kind's settings as JSON (docs/reference/targets.md).",
    )
    ci_provider_id = fields.Many2one(
        "mlops.ci.provider",
        string="CI Provider",
        ondelete="restrict",
        help="The pipeline that deploys to an external target.",
    )
    is_default = fields.Boolean(string="Default", help="Where deployments go.")
    inference_log_key_hash = fields.Char(
        readonly=True, copy=False, groups="base.group_system"
    )
    has_inference_log_key = fields.Boolean(
        string="Inference Log Key",
        compute="_compute_has_inference_log_key",
        help="A payload logger (KServe's) may post this target's calls to "
        "POST /inference-log with the key.",
    )
    # what a pod costs per hour, in the company's currency (services/costs.py)
    cost_gpu_hour = fields.Float(
        string="GPU Hour", digits=(16, 4), help="The price of one GPU for an hour."
    )
    cost_cpu_hour = fields.Float(
        string="CPU Core Hour",
        digits=(16, 4),
        help="The price of one CPU core for an hour.",
    )
    cost_memory_gib_hour = fields.Float(
        string="Memory GiB Hour",
        digits=(16, 4),
        help="The price of one GiB of memory for an hour.",
    )
    capabilities_text = fields.Text(
        string="Capabilities",
        compute="_compute_capabilities_text",
        help="What the target can do, as its kind declares it: the checks "
        "at approval ask this, never the kind.",
    )

    _sql_constraints = [
        (
            "cost_prices_positive",
            "CHECK (cost_gpu_hour >= 0 AND cost_cpu_hour >= 0 "
            "AND cost_memory_gib_hour >= 0)",
            "A price is not negative.",
        ),
    ]

    def init(self):
        # the endpoint registry's change log (services.registry_changes)
        registry_changes.install(self.env.cr, self._table)

    @api.depends("options")
    def _compute_options_text(self):
        for target in self:
            target.options_text = json.dumps(
                target.options or {}, indent=2, sort_keys=True
            )

    def _inverse_options_text(self):
        for target in self:
            try:
                target.options = json.loads(target.options_text or "{}")
            except ValueError as error:
                raise ValidationError(
                    self.env._("The options are not JSON: %s", error)
                ) from None

    @api.depends("code", "kind", "options")
    def _compute_has_credentials(self):
        return super()._compute_has_credentials()

    @api.depends("kind", "options")
    def _compute_has_inference_log_key(self):
        for target in self:
            target.has_inference_log_key = bool(target.sudo().inference_log_key_hash)

    def _compute_capabilities_text(self):
        for target in self:
            try:
                caps = target._capabilities()
            except ValidationError:
                target.capabilities_text = False
                continue
            traffic = (
                self.env._("in steps of %s %%", caps.traffic_step)
                if caps.traffic_step
                else self.env._("all or nothing")
            )
            target.capabilities_text = "\n".join(
                [
                    self.env._("Formats: %s", ", ".join(caps.formats)),
                    self.env._("Traffic split: %s", traffic),
                    self.env._("Canary: %s", "yes" if caps.canary else "no"),
                    self.env._("Replicas: up to %s", caps.max_replicas),
                    self.env._(
                        "Resources: %s", ", ".join(sorted(caps.resources)) or "none"
                    ),
                    self.env._(
                        "Builds images: %s", "yes" if caps.builds_images else "no"
                    ),
                ]
            )

    @api.constrains("kind", "options")
    def _check_options(self):
        for target in self:
            target._options()

    @api.constrains("kind", "options", "ci_provider_id")
    def _check_ci_provider(self):
        for target in self:
            internal = target._capabilities().internal_pipeline
            if not internal and not target.ci_provider_id:
                raise ValidationError(
                    self.env._(
                        "The %s target is deployed by a pipeline: name its CI "
                        "provider.",
                        target.name,
                    )
                )
            if internal and target.ci_provider_id:
                raise ValidationError(
                    self.env._(
                        "The %s target runs Odoo's own pipeline: it takes no CI "
                        "provider.",
                        target.name,
                    )
                )

    @api.constrains("is_default")
    def _check_is_default(self):
        if len(self.search([("is_default", "=", True)])) > 1:
            raise ValidationError(self.env._("Only one target can be the default."))

    @api.model
    def _get_default(self):
        target = self.search([("is_default", "=", True)], limit=1)
        return target or self.search([], limit=1)

    def _root(self):
        return os.path.join(
            tools.config["data_dir"], "mlops_runtime", self.env.cr.dbname, self.code
        )

    def _kind_class(self):
        self.ensure_one()
        return kinds()[self.kind]

    def _kind_context(self):
        """What the kind is told of where it runs: a folder of its own, and
        the server configuration's defaults."""
        return TargetContext(
            root=self._root(),
            owner=hashlib.sha256(
                f"{self.env.cr.dbname}/{self.code}".encode()
            ).hexdigest()[:16],
            config={
                "router_port": tools.config.get("mlops_router_port"),
                "router_host": tools.config.get("mlops_router_host"),
            },
        )

    def _options(self):
        """The options as the kind's dataclass; ``ValidationError`` naming
        each option the kind refuses."""
        self.ensure_one()
        try:
            return self._kind_class().parse_options(self.options, self._kind_context())
        except OptionsInvalid as error:
            raise ValidationError(
                self.env._(
                    "The %(kind)s target's options are refused: %(problems)s",
                    kind=self.kind,
                    problems=error,
                )
            ) from None

    def _cost_prices(self):
        """Its hourly prices, for ``adapters.costing`` (none: free)."""
        if not self:
            return costing.Prices()
        self.ensure_one()
        return costing.Prices(
            gpu_hour=self.cost_gpu_hour,
            cpu_hour=self.cost_cpu_hour,
            memory_gib_hour=self.cost_memory_gib_hour,
        )

    def _capabilities(self):
        """What the target can do (``adapters.targets.Capabilities``)."""
        self.ensure_one()
        return self._kind_class().capabilities(self._options())

    def _pipeline_provider(self):
        """The pipeline run's ``provider``: ``internal`` or the CI's kind."""
        self.ensure_one()
        return self.ci_provider_id.kind or "internal"

    def _backend_secret_names(self):
        return self._kind_class().secrets

    def _backend_required_secrets(self):
        try:
            return self._kind_class().required_secrets(self._options())
        except ValidationError:
            return self._kind_class().secrets

    def _build_client(self):
        secrets = {
            name: self._backend_secret(name) for name in self._kind_class().secrets
        }
        return self._kind_class().build(self._kind_context(), self._options(), secrets)

    def _servable_formats(self):
        self.ensure_one()
        return self._capabilities().formats

    @api.model
    def _collect_metrics(self):
        """Job: its live deployments' metrics since their last reading."""
        self.ensure_one()
        return monitoring.collect(self)

    def action_new_inference_log_key(self):
        """A new key for the target's payload logger, shown once (Manager);
        the one before stops working."""
        self.ensure_one()
        if not self.env.user.has_group("creativeflow_mlops.group_mlops_manager"):
            raise AccessError(
                self.env._("Only MLOps managers make inference log keys.")
            )
        token = secrets.token_urlsafe(32)
        self.sudo().inference_log_key_hash = inference_log.key_digest(token)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Inference log key of %s (shown once)", self.name),
                "message": token,
                "type": "warning",
                "sticky": True,
            },
        }

    def _collect_inference_log(self):
        """Job: the inference log files its model servers wrote, stored."""
        self.ensure_one()
        return inference_log.collect(self)

    def _route_name(self, model, environment):
        """The model and environment's route: stable across versions."""
        return route_name(model.company_id.id, model.slug, environment)
