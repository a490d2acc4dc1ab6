# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

import pytz

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..exceptions import Conflict, LifecycleAccessError
from ..lifecycle import ENVIRONMENTS, MANAGER

# the approvals a freeze holds back, (from, to) -> the environment; a
# rollback (deprecated -> production_pending) is never frozen
FROZEN_MOVES = {
    ("validated", "staging_pending"): "staging",
    ("staging", "production_pending"): "production",
}
# the reason a Manager goes past a freeze with, as the approval's reason
# travels (``mlops_reason``): write() takes no other argument. Honoured for
# Managers only, checked below.
OVERRIDE_KEY = "mlops_freeze_override"


class MlopsDeployFreeze(models.Model):
    """A period during which an environment takes no new version: between
    two dates, or whenever a working calendar says nobody works (nights,
    weekends, its leaves). Approving staging or promoting to production is
    refused while one holds, saying which and until when; an MLOps Manager
    may go ahead with a reason, kept on the approval and the ledger. Rolling
    back is never frozen: it returns to what served before."""

    _name = "mlops.deploy.freeze"
    _inherit = ["mail.thread"]
    _description = "MLOps Deploy Freeze"
    _order = "date_start desc, id desc"

    name = fields.Char(required=True, tracking=True)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    environment = fields.Selection(
        ENVIRONMENTS, required=True, default="production", tracking=True
    )
    kind = fields.Selection(
        [("period", "Between two dates"), ("calendar", "Outside working time")],
        required=True,
        default="period",
        tracking=True,
    )
    date_start = fields.Datetime(string="From", tracking=True)
    date_end = fields.Datetime(string="Until", tracking=True)
    calendar_id = fields.Many2one(
        "resource.calendar",
        string="Working Calendar",
        tracking=True,
        help="Promotions are refused outside its working time (its attendances "
        "and leaves, in its time zone).",
    )
    reason = fields.Text(help="Why: shown with every refusal.")
    in_effect = fields.Boolean(compute="_compute_in_effect")

    @api.depends("kind", "date_start", "date_end", "calendar_id", "active")
    def _compute_in_effect(self):
        now = fields.Datetime.now()
        for freeze in self:
            freeze.in_effect = freeze.active and freeze._covers(now)

    @api.constrains("kind", "date_start", "date_end", "calendar_id")
    def _check_period(self):
        for freeze in self:
            if freeze.kind == "period" and not (
                freeze.date_start
                and freeze.date_end
                and freeze.date_end > freeze.date_start
            ):
                raise ValidationError(
                    self.env._(
                        "%s: a freeze between two dates needs both, the end after "
                        "the start.",
                        freeze.name,
                    )
                )
            if freeze.kind == "calendar" and not freeze.calendar_id:
                raise ValidationError(
                    self.env._(
                        "%s: a freeze outside working time needs its calendar.",
                        freeze.name,
                    )
                )

    @api.model
    def _in_effect_at(self, environment, company, at=None):
        """The freezes of ``company``'s ``environment`` holding at ``at``
        (now when not given), whoever asks."""
        at = at or fields.Datetime.now()
        freezes = self.sudo().search(
            [
                ("environment", "=", environment),
                ("company_id", "=", company.id),
                "|",
                ("kind", "=", "calendar"),
                "&",
                ("date_start", "<=", at),
                ("date_end", ">", at),
            ]
        )
        return freezes.filtered(lambda freeze: freeze._covers(at))

    def _covers(self, at):
        self.ensure_one()
        if self.kind == "period":
            return bool(
                self.date_start
                and self.date_end
                and self.date_start <= at < self.date_end
            )
        if not self.calendar_id:
            return False
        start = pytz.utc.localize(at)
        worked = self.calendar_id._work_intervals_batch(
            start, start + timedelta(seconds=1)
        )[False]
        return not list(worked)

    def _describe(self):
        """What a refusal says of each freeze: its name, until when (or its
        calendar) and its reason."""
        parts = []
        for freeze in self:
            if freeze.kind == "period":
                until = self.env._(
                    "until %s UTC", fields.Datetime.to_string(freeze.date_end)
                )
            else:
                until = self.env._(
                    "outside the working time of %s", freeze.calendar_id.name
                )
            text = f"“{freeze.name}” ({until})"
            if freeze.reason:
                text += f": {freeze.reason}"
            parts.append(text)
        return "; ".join(parts)

    # ------------------------------------------------------------------
    # The check every approval passes (the version's write())
    # ------------------------------------------------------------------

    @api.model
    def _override_reason(self):
        return (self.env.context.get(OVERRIDE_KEY) or "").strip()

    @api.model
    def _check_move(self, version, transition):
        """Refuse ``transition`` of ``version`` while its environment is
        frozen, unless a Manager gives a reason to go past it."""
        environment = FROZEN_MOVES.get((transition.source, transition.target))
        if not environment:
            return
        freezes = self._in_effect_at(environment, version.company_id)
        if not freezes:
            return
        label = dict(ENVIRONMENTS)[environment]
        if not self._override_reason():
            raise Conflict(
                self.env._(
                    "%(environment)s is frozen: %(freezes)s. “%(label)s” of "
                    "%(version)s waits until it ends, or an MLOps Manager goes "
                    "ahead with a reason (override_freeze).",
                    environment=label,
                    freezes=freezes._describe(),
                    label=transition.label,
                    version=version.display_name,
                )
            )
        if not self.env.user.has_group(MANAGER):
            raise LifecycleAccessError(
                self.env._(
                    "%(environment)s is frozen (%(freezes)s): only an MLOps "
                    "Manager goes past a deploy freeze.",
                    environment=label,
                    freezes=freezes._describe(),
                )
            )

    @api.model
    def _override_values(self, version, stage):
        """The approval's record of a freeze gone past, if one was."""
        reason = self._override_reason()
        if not reason or stage not in dict(ENVIRONMENTS):
            return {}
        freezes = self._in_effect_at(stage, version.company_id)
        if not freezes:
            return {}
        return {"freeze_override": f"{reason} (past {freezes._describe()})"}
