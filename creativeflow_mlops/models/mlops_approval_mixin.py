# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models
from odoo.exceptions import UserError

from ..exceptions import SeparationOfDutiesError
from ..lifecycle import APPROVER
from ..services import settings


class MlopsApprovalMixin(models.AbstractModel):
    """Approvals on top of the lifecycle: the reason an approval needs,
    separation of duties, the append-only approval records, the activities
    that ask the right approver, and rejections.

    Configured by class attributes, in the manner of ``tier.validation``:

    - ``_approval_pending_states``: {state: stage} the states in which an
      approval of ``stage`` is pending;
    - ``_approval_model`` and ``_approval_record_field``: where approvals are
      recorded, and the Many2one there that points at the record;
    - ``_approval_requester_field``: the user who asked for it, who may not
      approve it unless *Uploader May Approve* is set;
    - ``_approval_activity_type``: the xml id of the activity asking for it.

    Transitions marked ``approval`` in the lifecycle table are checked in
    ``write()`` (through ``mlops.lifecycle.mixin``), so no path approves
    without a reason or past separation of duties. The reason travels in
    the ``mlops_reason`` context key, as ``write()`` takes no other
    argument. Needs ``mail.activity.mixin`` on the model.
    """

    _name = "mlops.approval.mixin"
    _inherit = "mlops.lifecycle.mixin"
    _description = "MLOps Approvals (separation of duties)"

    _approval_pending_states = {}
    _approval_model = "mlops.version.approval"
    _approval_record_field = "version_id"
    _approval_requester_field = "uploaded_by_id"
    _approval_activity_type = "creativeflow_mlops.mail_activity_type_mlops_approval"

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_reject(self, reason):
        """Record a refusal of the approval pending on these records."""
        self._check_can_reject(reason)
        for record in self:
            stage = self._approval_pending_states[record.state]
            record._record_approval(stage, "rejected", reason)
            record._close_approval_activities(self.env._("Rejected: %s", reason))
            # posted by the platform for the caller: the note is theirs, and a
            # user made with a login only needs no sender's address
            record.sudo().message_post(
                body=self.env._(
                    "%(stage)s approval rejected: %(reason)s",
                    stage=stage,
                    reason=reason,
                ),
                subtype_xmlid="mail.mt_note",
            )
        return True

    def _check_can_reject(self, reason):
        if not (reason or "").strip():
            raise UserError(self.env._("Say why the approval is rejected."))
        for record in self:
            if record.state not in self._approval_pending_states:
                raise UserError(
                    self.env._(
                        "%(record)s has no approval pending (it is %(state)s).",
                        record=record.display_name,
                        state=record._lifecycle_state_label(record.state),
                    )
                )
            record._lifecycle_check_actor(APPROVER, self.env._("Reject"))

    # ------------------------------------------------------------------
    # Lifecycle hooks
    # ------------------------------------------------------------------

    def _lifecycle_check_transition(self, target):
        transition = super()._lifecycle_check_transition(target)
        if transition.approval and self._approval_reason_required():
            if not (self.env.context.get("mlops_reason") or "").strip():
                raise UserError(
                    self.env._(
                        "“%(label)s” of %(record)s needs a reason.",
                        label=transition.label,
                        record=self.display_name,
                    )
                )
        return transition

    def _lifecycle_check_separation_of_duties(self, transition):
        if self.env.user._is_superuser() or self._self_approval_allowed():
            return
        requester = self[self._approval_requester_field]
        if requester and requester == self.env.user:
            raise SeparationOfDutiesError(
                self.env._(
                    "Separation of duties: %(user)s uploaded %(record)s and cannot "
                    "also approve “%(label)s”. Another approver must do it.",
                    user=self.env.user.name,
                    record=self.display_name,
                    label=transition.label,
                )
            )

    def _lifecycle_after_transition(self, transition):
        result = super()._lifecycle_after_transition(transition)
        if transition.approval:
            reason = self.env.context.get("mlops_reason")
            self._record_approval(transition.approval, "approved", reason)
            self.message_post(
                body=self.env._(
                    "%(label)s approved by %(user)s: %(reason)s",
                    label=transition.label,
                    user=self.env.user.name,
                    reason=reason or self.env._("no reason given"),
                ),
                subtype_xmlid="mail.mt_note",
            )
        self._close_approval_activities(transition.label)
        if transition.target in self._approval_pending_states:
            self._schedule_approval_activity(
                self._approval_pending_states[transition.target]
            )
        return result

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _approval_reason_required(self):
        return not settings.get(self.env, "approval_reason_optional")

    def _self_approval_allowed(self):
        return settings.get(self.env, "allow_self_approval")

    def _approval_values(self, stage):
        """Hook: more values of the approval record of ``stage``."""
        return {}

    def _record_approval(self, stage, decision, reason):
        self.env[self._approval_model].sudo().create(
            {
                self._approval_record_field: self.id,
                "stage": stage,
                "decision": decision,
                "reason": reason,
                "user_id": self.env.user.id,
                **self._approval_values(stage),
            }
        )

    def _approval_preferred_approver(self):
        """Hook: the user to ask first, when allowed to approve."""
        return self.env["res.users"]

    def _approval_activity_summary(self, stage):
        """Hook: the title of the activity asking for ``stage``."""
        return self.env._(
            "Approve %(record)s (%(stage)s)", record=self.display_name, stage=stage
        )

    def _get_approval_assignee(self):
        """The approver asked to act: the preferred one when allowed to,
        else the default approver of the settings, else any approver."""
        approvers = self.env.ref(APPROVER).users.filtered(
            lambda u: not u.share and self.company_id in u.company_ids
        )
        if not self._self_approval_allowed():
            approvers -= self[self._approval_requester_field]
        default = self.env["res.users"].browse(
            settings.get(self.env, "default_approver_id")
        )
        for candidate in (self._approval_preferred_approver(), default):
            if candidate and candidate in approvers:
                return candidate
        return approvers.sorted("id")[:1]

    def _schedule_approval_activity(self, stage):
        user = self._get_approval_assignee()
        if user:
            self.sudo().activity_schedule(
                self._approval_activity_type,
                user_id=user.id,
                summary=self._approval_activity_summary(stage),
            )

    def _close_approval_activities(self, feedback_text):
        activity_type = self.env.ref(self._approval_activity_type)
        activities = self.sudo().activity_ids.filtered(
            lambda a: a.activity_type_id == activity_type
        )
        if activities:
            activities.action_feedback(feedback=feedback_text)
