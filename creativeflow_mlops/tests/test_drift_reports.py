# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Drift reports from the inference log: windows with known answers (the
same distribution, and three of four features shifted by a standard
deviation), the reference the contract names, the alert said once, the
API's report."""

from datetime import timedelta

import numpy as np
import orjson

from odoo import fields

from ..exceptions import NotFound
from ..services import drift_reports, inference_log, operations
from .common import MlopsCase

FEATURES = 4


def _rows(rng, count, shift=(0.0,) * FEATURES, start=None):
    start = start or fields.Datetime.now() - timedelta(hours=1)
    rows = []
    for n in range(count):
        values = rng.standard_normal(FEATURES) + np.array(shift)
        at = start + timedelta(seconds=n)
        rows.append(
            {
                "request_id": f"r{rng.integers(1 << 62)}",
                "at": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "status": 200,
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, FEATURES],
                        "datatype": "FP32",
                        "data": [float(v) for v in values],
                    }
                ],
            }
        )
    return rows


class TestDriftReports(MlopsCase):
    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(7)
        self.version = self._version_in("staging")
        Deployment = self.env["mlops.deployment"].sudo()
        self.staging = Deployment.create(
            {"version_id": self.version.id, "environment": "staging"}
        )
        self.production = Deployment.create(
            {"version_id": self.version.id, "environment": "production"}
        )
        self.version.model_id.sudo().owner_id = self.approver

    def _log(self, deployment, rows, name):
        body = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        return inference_log.store(deployment, name, body, "runtime")

    def test_the_same_distribution_does_not_drift(self):
        self._log(self.staging, _rows(self.rng, 400), "s1")
        self._log(self.production, _rows(self.rng, 400), "p1")
        result = drift_reports.compute(self.production)
        self.assertIn("over 4 features", result)
        report = self.production.drift_report_ids
        self.assertEqual(len(report), 1)
        self.assertEqual(report.reference, "staging")
        self.assertEqual((report.reference_rows, report.current_rows), (400, 400))
        self.assertLess(report.score, 0.5)
        self.assertFalse(report.drifted or self.production.data_drifted)
        self.assertEqual(
            set(report.feature_ids.mapped("name")), {f"x[{j}]" for j in range(4)}
        )
        # 400 values: small windows, judged by Kolmogorov-Smirnov
        self.assertEqual(set(report.feature_ids.mapped("method")), {"ks"})
        self.assertFalse(
            self.env["mlops.event"].search([("type", "=", "drift.detected")])
        )

    def test_a_shift_drifts_and_is_said_once(self):
        self._log(self.staging, _rows(self.rng, 1500), "s1")
        self._log(self.production, _rows(self.rng, 1500, shift=(1, 1, 1, 0)), "p1")
        drift_reports.compute(self.production)
        report = self.production.drift_report_ids
        # 1,500 values: large windows, judged by the normed Wasserstein distance
        self.assertEqual(set(report.feature_ids.mapped("method")), {"wasserstein"})
        moved = report.feature_ids.filtered("drifted").mapped("name")
        self.assertEqual(sorted(moved), ["x[0]", "x[1]", "x[2]"])
        self.assertEqual((report.score, report.drifted), (0.75, True))
        self.assertTrue(self.production.data_drifted)
        self.assertEqual(self.production.data_drift_score, 0.75)
        (event,) = self.env["mlops.event"].search([("type", "=", "drift.detected")])
        self.assertEqual(event.resource_id, self.production.id)
        self.assertEqual(event.data["report_id"], report.id)
        self.assertEqual(sorted(event.data["features"]), ["x[0]", "x[1]", "x[2]"])
        self.assertTrue(
            self.version.activity_ids.filtered(lambda a: "drifted" in a.summary)
        )
        # still drifted an hour later: no second alert
        drift_reports.compute(self.production)
        self.assertEqual(len(self.production.drift_report_ids), 2)
        self.assertEqual(
            self.env["mlops.event"].search_count([("type", "=", "drift.detected")]), 1
        )
        # the API's report, as the contract shapes it
        status, body = operations.run(
            self.env(user=self.uploader),
            "deployments.drift",
            {"id": self.production.id},
        )
        self.assertEqual(status, 200)
        self.assertEqual((body["score"], body["drifted"]), (0.75, True))
        self.assertEqual(body["reference"]["source"], "staging")
        self.assertEqual(body["current"]["rows"], 1500)
        feature = next(f for f in body["features"] if f["name"] == "x[0]")
        self.assertEqual(
            set(feature), {"name", "method", "value", "threshold", "drifted"}
        )
        self.assertGreater(feature["value"], 0.1)

    def test_without_staging_traffic_its_own_first_calls_are_the_reference(self):
        old = fields.Datetime.now() - timedelta(hours=3)
        self._log(self.staging, _rows(self.rng, 300, start=old), "early")
        self._log(self.staging, _rows(self.rng, 300, shift=(2, 2, 2, 2)), "late")
        drift_reports.compute(self.staging)
        report = self.staging.drift_report_ids
        self.assertEqual(report.reference, "own")
        self.assertEqual((report.reference_rows, report.current_rows), (300, 300))
        self.assertEqual(report.score, 1.0)

    def test_too_few_calls_decide_nothing(self):
        self._log(self.staging, _rows(self.rng, 50), "s1")
        self._log(self.production, _rows(self.rng, 50), "p1")
        self.assertIn("not enough calls", drift_reports.compute(self.production))
        self.assertFalse(self.production.drift_report_ids)
        with self.assertRaises(NotFound):
            operations.run(
                self.env(user=self.uploader),
                "deployments.drift",
                {"id": self.production.id},
            )

    def test_features_are_columns_of_the_inputs(self):
        rows = [
            {
                "inputs": [
                    {"name": "x", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]},
                    {"name": "age", "shape": [2], "data": [30, 40]},
                    {"name": "odd", "shape": [2, 2], "data": [1, 2, 3]},
                ]
            }
        ]
        columns = drift_reports.features(rows, 100)
        self.assertEqual(
            columns, {"x[0]": [1, 4], "x[1]": [2, 5], "x[2]": [3, 6], "age": [30, 40]}
        )
        self.assertEqual(list(drift_reports.features(rows, 2)), ["x[0]", "x[1]"])
