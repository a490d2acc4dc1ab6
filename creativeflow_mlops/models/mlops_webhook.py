# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import hashlib
import hmac

from odoo import api, fields, models
from odoo.exceptions import AccessError, ValidationError

from ..adapters.webhooks import UnsafeUrl, check_url
from ..services import settings, webhooks


class MlopsWebhook(models.Model):
    """An outbound webhook: the events of its types, POSTed to its URL as
    they happen, signed per Standard Webhooks with its own secret; every
    attempt kept. The secret is derived from the database's secret and a
    nonce, so it is stored nowhere: the Manager sees it once (*Show
    Secret*), and *Rotate Secret* makes a new one."""

    _name = "mlops.webhook"
    _inherit = ["mail.thread", "mail.activity.mixin", "mlops.guarded.mixin"]
    # its secret and its failure count are the platform's
    _guarded_user_fields = frozenset(
        {"name", "url", "event_types", "active", "company_id"}
    )
    _description = "MLOps Webhook"
    _order = "name"

    name = fields.Char(required=True)
    url = fields.Char(string="URL", required=True, tracking=True)
    event_types = fields.Char(
        default="*",
        required=True,
        tracking=True,
        help="Comma-separated event types, with * as a wildcard: "
        "version.validated, deployment.*, or * for all.",
    )
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    failure_count = fields.Integer(
        default=0, readonly=True, help="Failed attempts in a row; a success resets it."
    )
    attempt_ids = fields.One2many("mlops.webhook.attempt", "webhook_id", readonly=True)
    secret_nonce = fields.Char(
        readonly=True,
        copy=False,
        groups="base.group_system",
        default=lambda self: webhooks.new_nonce(),
    )
    secret_shown = fields.Boolean(readonly=True, copy=False)

    @api.constrains("url")
    def _check_url(self):
        allow = settings.get(self.env, "webhook_allow_private")
        for hook in self:
            try:
                check_url(hook.url, allow_private=allow, resolve=False)
            except UnsafeUrl as error:
                raise ValidationError(str(error)) from None

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def _check_manager(self):
        if not self.env.user.has_group("creativeflow_mlops.group_mlops_manager"):
            raise AccessError(self.env._("Only MLOps managers manage webhooks."))

    def action_show_secret(self):
        """The secret, once (until it is rotated)."""
        self.ensure_one()
        self._check_manager()
        if self.secret_shown:
            raise AccessError(
                self.env._("The secret was shown already: rotate it for a new one.")
            )
        self.sudo().secret_shown = True
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Signing secret of %s", self.name),
                "message": self._secret(),
                "type": "warning",
                "sticky": True,
            },
        }

    def action_rotate_secret(self):
        self._check_manager()
        for hook in self.sudo():
            hook.write({"secret_nonce": webhooks.new_nonce(), "secret_shown": False})
        self.message_post(body=self.env._("The signing secret was rotated."))

    def action_send_test_event(self):
        self.ensure_one()
        self._check_manager()
        attempt = webhooks.send_test(self)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Test event to %s", self.name),
                "message": webhooks.describe(attempt),
                "type": "success" if attempt.ok else "danger",
                "sticky": not attempt.ok,
            },
        }

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _secret(self):
        """``whsec_<base64>``: an HMAC of this hook's id and nonce with the
        database's secret."""
        import base64  # noqa: PLC0415

        key = self.env["ir.config_parameter"].sudo().get_param("database.secret")
        message = f"mlops.webhook:{self.id}:{self.sudo().secret_nonce}"
        digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
        return "whsec_" + base64.b64encode(digest[:24]).decode()

    def _deliver(self, event_id):
        """Queued job: one event to this hook (services.webhooks)."""
        self.ensure_one()
        return webhooks.deliver(self, event_id)


class MlopsWebhookAttempt(models.Model):
    _name = "mlops.webhook.attempt"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Webhook Attempt"
    _order = "id desc"

    webhook_id = fields.Many2one(
        "mlops.webhook", required=True, ondelete="cascade", index=True
    )
    company_id = fields.Many2one(related="webhook_id.company_id", store=True)
    event_id = fields.Many2one("mlops.event", ondelete="set null", index=True)
    event_type = fields.Char(required=True)
    message_id = fields.Char(required=True, index=True)
    attempt = fields.Integer(required=True, default=1)
    status_code = fields.Integer(string="Status")
    ok = fields.Boolean(string="Delivered")
    duration_ms = fields.Integer(string="Duration (ms)")
    excerpt = fields.Text(string="Answer")
    error = fields.Char()
    at = fields.Datetime(default=fields.Datetime.now, required=True)
