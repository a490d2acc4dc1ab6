# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..adapters.ci import CI_KINDS
from ..services import settings

CI_PROVIDER_KINDS = [
    ("gitlab", "GitLab CI (pipeline trigger)"),
    ("github", "GitHub Actions (workflow_dispatch)"),
    ("webhook", "Signed Webhook (Standard Webhooks)"),
]


class MlopsCiProvider(models.Model):
    """An external CI/CD system that runs the pipelines of an ``external``
    deployment target and reports their stages through ``POST
    /ci/callback``. Its token (GitLab's trigger token, a GitHub token with
    ``actions:write``, or the webhook's ``whsec_`` signing secret) comes
    from the environment or the server configuration, never the
    database."""

    _name = "mlops.ci.provider"
    _inherit = ["mlops.backend.mixin"]
    _description = "MLOps CI Provider"
    _order = "name"

    _backend_secret_scope = "ci"
    _backend_secrets = ("token",)
    _backend_stamp = ("url", "project", "ref", "workflow")

    kind = fields.Selection(CI_PROVIDER_KINDS, required=True, default="gitlab")
    url = fields.Char(
        string="URL",
        required=True,
        help="GitLab: the instance (https://gitlab.com); GitHub: the API "
        "(https://api.github.com); webhook: the URL that receives the request.",
    )
    project = fields.Char(
        help="GitLab: the project's id or path (group/project); GitHub: owner/repo."
    )
    workflow = fields.Char(
        help="GitHub: the workflow's file name (deploy.yml) or id.",
    )
    ref = fields.Char(default="main", help="The branch or tag the pipeline runs on.")
    target_ids = fields.One2many("mlops.deployment.target", "ci_provider_id")

    @api.constrains("kind", "url", "project", "workflow")
    def _check_settings(self):
        for provider in self:
            if not (provider.url or "").startswith(("http://", "https://")):
                raise ValidationError(self.env._("The URL starts with http(s)://."))
            if provider.kind in ("gitlab", "github") and not provider.project:
                raise ValidationError(
                    self.env._("A %s provider names its project.", provider.kind)
                )
            if provider.kind == "github" and not provider.workflow:
                raise ValidationError(
                    self.env._("A GitHub provider names the workflow to dispatch.")
                )

    def _build_client(self):
        return CI_KINDS[self.kind](
            self.url,
            token=self._require_secrets()["token"],
            project=self.project,
            ref=self.ref,
            workflow=self.workflow,
            allow_private=settings.get(self.env, "webhook_allow_private"),
        )
