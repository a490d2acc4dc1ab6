# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import AccessError

from ..exceptions import LifecycleAccessError
from ..lifecycle import APPROVER, MANAGER, USER
from .common import MlopsCase


class TestSecurity(MlopsCase):
    def test_roles_imply_each_other(self):
        self.assertTrue(self.manager.has_group(APPROVER))
        self.assertTrue(self.manager.has_group(USER))
        self.assertTrue(self.approver.has_group(USER))
        self.assertFalse(self.approver.has_group(MANAGER))
        self.assertFalse(self.user.has_group(APPROVER))
        self.assertTrue(self.env.ref("base.user_admin").has_group(MANAGER))

    def test_outsider_sees_nothing(self):
        for model in (
            "mlops.model",
            "mlops.model.version",
            "mlops.deployment",
            "mlops.feedback",
        ):
            with self.subTest(model=model), self.assertRaises(AccessError):
                self.env[model].with_user(self.outsider).search([])

    def test_user_uploads_reads_and_gives_feedback(self):
        Model = self.env["mlops.model"].with_user(self.user)
        model = Model.create({"name": "upscaler", "task_type": "upscaling"})
        self.assertEqual(model.owner_id, self.user)
        version = self._new_version(model=model, uploader=self.user)
        self.assertEqual(version.uploaded_by_id, self.user)
        self._bring_to(version, "validated")
        with self.assertRaisesRegex(LifecycleAccessError, "MLOps / Approver"):
            version.with_user(self.user).action_approve_staging(reason="please")
        with self.assertRaises(AccessError):
            version.with_user(self.user).unlink()
        with self.assertRaises(AccessError):
            self.env["mlops.deployment"].with_user(self.user).create(
                {"version_id": version.id}
            )
        feedback = (
            self.env["mlops.feedback"]
            .with_user(self.user)
            .create({"version_id": version.id, "rating": 4, "comment": "crisp"})
        )
        self.assertEqual(feedback.user_id, self.user)
        self.assertEqual(self.model.with_user(self.user).name, "sentiment")

    def test_user_cannot_touch_others_feedback(self):
        version = self._version_in("validated")
        feedback = (
            self.env["mlops.feedback"]
            .with_user(self.uploader)
            .create({"version_id": version.id, "rating": 2})
        )
        self.assertEqual(feedback.with_user(self.user).rating, 2)
        with self.assertRaises(AccessError):
            feedback.with_user(self.user).write({"rating": 5})
        feedback.with_user(self.manager).write({"comment": "moderated"})

    def test_approver_approves_but_does_not_manage(self):
        version = self._version_in("validated")
        with self.assertRaisesRegex(LifecycleAccessError, "MLOps / Manager"):
            version.with_user(self.approver).action_validate()
        with self.assertRaisesRegex(LifecycleAccessError, "MLOps / Manager"):
            version.with_user(self.approver).action_archive_version()
        version.with_user(self.approver).action_approve_staging(reason="ok")
        self.assertEqual(version.state, "staging_pending")
        with self.assertRaises(AccessError):
            self.env["mlops.validation.result"].with_user(self.approver).create(
                {"version_id": version.id, "scan_type": "format"}
            )

    def test_manager_revalidates_archives_and_deletes(self):
        failed = self._version_in("validation_failed")
        failed.with_user(self.manager).action_validate()
        self.assertEqual(failed.state, "validating")
        validated = self._version_in("validated")
        validated.with_user(self.manager).action_archive_version()
        self.assertEqual(validated.state, "archived")
        validated.with_user(self.manager).unlink()
        self.assertFalse(validated.exists())
        # verdicts come from the scans only: nobody writes a result by hand
        result = failed.validation_result_ids[:1] or self.env[
            "mlops.validation.result"
        ].create({"version_id": failed.id, "scan_type": "format"})
        with self.assertRaises(AccessError):
            result.with_user(self.manager).write({"state": "passed"})
        with self.assertRaises(AccessError):
            self.env["mlops.validation.result"].with_user(self.manager).create(
                {"version_id": failed.id, "scan_type": "format", "state": "passed"}
            )
