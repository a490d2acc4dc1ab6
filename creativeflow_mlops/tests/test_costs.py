# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What deployments cost, booked in analytic accounting: the time their
pods ran from the event ledger, priced at the target's hourly prices, on
the model's analytic account; never booked twice; shown per model and
version; a budget passed is said once a month; what users may read."""

from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import new_test_user

from odoo.addons.queue_job.tests.common import trap_jobs

from ..services import costs
from .common import MlopsCase


class TestCosts(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.accountant = new_test_user(
            cls.env,
            login="mlops_accountant",
            groups="creativeflow_mlops.group_mlops_approver,"
            "analytic.group_analytic_accounting",
        )

    def setUp(self):
        super().setUp()
        self.target = self.env.ref("creativeflow_mlops.deployment_target_local")
        self.target.write(
            {"cost_gpu_hour": 2.0, "cost_cpu_hour": 0.1, "cost_memory_gib_hour": 0.01}
        )
        self.version = self._version_in("staging")
        self.now = fields.Datetime.now().replace(second=0, microsecond=0)

    def _deployment(self, **values):
        return (
            self.env["mlops.deployment"]
            .sudo()
            .create(
                {
                    "version_id": self.version.id,
                    "environment": "staging",
                    "target_id": self.target.id,
                    "replicas": 2,
                    "gpu": 1,
                    "cpu": "500m",
                    "memory": "8Gi",
                    **values,
                }
            )
        )

    def _book(self, now):
        """The cron at ``now``, and the jobs it queued."""
        with trap_jobs() as trap:
            queued = costs.schedule(self.env, now=now)
            trap.perform_enqueued_jobs()
        return queued

    def _ledger(self, deployment, moves):
        """State changes at the minutes given, from ``self.t0``."""
        Event = self.env["mlops.event"].sudo()
        for minutes, previous, state in moves:
            Event.create(
                {
                    "type": f"deployment.{state}",
                    "resource": "deployment",
                    "resource_id": deployment.id,
                    "model_id": deployment.model_id.id,
                    "version_id": deployment.version_id.id,
                    "company_id": deployment.company_id.id,
                    "previous_state": previous,
                    "state": state,
                    "at": self.t0 + timedelta(minutes=minutes),
                }
            )

    def test_the_time_pods_ran_is_booked_once_at_the_targets_prices(self):
        self.t0 = self.now - timedelta(hours=3)
        deployment = self._deployment()
        deployment.sudo().cost_booked_until = self.t0
        self._ledger(
            deployment,
            [
                (0, "requested", "deploying"),
                (10, "deploying", "active"),
                (70, "active", "rolled_back"),
            ],
        )
        # ran 70 minutes, 2 replicas of 1 GPU, half a core and 8 GiB
        hours = 70 / 60
        expected = hours * 2 * (1 * 2.0 + 0.5 * 0.1 + 8 * 0.01)
        self._book(self.t0 + timedelta(hours=2))
        line = deployment.env["account.analytic.line"].search(
            [("mlops_deployment_id", "=", deployment.id)]
        )
        self.assertEqual(len(line), 1)
        self.assertAlmostEqual(line.amount, -expected, places=2)
        self.assertAlmostEqual(line.unit_amount, hours, places=3)
        self.assertAlmostEqual(line.mlops_gpu_hours, hours * 2, places=3)
        self.assertAlmostEqual(line.mlops_cpu_hours, hours, places=3)
        self.assertAlmostEqual(line.mlops_memory_gib_hours, hours * 16, places=3)
        model = self.version.model_id
        self.assertEqual(line.account_id, model.cost_analytic_account_id)
        self.assertEqual(line.mlops_version_id, self.version)
        self.assertAlmostEqual(deployment.cost_total, expected, places=2)
        self.assertAlmostEqual(self.version.cost_total, expected, places=2)
        self.assertAlmostEqual(model.cost_total, expected, places=2)
        # booked again, at the same time or later: nothing is counted twice
        for later in (2, 3):
            self._book(self.t0 + timedelta(hours=later))
        self.assertEqual(
            deployment.env["account.analytic.line"].search_count(
                [("mlops_deployment_id", "=", deployment.id)]
            ),
            1,
        )
        self.assertAlmostEqual(deployment.cost_total, expected, places=2)

    def test_a_running_deployment_is_booked_each_hour_and_the_budget_warns_once(self):
        model = self.version.model_id
        model.sudo().write({"cost_monthly_budget": 5.0, "owner_id": self.approver.id})
        deployment = self._deployment()
        deployment.sudo().write({"state": "deploying"})
        deployment.sudo().write({"state": "active"})
        hourly = 2 * (2.0 + 0.05 + 0.08)
        Line = self.env["account.analytic.line"]
        for hour in (1, 2, 3):
            self._book(self.now + timedelta(hours=hour))
            lines = Line.search([("mlops_deployment_id", "=", deployment.id)])
            self.assertEqual(len(lines), hour)
            # the first hour started when it was deployed, within the minute
            self.assertAlmostEqual(
                -sum(lines.mapped("amount")), hour * hourly, delta=0.1
            )
        # 4.26 after an hour, past 5 after two: said once
        activities = model.activity_ids.filtered(
            lambda a: a.user_id == self.approver and "budget" in (a.summary or "")
        )
        self.assertEqual(len(activities), 1)
        self.assertEqual(model.cost_budget_warned, self.now.strftime("%Y-%m"))
        self._book(self.now + timedelta(hours=4))
        self.assertEqual(
            len(model.activity_ids.filtered(lambda a: "budget" in (a.summary or ""))),
            1,
        )
        self.assertGreater(model.cost_month, model.cost_monthly_budget)
        # a model's own account is kept when it has one
        other = self.env["account.analytic.account"].create(
            {
                "name": "chosen",
                "plan_id": model.cost_analytic_account_id.plan_id.id,
            }
        )
        # the account is analytic accounting's to choose
        with self.assertRaises(AccessError):
            model.with_user(self.approver).cost_analytic_account_id = other
        model.with_user(self.accountant).cost_analytic_account_id = other
        self._book(self.now + timedelta(hours=5))
        newest = Line.search(
            [("mlops_deployment_id", "=", deployment.id)], order="id desc", limit=1
        )
        self.assertEqual(newest.account_id, other)

    def test_a_booking_across_a_month_is_booked_in_each_month(self):
        self.t0 = fields.Datetime.to_datetime("2026-11-30 23:30:00")
        deployment = self._deployment(replicas=1, gpu=1, cpu=False, memory=False)
        deployment.sudo().cost_booked_until = self.t0
        self._ledger(
            deployment, [(0, "requested", "deploying"), (60, "deploying", "failed")]
        )
        self._book(self.t0 + timedelta(hours=2))
        lines = self.env["account.analytic.line"].search(
            [("mlops_deployment_id", "=", deployment.id)], order="date"
        )
        self.assertEqual(
            [(str(line.date), line.unit_amount, line.amount) for line in lines],
            [("2026-11-30", 0.5, -1.0), ("2026-12-01", 0.5, -1.0)],
        )
        self.assertAlmostEqual(deployment.cost_total, 2.0)

    def test_what_users_may_read_and_write(self):
        deployment = self._deployment()
        deployment.sudo().write({"state": "deploying"})
        self._book(self.now + timedelta(hours=1))
        model = self.version.model_id
        account = model._cost_analytic_account()
        self.env["account.analytic.line"].create(
            {"name": "rent", account.plan_id._column_name(): account.id, "amount": -100}
        )
        # MLOps users see what it costs, on the model and the version...
        self.assertGreater(model.with_user(self.user).cost_total, 0)
        self.assertGreater(self.version.with_user(self.user).cost_total, 0)
        # ...not analytic accounting's lines, which its own group reads whole
        with self.assertRaises(AccessError):
            self.env["account.analytic.line"].with_user(self.user).search([])
        seen = (
            self.env["account.analytic.line"]
            .with_user(self.accountant)
            .search([("account_id", "=", account.id)])
        )
        self.assertEqual(len(seen), 2)
        for who, values in (
            (self.manager, {"cost_total": 0}),
            (self.manager, {"cost_booked_until": False}),
        ):
            with self.assertRaises(AccessError):
                deployment.with_user(who).write(values)
        with self.assertRaises(AccessError):
            model.with_user(self.manager).write({"cost_budget_warned": "2000-01"})
        # an accountant edits lines, not the platform's fields on them
        with self.assertRaises(AccessError):
            seen.filtered("mlops_deployment_id").with_user(self.accountant).write(
                {"mlops_gpu_hours": 0}
            )
