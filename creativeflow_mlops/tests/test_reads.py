# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The hot reads built in SQL (``services.reads``) say exactly what the ORM
serializer says of the same records, in every shape a version takes, and
cost one statement whatever they carry."""

from datetime import datetime

from odoo.tests import tagged

from ..exceptions import NotFound
from ..services import operations, reads, serializers
from .common import MlopsCase


@tagged("post_install", "-at_install")
class TestReads(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bare = cls._new_version(parameters=None, metrics=None, description="")
        cls.full = cls._new_version(
            description="the one with everything",
            parameters={"lr": 0.001, "layers": [1, 2]},
            metrics={"f1": 0.9, "nested": {"a": None}},
            input_schema=[{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            output_schema={"outputs": []},
            source_run="run-42",
            dataset="reviews@3",
            git_commit="a" * 40,
            parent_version_id=cls.bare.id,
            artifact_size=123456789012,
            artifact_sha256="b" * 64,
            artifact_filename="model.onnx",
        )
        # JSON's falsy values read as the serializer's defaults
        cls.falsy = cls._new_version(
            parameters=[], metrics=0, input_schema={}, output_schema=""
        )
        target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        Deployment = cls.env["mlops.deployment"].sudo()
        Deployment.create(
            [
                {
                    "version_id": cls.full.id,
                    "environment": "staging",
                    "target_id": target.id,
                    "endpoint_url": "http://127.0.0.1:1/m/x",
                    "message": "up",
                    "replicas": 2,
                    "traffic_percent": 100,
                    "gpu": 1,
                    "gpu_type": "NVIDIA-A10G",
                    "memory": "8Gi",
                },
                {"version_id": cls.full.id, "environment": "production"},
            ]
        )
        Result = cls.env["mlops.validation.result"].sudo()
        for round_, scan, state in ((1, "format", "failed"), (2, "format", "passed")):
            Result.create(
                {
                    "version_id": cls.full.id,
                    "scan_type": scan,
                    "state": state,
                    "round": round_,
                    "summary": "" if round_ == 2 else "not ONNX",
                    # with and without microseconds
                    "started_at": datetime(2026, 1, 2, 3, 4, 5, 6),
                    "finished_at": datetime(2026, 1, 2, 3, 4, 6),
                }
            )
        # set by the platform when it stores the artifact
        cls.full.sudo().write(
            {"artifact_uri": "s3://bucket/key", "artifact_object_key": "models/key"}
        )
        cls.env.flush_all()
        cls.env.cr.execute(
            "UPDATE mlops_model_version SET artifact_verified_at = %s WHERE id = %s",
            [datetime(2026, 5, 6, 7, 8, 9, 120000), cls.full.id],
        )
        cls.env.invalidate_all()

    def test_a_version_reads_as_the_serializer_says(self):
        env = self.env(user=self.user)
        for version in (self.bare, self.full, self.falsy):
            with self.subTest(version=version.version):
                self.assertEqual(
                    reads.version(env, version.id),
                    serializers.version(version.with_env(env), full=True),
                )
        answer = reads.version(env, self.full.id)
        self.assertEqual(
            answer["artifact"]["verified_at"], "2026-05-06T07:08:09.120000Z"
        )
        self.assertEqual(
            [r["started_at"] for r in answer["validations"]],
            ["2026-01-02T03:04:05.000006Z"] * 2,
        )
        self.assertEqual([r["round"] for r in answer["validations"]], [2, 1])
        self.assertEqual(answer["deployments"][1]["target"], "local")
        self.assertEqual(
            answer["deployments"][1]["resources"],
            {"gpu": 1, "gpu_type": "NVIDIA-A10G", "memory": "8Gi"},
        )
        self.assertEqual(answer["deployments"][0]["resources"], {})
        self.assertEqual(answer["lineage"]["parent_version"], self.bare.version)
        self.assertEqual(reads.version(env, self.falsy.id)["parameters"], {})

    def test_a_page_reads_as_the_serializer_says(self):
        env = self.env(user=self.user)
        domain = [("model_id", "=", self.model.id)]
        expected = (
            self.env["mlops.model.version"]
            .with_env(env)
            .search(domain, order="id desc")
        )
        page = reads.versions_page(env, domain, 2, 1)
        self.assertEqual(page["total"], len(expected))
        self.assertEqual(page["items"], [serializers.version(v) for v in expected[1:3]])
        past = reads.versions_page(env, domain, 2, 1000)
        self.assertEqual(past, {"items": [], "total": len(expected)})

    def test_another_companys_version_is_not_found(self):
        other = self.env["res.company"].create({"name": "Reads Other Co"})
        foreign_model = self.env["mlops.model"].create(
            {"name": "reads-foreign", "company_id": other.id}
        )
        foreign = self.env["mlops.model.version"].create(
            {"model_id": foreign_model.id, "version": "1.0.0", "model_format": "onnx"}
        )
        env = self.env(user=self.user)
        self.assertIsNone(reads.version(env, foreign.id))
        with self.assertRaises(NotFound):
            operations.run(env, "versions.get", {"id": foreign.id})
        page = reads.versions_page(env, [("model_id", "=", foreign_model.id)], 50, 0)
        self.assertEqual(page, {"items": [], "total": 0})

    def test_one_statement_whatever_the_version_carries(self):
        env = self.env(user=self.user)
        # warm: the rights and rules caches of a running server
        operations.run(env, "versions.get", {"id": self.bare.id})
        operations.run(env, "versions.list", {"model_id": self.model.id})
        for version in (self.bare, self.full):
            before = self.cr.sql_log_count
            operations.run(env, "versions.get", {"id": version.id})
            self.assertEqual(self.cr.sql_log_count - before, 1, version.version)
        before = self.cr.sql_log_count
        operations.run(env, "versions.list", {"model_id": self.model.id})
        # the model through the rules, then the page and its total
        self.assertEqual(self.cr.sql_log_count - before, 2)
