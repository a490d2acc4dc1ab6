# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Feedback exported for retraining: each feedback of the period joined to
its logged call (of the model's own deployments only), the file read back
from the store and compared line by line, personal fields nowhere in it,
the export named in a new version's lineage, and what is refused."""

import hashlib
import io
from datetime import timedelta
from unittest.mock import patch

import orjson

from odoo import fields
from odoo.exceptions import AccessError, ValidationError

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.tests.common import trap_jobs

from ..adapters.storage import StorageUnavailable
from ..exceptions import Conflict, InvalidInput, LifecycleAccessError, NotFound
from ..services import artifacts as artifact_service
from ..services import feedback_exports, inference_log, operations, serializers
from . import artifacts
from .common import MlopsCase

SECRET = "ada@example.com"


def _call(request_id, value, at):
    return {
        "request_id": request_id,
        "at": at,
        "status": 200,
        "latency_ms": 4.5,
        "inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [value, 1.0]},
            {"name": "email", "shape": [1], "datatype": "BYTES", "data": [SECRET]},
        ],
        "outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [value]}],
        "parameters": {"email": SECRET, "temperature": 0.5},
    }


class TestFeedbackExport(MlopsCase):
    def setUp(self):
        super().setUp()
        self.version = self._version_in("staging", personal_fields="email")
        Deployment = self.env["mlops.deployment"].sudo()
        self.deployment = Deployment.create(
            {"version_id": self.version.id, "environment": "staging"}
        )
        self.calls = {
            "r1": _call("r1", 0.25, "2026-01-01T10:00:00.000Z"),
            "r2": _call("r2", 0.75, "2026-01-01T10:00:01.000Z"),
        }
        self._log(self.deployment, list(self.calls.values()), "f1")
        # another model's deployment logged a call of the same request id
        other_model = self.env["mlops.model"].create({"name": "other model"})
        other = self._version_in("staging", model=other_model)
        self._log(
            Deployment.create({"version_id": other.id, "environment": "staging"}),
            [_call("r2", 99.0, "2026-01-01T10:00:02.000Z")],
            "o1",
        )
        Feedback = self.env["mlops.feedback"].with_user(self.uploader)
        self.now = fields.Datetime.now()
        self.rated = Feedback.create(
            {
                "version_id": self.version.id,
                "deployment_id": self.deployment.id,
                "generation_request_id": "r1",
                "rating": 5,
                "comment": "right",
                "data": {"email": SECRET, "label": "cat"},
            }
        )
        self.poor = Feedback.create(
            {
                "version_id": self.version.id,
                "deployment_id": self.deployment.id,
                "generation_request_id": "r2",
                "rating": 2,
            }
        )
        self.unlogged = Feedback.create(
            {"version_id": self.version.id, "generation_request_id": "r9", "rating": 3}
        )
        self.old = Feedback.create({"version_id": self.version.id, "rating": 1})
        self.old.sudo().submitted_at = self.now - timedelta(days=30)

    def _log(self, deployment, rows, name):
        body = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        return inference_log.store(deployment, name, body, "runtime")

    def _export(self, who=None, **period):
        with trap_jobs() as trap:
            status, body = operations.run(
                self.env(user=who or self.uploader),
                "feedback.export",
                {"model_id": self.model.id, **period},
            )
            self.assertEqual((status, body["state"]), (202, "queued"))
            trap.assert_jobs_count(1)
            trap.perform_enqueued_jobs()
        return self.env["mlops.feedback.export"].browse(body["export_id"])

    def _read_back(self, export):
        store = export.storage_backend_id._get_store()
        with store.open(export.object_key) as handle:
            return handle.read()

    def test_the_export_is_the_feedback_with_its_calls(self):
        since = (self.now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        export = self._export(since=since)
        self.assertEqual(export.state, "done", export.error)
        self.assertEqual((export.lines, export.logged_lines), (3, 2))
        data = self._read_back(export)
        self.assertEqual(len(data), export.size)
        self.assertEqual(hashlib.sha256(data).hexdigest(), export.sha256)
        self.assertNotIn(SECRET.encode(), data)
        lines = [orjson.loads(line) for line in data.splitlines()]
        self.assertEqual(
            [line["feedback_id"] for line in lines],
            [self.rated.id, self.poor.id, self.unlogged.id],
        )
        first, second, third = lines
        self.assertEqual(
            (first["rating"], first["comment"], first["data"]),
            (5, "right", {"label": "cat"}),
        )
        self.assertEqual(
            (first["version_id"], first["deployment_id"], first["environment"]),
            (self.version.id, self.deployment.id, "staging"),
        )
        for line, request_id in ((first, "r1"), (second, "r2")):
            logged = self.calls[request_id]
            self.assertEqual(line["request_id"], request_id)
            self.assertEqual(
                line["call"],
                {
                    "at": logged["at"],
                    "status": 200,
                    "latency_ms": 4.5,
                    "inputs": logged["inputs"][:1],
                    "outputs": logged["outputs"],
                    "parameters": {"temperature": 0.5},
                },
            )
        # r2 of the other model is not this model's call
        self.assertEqual(second["call"]["outputs"][0]["data"], [0.75])
        self.assertIsNone(third["call"])
        # the API's answer
        status, body = operations.run(
            self.env(user=self.user), "feedback.export_get", {"id": export.id}
        )
        self.assertEqual(status, 200)
        self.assertEqual(
            body["artifact"],
            {
                "uri": export.uri,
                "sha256": export.sha256,
                "size": export.size,
                "download_url": f"/mlops/feedback-exports/{export.id}/download",
            },
        )
        self.assertEqual((body["lines"], body["logged_lines"]), (3, 2))
        # the whole history when no period is given; nothing before it
        self.assertEqual(self._export().lines, 4)
        until = (self.now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.assertEqual(self._export(until=until).lines, 1)

    def test_a_new_version_names_the_export_it_was_trained_on(self):
        export = self._export()
        for named, version in ((export.id, "2.0.0"), (export.uri, "2.0.1")):
            with trap_jobs():
                trained = artifact_service.register_upload(
                    self.env(user=self.uploader),
                    {
                        "model": self.model.name,
                        "version": version,
                        "model_format": "onnx",
                        "lineage": {"feedback_export": named},
                    },
                    io.BytesIO(artifacts.onnx_mlp(seed=1)),
                    "model.onnx",
                )
            self.assertEqual(trained.feedback_export_id, export)
            self.assertEqual(
                serializers.version(trained)["lineage"]["feedback_export"], export.id
            )
        self.assertEqual(len(export.version_ids), 2)
        _status, body = operations.run(
            self.env(user=self.user), "feedback.export_get", {"id": export.id}
        )
        self.assertEqual(sorted(body["versions"]), sorted(export.version_ids.ids))
        # the SQL read path gives the same lineage as the serializer
        _status, read = operations.run(
            self.env(user=self.user), "versions.get", {"id": trained.id}
        )
        self.assertEqual(read["lineage"]["feedback_export"], export.id)
        # an export of another model, or one not finished, is refused
        queued = self.env["mlops.feedback.export"].with_user(self.uploader)
        with trap_jobs():
            queued = queued.create({"model_id": self.model.id})
        for named, refusal in (
            (queued.id, Conflict),
            (10**9, Conflict),
            ("s3://nowhere/x.jsonl", Conflict),
            (True, InvalidInput),
            (0, InvalidInput),
            ("", InvalidInput),
        ):
            with self.assertRaises(refusal, msg=named), trap_jobs():
                artifact_service.register_upload(
                    self.env(user=self.uploader),
                    {
                        "model": self.model.name,
                        "version": "3.0.0",
                        "model_format": "onnx",
                        "lineage": {"feedback_export": named},
                    },
                    io.BytesIO(artifacts.onnx_mlp(seed=2)),
                    "model.onnx",
                )
        other = self.env["mlops.model.version"].search(
            [("model_id.name", "=", "other model")]
        )
        with self.assertRaises(ValidationError):
            other.sudo().feedback_export_id = export

    def test_refusals_change_nothing(self):
        Export = self.env["mlops.feedback.export"]
        before = Export.search_count([])
        for period, refusal in (
            (
                {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                Conflict,
            ),
            ({"since": "yesterday"}, InvalidInput),
            ({"until": 5}, InvalidInput),
            ({"model_id": 10**9}, NotFound),
            ({"model_id": None}, InvalidInput),
            ({"format": "csv"}, InvalidInput),
        ):
            with self.assertRaises(refusal, msg=period), trap_jobs() as trap:
                operations.run(
                    self.env(user=self.uploader),
                    "feedback.export",
                    {"model_id": self.model.id, **period},
                )
            trap.assert_jobs_count(0)
        with self.assertRaises(AccessError):
            operations.run(
                self.env(user=self.outsider),
                "feedback.export",
                {"model_id": self.model.id},
            )
        self.assertEqual(Export.search_count([]), before)
        # what the platform writes is refused to every role
        export = self._export()
        for who in (self.uploader, self.approver, self.manager):
            for values in (
                {"state": "queued"},
                {"uri": "s3://elsewhere/x"},
                {"model_id": self.model.id},
                {"since": fields.Datetime.now()},
            ):
                with self.assertRaises(AccessError):
                    export.with_user(who).write(values)
        with self.assertRaises(LifecycleAccessError), trap_jobs():
            Export.with_user(self.uploader).create(
                {"model_id": self.model.id, "state": "done"}
            )
        self.assertEqual(export.state, "done")

    def test_a_store_out_of_reach_is_tried_again_then_fails_the_export(self):
        with trap_jobs():
            export = feedback_exports.request(self.env(user=self.uploader), self.model)
        store = type(self.env["mlops.storage.backend"]._get_default()._get_store())
        down = StorageUnavailable("the store is down")
        platform = export.sudo()
        with patch.object(store, "put_stream", side_effect=down):
            with self.assertRaises(RetryableJobError):
                feedback_exports.build(platform)
            self.assertEqual(export.state, "queued")
            with patch.object(
                feedback_exports.jobs, "is_last_attempt", return_value=True
            ):
                result = feedback_exports.build(platform)
        self.assertIn("stayed unreachable", result)
        self.assertEqual(export.state, "failed")
        self.assertIn("the store is down", export.error)
        # a finished export is not built again
        self.assertEqual(feedback_exports.build(platform), "already failed")
