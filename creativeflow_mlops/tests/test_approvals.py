# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import new_test_user

from ..exceptions import LifecycleAccessError, SeparationOfDutiesError
from ..lifecycle import APPROVER
from .common import MlopsCase


class TestApprovals(MlopsCase):
    def _activities(self, version):
        return version.activity_ids.filtered(
            lambda a: (
                a.activity_type_id
                == self.env.ref("creativeflow_mlops.mail_activity_type_mlops_approval")
            )
        )

    def test_approval_is_recorded(self):
        version = self._version_in("validated")
        version.with_user(self.approver).action_approve_staging(
            reason="F1 0.93 on holdout"
        )
        self.assertEqual(version.state, "staging_pending")
        approval = version.approval_ids
        self.assertEqual(len(approval), 1)
        self.assertEqual(approval.user_id, self.approver)
        self.assertEqual(approval.stage, "staging")
        self.assertEqual(approval.decision, "approved")
        self.assertEqual(approval.reason, "F1 0.93 on holdout")
        self.assertTrue(approval.date)
        self.assertIn("F1 0.93 on holdout", "".join(version.message_ids.mapped("body")))

        self._move(version, "staging", "system")
        version.with_user(self.approver).action_promote(
            reason="staging soak clean", strategy="blue_green"
        )
        promotion = version.approval_ids.filtered(lambda a: a.stage == "production")
        self.assertEqual(promotion.strategy, "blue_green")
        self.assertEqual(promotion.deployment_id.environment, "production")
        self.assertEqual(promotion.reason, "staging soak clean")

    def _commit_tracking(self):
        """Write the tracking values, as the end of a transaction does."""
        self.env.flush_all()
        self.env.cr.precommit.run()

    def test_state_change_is_tracked_in_chatter(self):
        version = self._new_version()
        self._commit_tracking()  # the upload's transaction ends
        self._bring_to(version, "validated")
        self._commit_tracking()
        version.invalidate_recordset(["message_ids"])
        tracked = version.sudo().message_ids.tracking_value_ids.filtered(
            lambda t: t.field_id.name == "state"
        )
        self.assertEqual(tracked.old_value_char, "Draft")
        self.assertEqual(tracked.new_value_char, "Validated")

    def test_reason_is_required_unless_optional(self):
        version = self._version_in("validated")
        with self.assertRaisesRegex(UserError, "needs a reason"):
            version.with_user(self.approver).action_approve_staging(reason="  ")
        self.assertEqual(version.state, "validated")
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.approval_reason_optional", "True"
        )
        version.with_user(self.approver).action_approve_staging()
        self.assertEqual(version.state, "staging_pending")
        self.assertFalse(version.approval_ids.reason)

    def test_separation_of_duties(self):
        version = self._version_in("validated", uploader=self.approver)
        with self.assertRaisesRegex(SeparationOfDutiesError, "Separation of duties"):
            version.with_user(self.approver).action_approve_staging(reason="mine")
        self.assertEqual(version.state, "validated")
        self.assertFalse(version.approval_ids)
        # a raw write from RPC is refused whoever writes (the state is the
        # platform's), and the platform moving it for the uploader still
        # checks the rule
        with self.assertRaisesRegex(LifecycleAccessError, "set by the platform"):
            version.with_user(self.approver2).with_context(mlops_reason="x").write(
                {"state": "staging_pending"}
            )
        with self.assertRaises(SeparationOfDutiesError):
            version.with_user(self.approver).with_context(
                mlops_reason="x"
            ).sudo().write({"state": "staging_pending"})
        version.with_user(self.approver2).action_approve_staging(reason="reviewed")
        self._move(version, "staging", "system")
        with self.assertRaises(SeparationOfDutiesError):
            version.with_user(self.approver).action_promote(reason="mine")
        self.assertEqual(version.state, "staging")

    def test_separation_of_duties_can_be_relaxed(self):
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.allow_self_approval", "True"
        )
        version = self._version_in("validated", uploader=self.approver)
        version.with_user(self.approver).action_approve_staging(reason="small team")
        self.assertEqual(version.approval_ids.user_id, self.approver)

    def test_activities_follow_the_approvals(self):
        version = self._new_version()
        self._bring_to(version, "validated")
        activity = self._activities(version)
        self.assertEqual(len(activity), 1)
        # the model's owner is an approver and not the uploader
        self.assertEqual(activity.user_id, self.approver)
        self.assertIn("for staging", activity.summary)

        version.with_user(self.approver).action_approve_staging(reason="ok")
        self.assertFalse(self._activities(version))
        self._move(version, "staging", "system")
        activity = self._activities(version)
        self.assertIn("to production", activity.summary)
        version.with_user(self.approver).action_promote(reason="ok")
        self.assertFalse(self._activities(version))

    def test_activity_never_goes_to_the_uploader(self):
        self.model.owner_id = self.approver
        version = self._version_in("validated", uploader=self.approver)
        activity = self._activities(version)
        self.assertTrue(activity)
        self.assertNotEqual(activity.user_id, self.approver)
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.default_approver_id", str(self.manager.id)
        )
        other = self._version_in("validated", uploader=self.approver)
        self.assertEqual(self._activities(other).user_id, self.manager)

    def test_an_approver_without_an_email_address_approves_and_rejects(self):
        """An approver made with a login only: the chatter notes still name
        them, and nothing asks for a sender's address."""
        nameless = new_test_user(
            self.env, login="mlops_no_mail", groups=APPROVER, email=False
        )
        self.assertFalse(nameless.email)
        version = self._version_in("validated")
        version.with_user(nameless).action_approve_staging(reason="looks right")
        self.assertEqual(version.state, "staging_pending")
        self.assertEqual(version.approval_ids.user_id, nameless)
        note = version.message_ids.filtered(lambda m: "looks right" in (m.body or ""))
        self.assertEqual(note.author_id, nameless.partner_id)
        other = self._version_in("validated")
        other.with_user(nameless).action_reject("not this one")
        self.assertEqual(other.approval_ids.decision, "rejected")

    def test_reject_records_and_keeps_state(self):
        version = self._version_in("validated")
        with self.assertRaisesRegex(UserError, "Say why"):
            version.with_user(self.approver).action_reject("")
        version.with_user(self.approver).action_reject("latency too high")
        self.assertEqual(version.state, "validated")
        self.assertEqual(version.approval_ids.decision, "rejected")
        self.assertEqual(version.approval_ids.reason, "latency too high")
        self.assertFalse(self._activities(version))
        draft = self._new_version()
        with self.assertRaisesRegex(UserError, "no approval pending"):
            draft.with_user(self.approver).action_reject("nothing to reject")

    def test_approvals_cannot_be_forged_or_edited(self):
        version = self._version_in("staging_pending")
        approval = version.approval_ids
        Approval = self.env["mlops.version.approval"]
        for user in (self.user, self.approver, self.manager):
            with self.subTest(user=user.login):
                with self.assertRaises(AccessError):
                    Approval.with_user(user).create(
                        {
                            "version_id": version.id,
                            "stage": "staging",
                            "decision": "approved",
                        }
                    )
                with self.assertRaises(AccessError):
                    approval.with_user(user).write({"reason": "rewritten"})
        self.assertEqual(approval.reason, "tested")
