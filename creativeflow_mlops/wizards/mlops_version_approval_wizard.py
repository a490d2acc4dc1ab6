# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models


class MlopsVersionApprovalWizard(models.TransientModel):
    """Asks the reason of an approval, for one version or a selection."""

    _name = "mlops.version.approval.wizard"
    _description = "Approve or Reject AI Model Versions"

    version_ids = fields.Many2many(
        "mlops.model.version", string="Versions", required=True
    )
    action = fields.Selection(
        [
            ("approve_staging", "Approve Staging"),
            ("promote", "Promote to Production"),
            ("rollback", "Roll Back to This Version"),
        ],
        required=True,
        default="approve_staging",
    )
    reason = fields.Text()
    strategy = fields.Selection(
        [("blue_green", "Blue-Green"), ("canary", "Canary (steps and gates)")],
        default="blue_green",
        help="Canary: the steps, their hold time and the gates are in the "
        "settings (creativeflow_mlops.canary_*).",
    )
    canary_percent = fields.Integer(
        string="First Share (%)",
        help="The canary's first share of production's traffic; empty: the first "
        "configured step.",
    )
    version_count = fields.Integer(compute="_compute_version_count")
    freeze_notice = fields.Text(
        compute="_compute_freeze_notice",
        help="The deploy freezes holding the environment now.",
    )
    override_freeze = fields.Text(
        string="Go Past the Freeze Because",
        help="An MLOps Manager's reason to approve while the environment is "
        "frozen; kept on the approval and the ledger.",
    )

    @api.depends("version_ids")
    def _compute_version_count(self):
        for wizard in self:
            wizard.version_count = len(wizard.version_ids)

    @api.depends("action", "version_ids")
    def _compute_freeze_notice(self):
        environment = {"approve_staging": "staging", "promote": "production"}
        Freeze = self.env["mlops.deploy.freeze"]
        for wizard in self:
            held = environment.get(wizard.action)
            freezes = Freeze
            for company in wizard.version_ids.company_id if held else ():
                freezes |= Freeze._in_effect_at(held, company)
            wizard.freeze_notice = freezes._describe() if freezes else False

    def _call(self, versions, method_name):
        kwargs = {"reason": self.reason}
        if self.override_freeze and self.action in ("approve_staging", "promote"):
            kwargs["override_freeze"] = self.override_freeze
        if self.action == "promote":
            kwargs["strategy"] = self.strategy
            if self.strategy == "canary" and self.canary_percent:
                kwargs["canary_percent"] = self.canary_percent
        if len(versions) == 1:
            # one version: a refusal is an ordinary error dialog
            getattr(versions, method_name)(**kwargs)
            return {"type": "ir.actions.act_window_close"}
        done, refused = versions._lifecycle_apply_each(method_name, **kwargs)
        title = dict(self._fields["action"]._description_selection(self.env))[
            self.action
        ]
        return versions._lifecycle_report_action(title, done, refused)

    def action_confirm(self):
        self.ensure_one()
        method_name = {
            "approve_staging": "action_approve_staging",
            "promote": "action_promote",
            "rollback": "action_rollback",
        }[self.action]
        return self._call(self.version_ids, method_name)

    def action_reject(self):
        self.ensure_one()
        if len(self.version_ids) == 1:
            self.version_ids.action_reject(self.reason)
            return {"type": "ir.actions.act_window_close"}
        done, refused = self.version_ids._lifecycle_apply_each(
            "action_reject", self.reason
        )
        return self.version_ids._lifecycle_report_action(
            self.env._("Reject"), done, refused
        )
