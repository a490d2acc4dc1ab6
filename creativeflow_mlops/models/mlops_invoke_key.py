# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import hashlib
import secrets

from odoo import api, fields, models
from odoo.exceptions import AccessError

from ..lifecycle import ENVIRONMENTS, MANAGER
from ..services import serving

PREFIX = "mik_"


class MlopsInvokeKey(models.Model):
    """A key to call the invoke URLs, made by a Manager for some models (all
    of the company's when none is chosen) and environments, shown once and
    kept as its SHA-256 (the key is 256 random bits, which a fast hash keeps
    safe), with an expiry; revoked by archiving or deleting it. Every change
    is published to the runtime, which refuses a revoked key within
    seconds."""

    _name = "mlops.invoke.key"
    _description = "MLOps Invoke Key"
    _inherit = ["mlops.guarded.mixin"]
    _order = "create_date desc, id desc"
    # the key's hash and prefix are made once, by _generate
    _guarded_user_fields = frozenset(
        {"name", "model_ids", "environment", "expires_at", "active", "company_id"}
    )

    name = fields.Char(required=True, help="Who or what uses it, e.g. n8n.")
    key_prefix = fields.Char(readonly=True, help="The key's first characters.")
    key_hash = fields.Char(readonly=True, copy=False, groups="base.group_system")
    model_ids = fields.Many2many(
        "mlops.model", string="Models", help="None: every model of the company."
    )
    environment = fields.Selection(
        [*ENVIRONMENTS, ("all", "All")], required=True, default="production"
    )
    expires_at = fields.Datetime(string="Expires On")
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )

    @api.model
    def _generate(self, values):
        """(key record, the key itself): the only time it is seen."""
        if not self.env.user.has_group(MANAGER):
            raise AccessError(self.env._("Only MLOps managers make invoke keys."))
        token = PREFIX + secrets.token_urlsafe(32)
        key = self.sudo().create(
            {
                **values,
                "key_prefix": token[:10],
                "key_hash": hashlib.sha256(token.encode()).hexdigest(),
            }
        )
        return key.sudo(False), token

    @api.model_create_multi
    def create(self, vals_list):
        keys = super().create(vals_list)
        serving.publish_keys(self.env)
        return keys

    def write(self, vals):
        result = super().write(vals)
        serving.publish_keys(self.env)
        return result

    def unlink(self):
        result = super().unlink()
        serving.publish_keys(self.env)
        return result

    def _allows(self, model, environment):
        self.ensure_one()
        return (
            self.company_id == model.company_id
            and (not self.model_ids or model in self.model_ids)
            and self.environment in (environment, "all")
        )
