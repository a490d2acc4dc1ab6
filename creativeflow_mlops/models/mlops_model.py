# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import UserError

from ..adapters.storage import object_key
from ..lifecycle import TASK_TYPES
from ..services import costs, registry_changes
from ..utils import slugify

# versions that carry no live or approved artifact; a model made only of
# these may be deleted
DISPOSABLE_VERSION_STATES = ("draft", "validation_failed", "archived")


class MlopsModel(models.Model):
    _name = "mlops.model"
    _description = "AI Model"
    _inherit = ["mail.thread", "mail.activity.mixin", "mlops.guarded.mixin"]
    _order = "name"
    _guarded_user_fields = frozenset(
        {"name", "description", "task_type", "owner_id", "company_id", "tag_ids"}
        | {"active", "cost_analytic_account_id", "cost_monthly_budget"}
    )

    name = fields.Char(required=True, tracking=True)
    slug = fields.Char(
        readonly=True,
        copy=False,
        index=True,
        help="DNS-safe name, unique in its company, given when the model is "
        "created and kept when it is renamed: artifact keys, Kubernetes objects "
        "and endpoint slugs are made of it (with the company, where names of "
        "several companies meet).",
    )
    description = fields.Text()
    task_type = fields.Selection(
        TASK_TYPES, default="other", required=True, tracking=True
    )
    owner_id = fields.Many2one(
        "res.users",
        default=lambda self: self.env.user,
        tracking=True,
        index=True,
    )
    company_id = fields.Many2one(
        "res.company",
        required=True,
        default=lambda self: self.env.company,
        index=True,
    )
    tag_ids = fields.Many2many("mlops.model.tag", string="Tags")
    active = fields.Boolean(default=True)
    version_ids = fields.One2many("mlops.model.version", "model_id", string="Versions")
    # read from the versions, not stored: a stored value would be rewritten by
    # every upload and state change, and make concurrent uploads of one model
    # conflict on its row
    production_version_id = fields.Many2one(
        "mlops.model.version",
        compute="_compute_version_refs",
        search="_search_production_version_id",
    )
    latest_version_id = fields.Many2one(
        "mlops.model.version", compute="_compute_version_refs"
    )
    version_count = fields.Integer(compute="_compute_counts")
    deployment_count = fields.Integer(compute="_compute_counts")
    feedback_count = fields.Integer(compute="_compute_counts")
    # what its deployments cost (services/costs.py)
    cost_analytic_account_id = fields.Many2one(
        "account.analytic.account",
        string="Analytic Account",
        ondelete="restrict",
        check_company=True,
        tracking=True,
        groups="analytic.group_analytic_accounting",
        help="Where its deployments' costs are booked; one is made for the "
        "model at its first booking when none is chosen.",
    )
    cost_currency_id = fields.Many2one(related="company_id.currency_id")
    cost_monthly_budget = fields.Monetary(
        string="Monthly Budget",
        currency_field="cost_currency_id",
        tracking=True,
        help="Its owner is told (a note and an activity) when a month's cost "
        "passes it; empty: no budget.",
    )
    cost_budget_warned = fields.Char(
        readonly=True, help="The month (YYYY-MM) whose budget was passed and said."
    )
    cost_month = fields.Monetary(
        string="Cost This Month",
        currency_field="cost_currency_id",
        compute="_compute_costs",
    )
    cost_total = fields.Monetary(
        string="Cost", currency_field="cost_currency_id", compute="_compute_costs"
    )

    _sql_constraints = [
        (
            "cost_monthly_budget_positive",
            "CHECK (cost_monthly_budget IS NULL OR cost_monthly_budget >= 0)",
            "A budget is not negative.",
        ),
        (
            "name_company_uniq",
            "unique (name, company_id)",
            "A model with this name already exists in this company.",
        ),
        (
            "slug_company_uniq",
            "unique (slug, company_id)",
            "Another model of this company already has this slug.",
        ),
    ]

    @api.depends("version_ids.state")
    def _compute_version_refs(self):
        Version = self.env["mlops.model.version"]

        def newest(domain):
            groups = Version._read_group(
                [("model_id", "in", self.ids), *domain], ["model_id"], ["id:max"]
            )
            return {model.id: newest_id for model, newest_id in groups}

        production = newest([("state", "=", "production")])
        latest = newest([])
        for model in self:
            model.production_version_id = Version.browse(production.get(model.id))
            model.latest_version_id = Version.browse(latest.get(model.id))

    def _search_production_version_id(self, operator, value):
        if operator in ("=", "!=") and not value:
            having = [("version_ids.state", "=", "production")]
            return having if operator == "!=" else ["!", *having]
        ids = self.env["mlops.model.version"]._search(
            [("state", "=", "production"), ("id", operator, value)]
        )
        return [("version_ids", "in", ids)]

    def _compute_counts(self):
        Version = self.env["mlops.model.version"]
        versions = dict(
            Version._read_group(
                [("model_id", "in", self.ids)], ["model_id"], ["__count"]
            )
        )
        deployments = dict(
            self.env["mlops.deployment"]._read_group(
                [("model_id", "in", self.ids)], ["model_id"], ["__count"]
            )
        )
        feedback = dict(
            self.env["mlops.feedback"]._read_group(
                [("model_id", "in", self.ids)], ["model_id"], ["__count"]
            )
        )
        for model in self:
            model.version_count = versions.get(model, 0)
            model.deployment_count = deployments.get(model, 0)
            model.feedback_count = feedback.get(model, 0)

    def _compute_costs(self):
        lines = self.env["account.analytic.line"].sudo()
        totals = dict(
            lines._read_group(
                [("mlops_model_id", "in", self.ids)], ["mlops_model_id"], ["amount:sum"]
            )
        )
        month = costs.month_cost(self)
        for model in self:
            # costs are booked as negative amounts, as Odoo's analytic lines do
            model.cost_total = -totals.get(model, 0.0)
            model.cost_month = month.get(model.id, 0.0)

    def init(self):
        # the endpoint registry's change log (services.registry_changes)
        registry_changes.install(self.env.cr, self._table)

    @api.model
    def _guarded_create_values(self, vals_list):
        for vals in vals_list:
            if not vals.get("slug"):
                company = vals.get("company_id") or self.env.company.id
                vals["slug"] = self._unique_slug(vals.get("name"), company)
        return super()._guarded_create_values(vals_list)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_live_versions(self):
        for model in self:
            live = model.with_context(active_test=False).version_ids.filtered(
                lambda v: v.state not in DISPOSABLE_VERSION_STATES
            )
            if live:
                raise UserError(
                    self.env._(
                        "Model %(model)s still has versions in use (%(versions)s): "
                        "archive them first.",
                        model=model.display_name,
                        versions=", ".join(live.mapped("version")),
                    )
                )

    @api.model
    def _unique_slug(self, name, company_id):
        """A slug for ``name`` no other model of the company has:
        ``sentiment``, then ``sentiment-2``... A name without Latin letters or
        digits gives ``model``. Other companies' slugs are not looked at, so
        the slug tells nothing about them."""
        base = slugify(name, length=36) or "model"
        taken = set(
            self.sudo()
            .with_context(active_test=False)
            .search_fetch(
                [("slug", "=like", f"{base}%"), ("company_id", "=", company_id)],
                ["slug"],
            )
            .mapped("slug")
        )
        slug, number = base, 1
        while slug in taken:
            number += 1
            slug = f"{base}-{number}"
        return slug

    def _artifact_key(self, backend, version, filename):
        """Where ``version``'s artifact ``filename`` goes in ``backend``:
        under the company, then the slug, so companies never share a key."""
        self.ensure_one()
        return object_key(
            backend._object_prefix(),
            f"c{self.company_id.id}",
            self.slug,
            version,
            filename,
        )

    def _action_open_related(self, res_model, title):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": title,
            "res_model": res_model,
            "view_mode": "list,form",
            "domain": [("model_id", "=", self.id)],
            "context": {"default_model_id": self.id},
        }

    def action_view_versions(self):
        action = self._action_open_related(
            "mlops.model.version", self.env._("Versions")
        )
        action["view_mode"] = "list,kanban,form"
        return action

    def action_view_deployments(self):
        return self._action_open_related("mlops.deployment", self.env._("Deployments"))

    def action_view_feedback(self):
        return self._action_open_related("mlops.feedback", self.env._("Feedback"))

    def action_view_costs(self):
        """Its deployments' analytic lines, by version."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "creativeflow_mlops.mlops_cost_line_action"
        )
        action["domain"] = [("mlops_model_id", "=", self.id)]
        return action

    def _cost_analytic_account(self):
        """The analytic account its costs are booked to: its own, else one
        made now in the project plan (the platform's; the field is analytic
        accounting's)."""
        self.ensure_one()
        model = self.sudo()
        if not model.cost_analytic_account_id:
            plan, _others = self.env["account.analytic.plan"].sudo()._get_all_plans()
            model.cost_analytic_account_id = (
                self.env["account.analytic.account"]
                .sudo()
                .create(
                    {
                        "name": self.env._("AI model %s", model.name),
                        "code": f"MLOPS-{model.slug}"[:64],
                        "plan_id": plan.id,
                        "company_id": model.company_id.id,
                    }
                )
            )
        return model.cost_analytic_account_id
