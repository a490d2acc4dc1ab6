# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A/B experiments on the embedded local target: two versions in
production split by the router at the arms' weights, a caller kept on one
arm, ratings with a known difference reaching the right verdict, the route
given back, the idle colour kept while it runs, and what is refused."""

import io
from collections import Counter

import numpy as np
import requests

from odoo.addons.queue_job.tests.common import trap_jobs

from ..exceptions import Conflict, InvalidInput, TransitionNotAllowed
from ..services import artifacts as artifact_service
from ..services import experiments, operations, serving
from . import artifacts
from .common import LocalTargetCleanup, MlopsCase, invoke_headers

BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


class TestExperiments(LocalTargetCleanup, MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        cls.auth = invoke_headers(cls.env, cls.manager, "experiments")

    def _validated(self, version, model="compared"):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": model, "version": version, "model_format": "onnx"},
                io.BytesIO(artifacts.onnx_mlp(seed=len(version))),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(record.state, "validated")
        return record.with_user(self.approver)

    def _to_production(self, version):
        with trap_jobs() as trap:
            version.action_approve_staging(reason="compare it")
            trap.perform_enqueued_jobs()
        with trap_jobs() as trap:
            version.action_promote(reason="compare it", strategy="blue_green")
            trap.perform_enqueued_jobs()
        return version.deployment_ids.filtered(
            lambda d: d.environment == "production"
        ).sorted("id")[-1:]

    def _two_in_production(self):
        first, second = self._validated("1.0.0"), self._validated("2.0.0")
        blue = self._to_production(first)
        green = self._to_production(second)
        self.assertEqual((blue.state, green.state), ("inactive_bluegreen", "active"))
        return first, second, blue, green

    def _create(self, first, second, weights=(50, 50), **extra):
        status, body = operations.run(
            self.env(user=self.approver),
            "experiments.create",
            {
                "model_id": first.model_id.id,
                "environment": "production",
                "metric": "rating",
                "arms": [
                    {"version_id": first.id, "weight": weights[0]},
                    {"version_id": second.id, "weight": weights[1]},
                ],
                **extra,
            },
        )
        self.assertEqual((status, body["state"]), (201, "draft"))
        return self.env["mlops.experiment"].browse(body["id"])

    def _served(self, url, callers):
        seen = {}
        with requests.Session() as session:
            for caller in callers:
                answer = session.post(
                    url,
                    json=BODY,
                    headers={**self.auth, "X-MLOps-Caller": caller},
                    timeout=10,
                )
                self.assertEqual(answer.status_code, 200, answer.text)
                seen[caller] = answer.headers["X-MLOps-Version"]
        return seen

    def test_a_known_difference_wins_and_the_route_comes_back(self):
        first, second, blue, green = self._two_in_production()
        experiment = self._create(first, second)
        status, body = operations.run(
            self.env(user=self.approver), "experiments.start", {"id": experiment.id}
        )
        self.assertEqual((status, body["state"]), (200, "running"))
        self.assertEqual(
            [a["deployment_id"] for a in body["arms"]], [blue.id, green.id]
        )
        route = serving.plan(green).route
        self.assertEqual(
            sorted(serving.routes(self.target)[route]),
            sorted([(f"d{blue.id}", 50), (f"d{green.id}", 50)]),
        )
        # the router splits by caller, and keeps each caller on its arm
        url = green.endpoint_url
        callers = [f"user-{n}" for n in range(120)]
        seen = self._served(url, callers)
        shares = Counter(seen.values())
        self.assertTrue(30 <= shares["1.0.0"] <= 90, shares)
        self.assertEqual(
            self._served(url, callers[:30]), {c: seen[c] for c in callers[:30]}
        )
        # the idle colour is kept while the experiment runs
        self.assertIn(blue, experiments.pinned(self.env))
        # ratings with a known difference: 2.0.0 is liked better
        rng = np.random.default_rng(5)
        Feedback = self.env["mlops.feedback"].sudo()
        for deployment, choices in ((blue, [2, 3, 4]), (green, [4, 5])):
            Feedback.create(
                [
                    {
                        "deployment_id": deployment.id,
                        "version_id": deployment.version_id.id,
                        "rating": int(r),
                    }
                    for r in rng.choice(choices, 150)
                ]
            )
        status, body = operations.run(
            self.env(user=self.approver), "experiments.stop", {"id": experiment.id}
        )
        self.assertEqual(body["state"], "stopped")
        control, arm = body["arms"]
        self.assertEqual((control["n"], arm["n"]), (150, 150))
        self.assertGreater(arm["difference"], 1.0)
        self.assertLess(arm["p_value"], 0.001)
        self.assertLess(arm["always_valid_p_value"], 0.05)
        self.assertGreater(arm["probability_best"], 0.99)
        # the route is its deployments' again: the active colour takes it all
        self.assertEqual(serving.routes(self.target)[route], [(f"d{green.id}", 100)])
        self.assertNotIn(blue, experiments.pinned(self.env))
        experiment.with_user(self.approver).action_conclude()
        self.assertEqual(
            (experiment.state, experiment.verdict, experiment.winner_arm_id.version_id),
            ("concluded", "winner", second),
        )
        (event,) = self.env["mlops.event"].search(
            [("type", "=", "experiment.concluded")]
        )
        self.assertEqual(event.data["winner_version_id"], second.id)

    def test_an_arm_that_leaves_the_route_stops_the_experiment(self):
        first, second, blue, green = self._two_in_production()
        experiment = self._create(first, second)
        experiment.with_user(self.approver).action_start()
        route = serving.plan(green).route
        self.assertEqual(len(serving.routes(self.target)[route]), 2)
        # the idle colour retired (as the supervisor or an undeploy does)
        with trap_jobs():
            blue.sudo().write({"state": "deleted"})
        self.assertEqual(experiment.state, "stopped")
        self.assertIn("which served an arm", experiment.message_ids[0].body)
        # no share of the route goes to the colour that left
        self.assertEqual(serving.routes(self.target)[route], [(f"d{green.id}", 100)])
        self.assertNotIn(blue, experiments.pinned(self.env))
        # its results are still concluded from what it saw
        experiment.with_user(self.approver).action_conclude()
        self.assertEqual(experiment.verdict, "no_difference")

    def test_what_cannot_start_is_refused(self):
        first, second, _blue, _green = self._two_in_production()
        third = self._validated("3.0.0")  # validated: served nowhere
        experiment = self._create(first, second)
        # a third arm with no colour on the route
        experiment.sudo().arm_ids[1].weight = 40
        experiment.sudo().write(
            {"arm_ids": [(0, 0, {"version_id": third.id, "weight": 10})]}
        )
        with self.assertRaises(InvalidInput) as refused:
            experiment.with_user(self.approver).action_start()
        self.assertIn("arms.2.version_id", refused.exception.details)
        self.assertEqual(experiment.state, "draft")
        # weights that do not add up, through the API
        with self.assertRaises(Conflict):
            self._create(first, second, weights=(50, 40))
        # one running experiment per model and environment
        running = self._create(first, second)
        running.with_user(self.approver).action_start()
        other = self._create(first, second, weights=(20, 80))
        with self.assertRaises(InvalidInput) as refused:
            other.with_user(self.approver).action_start()
        self.assertIn("model_id", refused.exception.details)
        # a user may read it but not run it; a running one is not concluded
        with self.assertRaises(TransitionNotAllowed):
            running.with_user(self.approver).action_conclude()
        for forbidden in (
            lambda: running.with_user(self.uploader).action_stop(),
            lambda: running.with_user(self.approver).write({"verdict": "winner"}),
            lambda: running.arm_ids[0].with_user(self.approver).write({"n": 1000}),
        ):
            with self.assertRaises(Exception) as caught:
                forbidden()
            self.assertIn("Access", type(caught.exception).__name__)

    def test_ends_at_is_any_rfc3339_stamp(self):
        first, second = self._validated("1.0.0"), self._validated("2.0.0")
        for raw, kept in (
            ("2030-01-02T03:04:05Z", "2030-01-02 03:04:05"),
            ("2030-01-02t05:04:05.123456789+02:00", "2030-01-02 03:04:05"),
            ("2030-06-30T23:59:60z", "2030-06-30 23:59:59"),
        ):
            experiment = self._create(first, second, ends_at=raw)
            self.assertEqual(str(experiment.ends_at), kept, raw)
        for raw, refusal in (
            ("2030-01-02", InvalidInput),
            ("2030-13-02T03:04:05Z", InvalidInput),
            ("0000-01-01T00:00:00Z", Conflict),
            ("9999-12-31T23:59:59-01:00", Conflict),
        ):
            with self.assertRaises(refusal, msg=raw):
                self._create(first, second, ends_at=raw)
        # a version of another model is a conflict the schema cannot state
        other = self._validated("1.0.0", model="other")
        with self.assertRaises(Conflict):
            self._create(first, other)
        self.assertFalse(
            self.env["mlops.experiment"].search_count(
                [("ends_at", "=", False), ("model_id", "=", first.model_id.id)]
            )
        )

    def test_outcomes_find_their_call(self):
        _first, _second, blue, green = self._two_in_production()
        record = self.env["mlops.inference.record"].sudo()
        batch = (
            self.env["mlops.inference.batch"]
            .sudo()
            .create(
                {
                    "name": "b",
                    "deployment_id": green.id,
                    "source": "runtime",
                    "storage_backend_id": self.env["mlops.storage.backend"]
                    ._get_default()
                    .id,
                    "object_key": "inference-log/b.jsonl",
                }
            )
        )
        record.create(
            {
                "batch_id": batch.id,
                "deployment_id": green.id,
                "company_id": green.company_id.id,
                "request_id": "order-1",
            }
        )
        status, body = operations.run(
            self.env(user=self.uploader),
            "outcomes.create",
            {"request_id": "order-1", "name": "conversion", "value": 1},
        )
        self.assertEqual((status, body["deployment_id"]), (201, green.id))
        status, body = operations.run(
            self.env(user=self.uploader),
            "outcomes.create",
            {"request_id": "later", "name": "conversion", "value": 0.5},
        )
        self.assertIsNone(body["deployment_id"])
        for wrong in (
            {"request_id": "", "name": "x", "value": 1},
            {"request_id": "a", "name": "x", "value": "1"},
            {"request_id": "a", "name": "x", "value": True},
            {"request_id": "a", "name": "", "value": 1},
        ):
            with self.assertRaises(InvalidInput):
                operations.run(self.env(user=self.uploader), "outcomes.create", wrong)
        # once the log has the call, the outcome is found
        record.create(
            {
                "batch_id": batch.id,
                "deployment_id": blue.id,
                "company_id": blue.company_id.id,
                "request_id": "later",
            }
        )
        self.assertEqual(experiments.resolve_outcomes(self.env), 1)
        outcome = self.env["mlops.outcome"].search([("request_id", "=", "later")])
        self.assertEqual(outcome.deployment_id, blue)
