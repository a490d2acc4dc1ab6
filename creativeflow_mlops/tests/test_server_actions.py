# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import AccessError
from odoo.tests import Form

from .common import MlopsCase


class TestServerActions(MlopsCase):
    def _run(self, xmlid, versions, user):
        action = self.env.ref(xmlid).with_user(user)
        return action.with_context(
            active_model="mlops.model.version",
            active_ids=versions.ids,
            active_id=versions[:1].id,
        ).run()

    def test_revalidate_mixed_selection(self):
        validated = self._version_in("validated")
        failed = self._version_in("validation_failed")
        draft = self._new_version()
        staging = self._version_in("staging")
        versions = validated | failed | draft | staging
        result = self._run(
            "creativeflow_mlops.action_server_version_validate", versions, self.manager
        )
        params = result["params"]
        self.assertEqual(params["title"], "Re-validate: 2 done, 2 refused")
        self.assertEqual(params["type"], "warning")
        self.assertEqual(
            (validated | failed).mapped("state"), ["validating", "validating"]
        )
        self.assertEqual(draft.state, "draft")
        self.assertEqual(staging.state, "staging")
        self.assertIn(f"{draft.display_name}: refused: ", params["message"])
        self.assertIn("done by the platform itself", params["message"])
        self.assertIn("cannot go from Staging to Validating", params["message"])

    def test_archive_mixed_selection_reports_roles_too(self):
        versions = self._version_in("production") | self._version_in("archived")
        result = self._run(
            "creativeflow_mlops.action_server_version_archive", versions, self.manager
        )
        self.assertEqual(result["params"]["title"], "Archive: 1 done, 1 refused")
        self.assertEqual(versions.mapped("state"), ["archived", "archived"])
        self.assertFalse(self.model.production_version_id)
        # the action is only offered to managers; called anyway (RPC), each
        # record is refused for the missing role and nothing changes
        other = self._version_in("validated")
        with self.assertRaises(AccessError):
            self._run(
                "creativeflow_mlops.action_server_version_archive", other, self.approver
            )
        result = other.with_user(self.approver).action_mass_archive()
        self.assertEqual(result["params"]["title"], "Archive: 0 done, 1 refused")
        self.assertIn("needs the role MLOps / Manager", result["params"]["message"])
        self.assertEqual(other.state, "validated")

    def test_approve_staging_mixed_selection(self):
        ok = self._version_in("validated")
        own = self._version_in("validated", uploader=self.approver)
        draft = self._new_version()
        versions = ok | own | draft
        action = self._run(
            "creativeflow_mlops.action_server_version_approve_staging",
            versions,
            self.approver,
        )
        self.assertEqual(action["res_model"], "mlops.version.approval.wizard")
        wizard_form = Form(
            self.env["mlops.version.approval.wizard"]
            .with_user(self.approver)
            .with_context(**action["context"])
        )
        wizard_form.reason = "batch review of the week"
        wizard = wizard_form.save()
        self.assertEqual(wizard.version_count, 3)
        result = wizard.action_confirm()
        params = result["params"]
        self.assertEqual(params["title"], "Approve Staging: 1 done, 2 refused")
        self.assertEqual(ok.state, "staging_pending")
        self.assertEqual(ok.approval_ids.reason, "batch review of the week")
        self.assertEqual(own.state, "validated")
        self.assertIn("Separation of duties", params["message"])
        self.assertEqual(draft.state, "draft")

    def test_promote_wizard_on_one_version(self):
        version = self._version_in("staging")
        action = (
            version.with_user(self.approver)
            .with_context(mlops_approval_action="promote")
            .action_open_approval_wizard()
        )
        wizard_form = Form(
            self.env["mlops.version.approval.wizard"]
            .with_user(self.approver)
            .with_context(**action["context"])
        )
        wizard_form.strategy = "blue_green"
        wizard_form.reason = "blue-green first"
        result = wizard_form.save().action_confirm()
        self.assertEqual(result["type"], "ir.actions.act_window_close")
        self.assertEqual(version.state, "production_pending")
        promotion = version.approval_ids.filtered(lambda a: a.stage == "production")
        self.assertEqual(promotion.strategy, "blue_green")
        self.assertEqual(promotion.reason, "blue-green first")

    def test_reject_from_wizard(self):
        versions = self._version_in("validated") | self._version_in("staging")
        wizard = (
            self.env["mlops.version.approval.wizard"]
            .with_user(self.approver)
            .create({"version_ids": [(6, 0, versions.ids)], "reason": "not this week"})
        )
        result = wizard.action_reject()
        self.assertEqual(result["params"]["title"], "Reject: 2 done, 0 refused")
        rejections = versions.approval_ids.filtered(lambda a: a.decision == "rejected")
        self.assertEqual(sorted(rejections.mapped("stage")), ["production", "staging"])
        self.assertEqual(rejections.user_id, self.approver)
        self.assertEqual(versions.mapped("state"), ["validated", "staging"])
