# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import os

from odoo import api, fields, models, tools
from odoo.exceptions import ValidationError

from ..adapters.targets import SERVABLE, TARGET_KINDS
from ..services import registry_changes


class MlopsDeploymentTarget(models.Model):
    """Where deployments run: the embedded ``local`` runtime (model servers
    on this machine behind an HAProxy router), created on install so that a
    fresh ``bin/serve`` deploys with nothing else configured. Other kinds
    (Kubernetes, GitOps) are adapters of the same interface
    (``adapters.targets.Target``), registered in ``TARGET_KINDS``."""

    _name = "mlops.deployment.target"
    _inherit = ["mlops.backend.mixin"]
    _description = "MLOps Deployment Target"
    _order = "is_default desc, name"

    _backend_secret_scope = "target"
    _backend_stamp = ("router_port", "public_url", "ci_provider_id")

    kind = fields.Selection(
        [("local", "Local Runtime"), ("external", "External Pipeline")],
        required=True,
        default="local",
        help="Local: model servers on this machine, run by Odoo's own pipeline. "
        "External: a CI provider's pipeline deploys and reports back.",
    )
    ci_provider_id = fields.Many2one(
        "mlops.ci.provider",
        string="CI Provider",
        ondelete="restrict",
        help="The pipeline that deploys to an external target.",
    )
    is_default = fields.Boolean(string="Default", help="Where deployments go.")
    router_port = fields.Integer(
        default=lambda self: int(tools.config.get("mlops_router_port") or 8090),
        help="Port of the router that serves the invoke URLs (the default comes "
        "from the server configuration's mlops_router_port).",
    )
    public_url = fields.Char(
        string="Public URL",
        help="Base of the invoke URLs as clients reach the router, e.g. "
        "https://models.example.com; empty: http://127.0.0.1:<router port>.",
    )

    def init(self):
        # the endpoint registry's change log (services.registry_changes)
        registry_changes.install(self.env.cr, self._table)

    @api.constrains("router_port")
    def _check_router_port(self):
        for target in self:
            if not 1024 <= target.router_port <= 65535:
                raise ValidationError(
                    self.env._("The router port is between 1024 and 65535.")
                )

    @api.constrains("kind", "ci_provider_id")
    def _check_ci_provider(self):
        for target in self:
            if target.kind == "external" and not target.ci_provider_id:
                raise ValidationError(
                    self.env._("An external target names the CI provider that runs it.")
                )
            if target.kind == "local" and target.ci_provider_id:
                raise ValidationError(
                    self.env._(
                        "The local runtime runs its own pipeline: it takes no CI "
                        "provider."
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

    def _pipeline_provider(self):
        """The pipeline run's ``provider``: ``internal`` or the CI's kind."""
        self.ensure_one()
        return self.ci_provider_id.kind or "internal"

    def _build_client(self):
        if self.kind == "external":
            return TARGET_KINDS[self.kind](public_url=self.public_url or None)
        return TARGET_KINDS[self.kind](
            self._root(),
            self.router_port,
            public_url=self.public_url or None,
            router_host=tools.config.get("mlops_router_host") or None,
        )

    def _servable_formats(self):
        self.ensure_one()
        return SERVABLE.get(self.kind, ())

    @api.model
    def _route_name(self, model, environment):
        """The model and environment's route: stable across versions."""
        return f"c{model.company_id.id}-{model.slug}-{environment}"
