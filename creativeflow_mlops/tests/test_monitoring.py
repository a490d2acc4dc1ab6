# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Monitoring on the embedded local target: metrics kept from the real
model servers' counters under real traffic, rolled up and pruned; SLOs
judged on them, a production breach rolled back through the normal path."""

import io
import time
from datetime import timedelta

import requests

from odoo import fields
from odoo.exceptions import ValidationError

from odoo.addons.queue_job.tests.common import trap_jobs

from ..services import artifacts as artifact_service
from ..services import monitoring, operations
from . import artifacts
from .common import LocalTargetCleanup, MlopsCase, invoke_headers

ROW = [0.5] * 64


def _body(rows=1):
    return {
        "inputs": [
            {"name": "x", "shape": [rows, 64], "datatype": "FP32", "data": ROW * rows}
        ]
    }


def _collect(target):
    """A pass of the collector (buckets start a second apart at least)."""
    time.sleep(1.05)
    return monitoring.collect(target)


class TestMonitoring(LocalTargetCleanup, MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        cls.auth = invoke_headers(cls.env, cls.manager, "monitoring")

    def _validated(self, version, data=None):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": "watched", "version": version, "model_format": "onnx"},
                io.BytesIO(data or artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(record.state, "validated")
        return record.with_user(self.approver)

    def _staging(self, version):
        with trap_jobs() as trap:
            version.action_approve_staging(reason="watch it")
            trap.perform_enqueued_jobs()
        return version.deployment_ids.filtered(lambda d: d.environment == "staging")

    def _production(self, version):
        with trap_jobs() as trap:
            version.action_promote(reason="watch it", strategy="blue_green")
            trap.perform_enqueued_jobs()
        return version.deployment_ids.filtered(
            lambda d: d.environment == "production"
        ).sorted("id")[-1:]

    def _call(self, url, times, rows=1):
        codes = [
            requests.post(
                url, json=_body(rows), headers=self.auth, timeout=10
            ).status_code
            for _i in range(times)
        ]
        return codes

    def test_real_traffic_is_kept_in_buckets(self):
        deployment = self._staging(self._validated("1.0.0"))
        self.assertEqual(deployment.state, "active")
        Metric = self.env["mlops.deployment.metric"]
        # the first pass only reads where the window starts
        _collect(self.target)
        self.assertFalse(Metric.search([("deployment_id", "=", deployment.id)]))
        self.assertEqual(set(self._call(deployment.endpoint_url, 20)), {200})
        malformed = requests.post(
            deployment.endpoint_url, data=b"{", headers=self.auth, timeout=10
        )
        self.assertEqual(malformed.status_code, 400)
        _collect(self.target)
        (bucket,) = Metric.search([("deployment_id", "=", deployment.id)])
        self.assertEqual(
            (bucket.requests, bucket.errors_4xx, bucket.errors_5xx), (21, 1, 0)
        )
        self.assertEqual(bucket.error_rate, 0.0)
        self.assertTrue(0 < bucket.p50_ms <= bucket.p95_ms <= bucket.p99_ms)
        self.assertGreater(bucket.throughput, 0)
        self.assertEqual(bucket.model_id, deployment.model_id)
        # the API's series, as the contract shapes it
        status, body = operations.run(
            self.env(user=self.uploader),
            "deployments.metrics",
            {"id": deployment.id, "window": 60, "step": 60},
        )
        self.assertEqual(status, 200)
        (item,) = body["items"]
        self.assertEqual(
            (item["requests"], item["errors_4xx"], item["errors_5xx"]), (21, 1, 0)
        )
        self.assertEqual(item["p95_ms"], bucket.p95_ms)
        # the Overview's live deployments, read with the user's rights
        live = self.env["mlops.dashboard"].with_user(self.uploader).get_dashboard_data()
        (row,) = [r for r in live["live"] if r["id"] == deployment.id]
        self.assertEqual((row["requests"], row["error_rate"]), (21, 0))

    def test_minutes_roll_up_into_hours_and_old_hours_go(self):
        deployment = self._staging(self._validated("1.0.0"))
        Metric = self.env["mlops.deployment.metric"].sudo()
        old = fields.Datetime.now().replace(minute=0, second=0, microsecond=0)
        old -= timedelta(days=3)
        for minute, (requests_, e5, p95) in enumerate(
            [(100, 2, 40.0), (300, 0, 90.0), (0, 0, None)]
        ):
            Metric.create(
                {
                    "deployment_id": deployment.id,
                    "at": old + timedelta(minutes=minute),
                    "seconds": 60,
                    "requests": requests_,
                    "errors_5xx": e5,
                    "p50_ms": None if p95 is None else p95 / 2,
                    "p95_ms": p95,
                }
            )
        ancient = Metric.create(
            {
                "deployment_id": deployment.id,
                "at": old - timedelta(days=200),
                "period": "hour",
                "requests": 5,
            }
        )
        recent = Metric.create(
            {"deployment_id": deployment.id, "at": fields.Datetime.now(), "requests": 1}
        )
        made, dropped = monitoring.rollup(self.env)
        self.assertEqual((made, dropped), (1, 1))
        self.assertFalse(ancient.exists())
        self.assertTrue(recent.exists())
        (hour,) = Metric.search(
            [("deployment_id", "=", deployment.id), ("period", "=", "hour")]
        )
        self.assertEqual(
            (hour.at, hour.seconds, hour.requests, hour.errors_5xx),
            (old, 180, 400, 2),
        )
        self.assertEqual(hour.p95_ms, 90.0)  # the largest: quantiles do not add
        self.assertAlmostEqual(hour.p50_ms, (100 * 20 + 300 * 45) / 400)
        self.assertAlmostEqual(hour.error_rate, 2 / 400)
        self.assertFalse(
            Metric.search(
                [
                    ("deployment_id", "=", deployment.id),
                    ("period", "=", "minute"),
                    ("at", "<", old + timedelta(hours=1)),
                ]
            )
        )

    def test_an_slo_breach_in_production_rolls_back(self):
        """Version 2 fails every call of two rows (5xx): past its SLO's
        error rate the deployment is rolled back to version 1's idle colour
        through the normal rollback, the ledger naming the SLO and what was
        measured; the breach is an event, a note and an activity."""
        first = self._validated("1.0.0")
        self._staging(first)
        blue = self._production(first)
        second = self._validated("2.0.0", artifacts.onnx_mlp(fail=True))
        self._staging(second)
        green = self._production(second)
        self.assertEqual((blue.state, green.state), ("inactive_bluegreen", "active"))
        slo = self.env["mlops.slo"].create(
            {
                "name": "Production errors",
                "environment": "production",
                "model_id": first.model_id.id,
                "max_error_rate": 0.05,
                "max_p95_ms": 0,
                "min_requests": 10,
                "window_minutes": 5,
                "auto_rollback": True,
            }
        )
        _collect(self.target)
        # not enough requests: nothing decided
        self.assertEqual(set(self._call(green.endpoint_url, 3, rows=2)), {500})
        _collect(self.target)
        self.assertEqual(green.state, "active")
        self.assertFalse(green.slo_state)
        self._call(green.endpoint_url, 12, rows=2)
        self._call(green.endpoint_url, 5)
        _collect(self.target)
        self.assertEqual(green.slo_state, "breached")
        self.assertIn("Production errors", green.slo_detail)
        self.assertEqual((blue.state, green.state), ("active", "rolled_back"))
        served = requests.post(
            green.endpoint_url, json=_body(), headers=self.auth, timeout=10
        )
        self.assertEqual(served.headers["X-MLOps-Version"], "1.0.0")
        line = self.env["mlops.promotion"]._current(first.model_id, "production")
        self.assertEqual(
            (line.kind, line.version_before_id, line.version_after_id),
            ("rollback", second, first),
        )
        self.assertIn("automatic rollback", line.reason)
        self.assertIn("error rate 75.00% above 5.00% (15 5xx)", line.reason)
        event = self.env["mlops.event"].search(
            [("type", "=", "slo.breached"), ("resource_id", "=", green.id)]
        )
        self.assertEqual(len(event), 1)
        self.assertEqual(event.data["slo"], slo.name)
        self.assertEqual(event.data["measured"]["errors_5xx"], 15)
        self.assertTrue(
            second.activity_ids.filtered(lambda a: "Production errors" in a.summary)
        )

    def test_the_slo_that_applies_is_the_most_specific(self):
        deployment = self._staging(self._validated("1.0.0"))
        Slo = self.env["mlops.slo"]
        everyone = Slo.create({"name": "All staging", "environment": "staging"})
        self.assertEqual(Slo._for(deployment), everyone)
        model = Slo.create(
            {
                "name": "This model",
                "environment": "staging",
                "model_id": deployment.model_id.id,
            }
        )
        self.assertEqual(Slo._for(deployment), model)
        own = Slo.create(
            {
                "name": "Its own",
                "environment": "staging",
                "deployment_id": deployment.id,
            }
        )
        self.assertEqual(Slo._for(deployment), own)
        with self.assertRaisesRegex(ValidationError, "must be those"):
            Slo.create(
                {
                    "name": "Wrong",
                    "environment": "production",
                    "deployment_id": deployment.id,
                }
            )
        with self.assertRaisesRegex(ValidationError, "error rate, the p95"):
            Slo.create({"name": "Nothing", "max_error_rate": 0, "max_p95_ms": 0})
