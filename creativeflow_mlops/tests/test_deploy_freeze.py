# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Deploy freezes: approvals held back on every path while one holds
(dates, or outside a working calendar), a Manager going past with a reason
kept on the approval and the ledger, rollbacks never frozen."""

from datetime import timedelta

from odoo import fields
from odoo.exceptions import ValidationError

from odoo.addons.queue_job.tests.common import trap_jobs

from ..exceptions import Conflict, InvalidInput, LifecycleAccessError
from ..services import operations
from . import test_deployments
from .common import LocalTargetCleanup, MlopsCase


class FreezeCase(MlopsCase):
    def _freeze(self, environment="production", hours=(-1, 1), **values):
        now = fields.Datetime.now()
        return self.env["mlops.deploy.freeze"].create(
            {
                "name": "Year end",
                "environment": environment,
                "date_start": now + timedelta(hours=hours[0]),
                "date_end": now + timedelta(hours=hours[1]),
                "reason": "books closing",
                **values,
            }
        )

    def _calendar(self, hours):
        """A UTC calendar working ``hours`` (from, to) every day of the week."""
        return self.env["resource.calendar"].create(
            {
                "name": f"Works {hours}",
                "tz": "UTC",
                "attendance_ids": [
                    (0, 0, {
                        "name": f"day {day}", "dayofweek": str(day),
                        "hour_from": hours[0], "hour_to": hours[1],
                        "day_period": "morning",
                    })
                    for day in range(7)
                ] if hours else [],
            }
        )  # fmt: skip

    def _promote(self, version, who=None, **context):
        return (
            version.with_user(who or self.approver)
            .with_context(mlops_reason="soak clean", **context)
            ._lifecycle_move("production_pending")
        )


class TestDeployFreeze(FreezeCase):
    def test_a_freeze_holds_its_environment_and_says_until_when(self):
        freeze = self._freeze()
        version = self._version_in("staging")
        approvals = len(version.approval_ids)
        with self.assertRaises(Conflict) as refused:
            self._promote(version)
        message = str(refused.exception)
        self.assertIn("Production is frozen", message)
        self.assertIn(
            f"“Year end” (until {fields.Datetime.to_string(freeze.date_end)} UTC): "
            "books closing",
            message,
        )
        self.assertIn("override_freeze", message)
        # nothing changed
        self.assertEqual(version.state, "staging")
        self.assertEqual(len(version.approval_ids), approvals)
        # staging is not frozen by production's freeze
        other = self._version_in("validated")
        self._move(other, "staging_pending", "approver")
        self.assertEqual(other.state, "staging_pending")
        self.assertTrue(freeze.in_effect)

    def test_only_freezes_that_hold_refuse(self):
        version = self._version_in("staging")
        self._freeze(hours=(-3, -1))  # over
        self._freeze(hours=(1, 3))  # not yet
        self._freeze().active = False  # archived
        other_company = self.env["res.company"].create({"name": "Elsewhere"})
        self._freeze(company_id=other_company.id)
        self._freeze(environment="staging")
        self._promote(version)
        self.assertEqual(version.state, "production_pending")

    def test_a_calendar_freezes_outside_working_time(self):
        version = self._version_in("staging")
        never = self.env["mlops.deploy.freeze"].create(
            {
                "name": "Nobody works",
                "environment": "production",
                "kind": "calendar",
                "calendar_id": self._calendar(None).id,
            }
        )
        with self.assertRaisesRegex(Conflict, "outside the working time of"):
            self._promote(version)
        never.calendar_id = self._calendar((0, 24))
        self._promote(version)
        self.assertEqual(version.state, "production_pending")

    def test_a_manager_goes_past_with_a_reason_an_approver_cannot(self):
        self._freeze()
        version = self._version_in("staging")
        with self.assertRaisesRegex(LifecycleAccessError, "only an MLOps Manager"):
            self._promote(version, mlops_freeze_override="the fix cannot wait")
        self.assertEqual(version.state, "staging")
        self._promote(version, self.manager, mlops_freeze_override="incident 42 hotfix")
        self.assertEqual(version.state, "production_pending")
        approval = version.approval_ids.sorted("id")[-1]
        self.assertEqual(approval.stage, "production")
        self.assertIn("incident 42 hotfix (past “Year end”", approval.freeze_override)

    def test_a_rollback_is_never_frozen(self):
        version = self._version_in("deprecated")
        self._freeze(hours=(-2, 2))
        version.with_user(self.approver).with_context(
            mlops_reason="back to what worked"
        )._lifecycle_move("production_pending")
        self.assertEqual(version.state, "production_pending")
        self.assertFalse(version.approval_ids.sorted("id")[-1].freeze_override)

    def test_a_freeze_needs_its_dates_or_its_calendar(self):
        now = fields.Datetime.now()
        with self.assertRaisesRegex(ValidationError, "the end after the start"):
            self._freeze(hours=(1, -1))
        with self.assertRaisesRegex(ValidationError, "needs its calendar"):
            self.env["mlops.deploy.freeze"].create(
                {"name": "x", "kind": "calendar", "date_start": now}
            )
        # freezes are the Managers' to set; users read them
        with self.assertRaises(Exception):  # noqa: B017 - AccessError
            self.env["mlops.deploy.freeze"].with_user(self.approver).create(
                {"name": "mine", "date_start": now, "date_end": now}
            )
        self.assertTrue(
            self.env["mlops.deploy.freeze"].with_user(self.user).search_count([]) >= 0
        )

    def test_the_api_takes_the_override_and_refuses_a_blank_one(self):
        self._freeze()
        version = self._version_in("staging")
        with self.assertRaisesRegex(InvalidInput, "override_freeze is a reason"):
            operations.run(
                self.env(user=self.manager),
                "versions.promote",
                {"id": version.id, "reason": "r", "override_freeze": "  "},
            )
        with self.assertRaisesRegex(Conflict, "Production is frozen"):
            operations.run(
                self.env(user=self.approver),
                "versions.promote",
                {"id": version.id, "reason": "r"},
            )
        self.assertEqual(version.state, "staging")


class TestDeployFreezeLedger(LocalTargetCleanup, FreezeCase):
    """Through a real promotion on the local target: the ledger line of
    the deployment approved past the freeze says so; the approval wizard
    shows the freeze and takes the Manager's reason."""

    _validated = test_deployments.TestDeployments._validated
    _approve = test_deployments.TestDeployments._approve

    def test_the_ledger_keeps_the_override(self):
        version = self._validated()
        self._approve(version)
        self.assertEqual(version.state, "staging")
        self._freeze()
        wizard = (
            self.env["mlops.version.approval.wizard"]
            .with_user(self.manager)
            .create(
                {
                    "version_ids": [(6, 0, version.ids)],
                    "action": "promote",
                    "reason": "soak clean",
                    "override_freeze": "customer launch tomorrow",
                }
            )
        )
        self.assertIn("“Year end” (until", wizard.freeze_notice)
        with trap_jobs() as trap:
            wizard.action_confirm()
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "production")
        line = self.env["mlops.promotion"]._current(version.model_id, "production")
        self.assertIn("customer launch tomorrow (past “Year end”", line.freeze_override)
        self.assertEqual(line.approved_by_id, self.manager)
