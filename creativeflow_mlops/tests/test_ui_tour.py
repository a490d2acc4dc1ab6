# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import MANAGER, USER


@tagged("post_install", "-at_install")
class TestVersionLifecycleTour(HttpCase):
    def test_tour_drives_a_version_through_the_form(self):
        uploader = new_test_user(self.env, login="tour_uploader", groups=USER)
        new_test_user(
            self.env, login="tour_manager", password="tour_manager", groups=MANAGER
        )
        model = self.env["mlops.model"].create({"name": "tour-model"})
        version = (
            self.env["mlops.model.version"]
            .with_user(uploader)
            .create({"model_id": model.id, "version": "0.9.0"})
        )
        version.sudo().write({"state": "validating"})
        version.sudo().write({"state": "validated"})

        self.start_tour(
            "/odoo/action-creativeflow_mlops.mlops_model_version_action",
            "creativeflow_mlops_version_lifecycle",
            login="tour_manager",
        )

        version.invalidate_recordset()
        self.assertEqual(version.state, "archived")
        approval = version.approval_ids
        self.assertEqual(approval.user_id.login, "tour_manager")
        self.assertEqual(approval.reason, "Benchmarks look right")
