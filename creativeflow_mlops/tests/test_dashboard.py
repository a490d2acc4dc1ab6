# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import USER
from .common import MlopsCase


class TestDashboard(MlopsCase):
    def _data(self, user):
        return self.env["mlops.dashboard"].with_user(user).get_dashboard_data()

    def _count(self, data, state):
        return next(
            e["count"] for e in data["versions_by_state"] if e["state"] == state
        )

    def test_counts_failures_and_stuck_rounds_as_the_user_may_read_them(self):
        before = self._data(self.user)
        failed = self._version_in("validation_failed")
        self._version_in("validated")
        stuck = self._new_version()
        self.env.cr.precommit.run()  # created in one transaction...
        self._bring_to(stuck, "validating")  # ...started in another
        result = self.env["mlops.validation.result"].create(
            {
                "version_id": failed.id,
                "scan_type": "format",
                "state": "failed",
                "summary": "not an ONNX file",
                "finished_at": fields.Datetime.now(),
            }
        )
        self.env.cr.precommit.run()
        self.env.flush_all()
        old = fields.Datetime.now() - timedelta(hours=1)
        self.env.cr.execute(
            "UPDATE mlops_model_version SET write_date = %s WHERE id = %s",
            [old, stuck.id],
        )
        stuck.invalidate_recordset()
        data = self._data(self.user)
        for state in ("validation_failed", "validated", "validating"):
            self.assertEqual(
                self._count(data, state), self._count(before, state) + 1, state
            )
        self.assertEqual(
            [e["state"] for e in data["versions_by_state"]][:3],
            ["draft", "validating", "validation_failed"],
        )
        failing = next(f for f in data["failing"] if f["id"] == result.id)
        self.assertEqual(failing["version_id"], failed.id)
        self.assertEqual(failing["summary"], "not an ONNX file")
        self.assertIn(stuck.id, [s["id"] for s in data["stuck"]])
        recent = [m for m in data["recent"] if m["res_id"] == stuck.id]
        self.assertTrue(recent)
        self.assertIn("Validating", recent[0]["preview"])

        # another company's records count for nobody here
        company_b = self.env["res.company"].create({"name": "Dash B"})
        user_b = new_test_user(
            self.env,
            login="dash_user_b",
            groups=USER,
            company_id=company_b.id,
            company_ids=[(6, 0, company_b.ids)],
        )
        data_b = self._data(user_b)
        self.assertFalse(data_b["failing"] or data_b["stuck"] or data_b["recent"])
        self.assertFalse(sum(e["count"] for e in data_b["versions_by_state"]))

    def _version_in(self, state):
        return self._bring_to(self._new_version(), state)


@tagged("post_install", "-at_install")
class TestDashboardTour(HttpCase):
    def test_dashboard_is_the_landing_page(self):
        user = new_test_user(
            self.env, login="dash_user", password="dash_user", groups=USER
        )
        model = self.env["mlops.model"].create({"name": "dash-model"})
        version = self.env["mlops.model.version"].create(
            {"model_id": model.id, "version": "1.0.0", "uploaded_by_id": user.id}
        )
        version.sudo().write({"state": "validating"})
        version.sudo().write({"state": "validation_failed"})
        root = self.env.ref("creativeflow_mlops.menu_mlops_root")
        self.assertEqual(
            root.action, self.env.ref("creativeflow_mlops.mlops_dashboard_action")
        )
        self.start_tour(
            "/odoo/action-creativeflow_mlops.mlops_dashboard_action",
            "creativeflow_mlops_dashboard",
            login="dash_user",
        )
