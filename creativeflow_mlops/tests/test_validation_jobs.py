# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import io
import json
import os
from unittest.mock import patch

from odoo.exceptions import ValidationError
from odoo.tools import mute_logger

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.tests.common import trap_jobs

from ..exceptions import BackendUnavailable, Conflict, InvalidInput, MalformedJson
from ..scanners import pickle_scan
from ..services import artifacts as service
from . import artifacts
from .common import MlopsCase
from .common_storage import s3_backend


class TestValidationJobs(MlopsCase):
    def _upload(self, data, filename, model_format, user=None, **metadata):
        env = self.env(user=user or self.uploader)
        metadata = {
            "model": "sentiment",
            "version": f"2.{self._version_seq}.0",
            "model_format": model_format,
            **metadata,
        }
        type(self)._version_seq += 1
        return service.register_upload(env, metadata, io.BytesIO(data), filename)

    def _results(self, version):
        return {r.scan_type: r for r in version.validation_result_ids}

    def test_onnx_upload_is_validated_by_queued_jobs(self):
        with trap_jobs() as trap:
            version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
            self.assertEqual(version.state, "validating")
            self.assertEqual(version.artifact_size, len(artifacts.onnx_bytes()))
            self.assertRegex(
                version.artifact_uri,
                r"^local://models/c\d+/sentiment/2\.\d+\.0/model\.onnx$",
            )
            # integrity first; format, functional_io, performance_benchmark and
            # content_safety wait for it; the settle job waits for them all
            trap.assert_jobs_count(6)
            self.assertEqual(
                {job.channel for job in trap.enqueued_jobs}, {"root.mlops.validation"}
            )
            first = [job for job in trap.enqueued_jobs if not job.depends_on]
            self.assertEqual(len(first), 1)
            self.assertEqual(first[0].recordset.scan_type, "integrity")
            settle = [
                j for j in trap.enqueued_jobs if j.method_name == "_validation_settle"
            ]
            self.assertEqual(len(settle), 1)
            scans = set(trap.enqueued_jobs) - set(first) - set(settle)
            self.assertEqual(len(scans), 4)
            for job in scans:
                self.assertEqual(job.depends_on, set(first))
            self.assertEqual(settle[0].depends_on, scans)
            self.assertEqual(settle[0].args, (version.validation_round,))
            # the upload's own transaction ends here (its tracking is written)
            self.env.cr.precommit.run()
            trap.perform_enqueued_jobs()
        results = self._results(version)
        self.assertEqual(version.state, "validated")
        self.assertEqual(results["integrity"].state, "passed")
        self.assertIn(version.artifact_sha256, results["integrity"].summary)
        self.assertTrue(version.artifact_verified_at)
        self.assertEqual(results["format"].state, "passed")
        self.assertEqual(results["functional_io"].state, "passed")
        self.assertEqual(results["performance_benchmark"].state, "passed")
        self.assertFalse(results["performance_benchmark"].blocking)
        self.assertEqual(results["content_safety"].state, "skipped")
        self.assertIn("no content-safety checker", results["content_safety"].summary)
        self.assertGreater(version.metrics["benchmark"]["latency_p50_ms"], 0)
        # each scan wrote its JSON report to the store
        store = version.storage_backend_id._get_store()
        key = results["format"].report_uri.removeprefix("local://")
        with store.open(key) as report:
            self.assertEqual(json.load(report)["state"], "passed")
        self.assertIn("Validation passed", version.message_ids[0].body)
        todo = version.activity_ids.filtered(lambda a: a.user_id == self.uploader)
        self.assertIn("Validated", todo.summary)
        # the verdict, its state change and its activity come from the
        # platform, not from the uploader whose upload queued the jobs
        bot = self.env.ref("base.user_root")
        self.assertEqual(version.message_ids[0].author_id, bot.partner_id)
        self.env.cr.precommit.run()  # tracking messages are written at commit
        validated = version.message_ids.filtered(
            lambda m: "Validated" in m.tracking_value_ids.mapped("new_value_char")
        )
        self.assertEqual(validated.author_id, bot.partner_id)
        self.assertEqual(todo.create_uid, bot)

    def test_malicious_pickle_fails_validation(self):
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.malicious_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        results = self._results(version)
        self.assertEqual(version.state, "validation_failed")
        self.assertEqual(results["security_artifact"].state, "failed")
        self.assertIn("posix.system", results["security_artifact"].summary)
        self.assertIn("Validation failed", version.message_ids[0].body)
        todo = version.activity_ids.filtered(lambda a: a.user_id == self.uploader)
        self.assertIn("Fix and upload again", todo.summary)

    def test_benign_pickle_passes(self):
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.benign_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        self.assertEqual(self._results(version)["security_artifact"].state, "passed")
        # the local runtime runs ONNX only: no inference is attempted
        self.assertNotIn("functional_io", self._results(version))

    def test_policy_makes_a_scan_only_warn(self):
        self.env["mlops.validation.policy"].create(
            {"model_format": "pickle", "scan_type": "security_artifact", "mode": "warn"}
        )
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.malicious_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        self.assertEqual(self._results(version)["security_artifact"].state, "failed")

    def test_revalidation_starts_a_new_round_and_old_jobs_give_up(self):
        with trap_jobs() as trap:
            version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
            first_round = trap.enqueued_jobs[:]
            trap.perform_enqueued_jobs()
        self.assertEqual(version.validation_round, 1)
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate(["format"])
            trap.assert_jobs_count(3)  # integrity, then format, then settle
            self.assertEqual(version.validation_round, 2)
            # a stale job of round 1 is no longer relevant
            self.assertIn("no longer", first_round[0].perform())
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        self.assertEqual(len(version.validation_result_ids), 7)  # 5 + 2

    def test_integrity_catches_an_object_changed_in_the_store(self):
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.benign_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        # someone with access to the bucket swaps the bytes, same length
        path = version.storage_backend_id._get_store().local_path(
            version.artifact_object_key
        )
        tampered = artifacts.malicious_pickle_bytes()
        with open(path, "r+b") as handle:
            handle.write(tampered[: version.artifact_size])
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate()
            trap.perform_enqueued_jobs()
        results = {
            r.scan_type: r
            for r in version.validation_result_ids.filtered(lambda r: r.round == 2)
        }
        self.assertEqual(version.state, "validation_failed")
        self.assertEqual(results["integrity"].state, "failed")
        self.assertIn("SHA-256", results["integrity"].summary)
        # the other scans did not look at bytes that are not the artifact
        for scan_type in set(results) - {"integrity"}:
            self.assertEqual(results[scan_type].state, "skipped")
            self.assertIn("integrity", results[scan_type].summary)
        self.assertIn("integrity", version.message_ids[0].body)

    def test_partial_revalidation_cannot_clear_a_failure(self):
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.malicious_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate(["content_safety"])
            # integrity always reads the bytes back first
            self.assertEqual(
                set(
                    version.validation_result_ids.filtered(
                        lambda r: r.round == 2
                    ).mapped("scan_type")
                ),
                {"integrity", "content_safety"},
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        self.assertIn("from round 1", version.message_ids[0].body)
        # a policy that only warns, and the scan run again: now it passes
        self.env["mlops.validation.policy"].create(
            {"model_format": "pickle", "scan_type": "security_artifact", "mode": "warn"}
        )
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate(["security_artifact"])
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")

    def test_unknown_scan_types_are_refused(self):
        with trap_jobs() as trap:
            version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
            trap.perform_enqueued_jobs()
        for scan_types in (["nope"], [], "format", [1]):
            with self.assertRaises(InvalidInput):
                version.with_user(self.manager).action_validate(scan_types)
        self.assertEqual(version.state, "validated")

    def test_a_scanner_crashing_fails_closed(self):
        with (
            trap_jobs() as trap,
            patch.object(pickle_scan, "scan_file", side_effect=RuntimeError("boom")),
        ):
            version = self._upload(
                artifacts.benign_pickle_bytes(), "model.pkl", "pickle"
            )
            with mute_logger(
                "odoo.addons.creativeflow_mlops.models.mlops_validation_result"
            ):
                trap.perform_enqueued_jobs()
        result = self._results(version)["security_artifact"]
        self.assertEqual(result.state, "failed")
        self.assertIn("RuntimeError: boom", result.summary)
        self.assertEqual(version.state, "validation_failed")

    def test_scans_read_only_the_bytes_that_were_registered(self):
        with s3_backend(self.env, default=True) as backend:
            with trap_jobs() as trap:
                version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
                # the object is swapped between the integrity check and a scan
                backend._get_store().put_bytes(
                    version.artifact_object_key, artifacts.malicious_pickle_bytes()
                )
                format_job = next(
                    job
                    for job in trap.enqueued_jobs
                    if job.method_name == "_run_scan"
                    and job.recordset.scan_type == "format"
                )
                format_job.perform()
            result = self._results(version)["format"]
            self.assertEqual(result.state, "failed")
            self.assertIn("changed in the store", result.summary)

    def test_scans_skipped_by_a_failed_integrity_check_count_as_failed(self):
        data = artifacts.benign_pickle_bytes()
        with trap_jobs() as trap:
            version = self._upload(data, "model.pkl", "pickle")
            trap.perform_enqueued_jobs()
        path = version.storage_backend_id._get_store().local_path(
            version.artifact_object_key
        )
        path.write_bytes(artifacts.malicious_pickle_bytes())
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate()
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        # the bytes are put back and only integrity runs again: the security
        # scan skipped in round 2 has not vouched for anything yet
        path.write_bytes(data)
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate(["integrity"])
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate()
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")

    def test_a_scan_turned_off_no_longer_counts(self):
        with trap_jobs() as trap:
            version = self._upload(
                artifacts.malicious_pickle_bytes(), "model.pkl", "pickle"
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        self.env["mlops.validation.policy"].create(
            {"model_format": "pickle", "scan_type": "security_artifact", "mode": "off"}
        )
        with trap_jobs() as trap:
            version.with_user(self.manager).action_validate()
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")

    def test_integrity_cannot_be_turned_off(self):
        with self.assertRaises(ValidationError):
            self.env["mlops.validation.policy"].create(
                {"model_format": "onnx", "scan_type": "integrity", "mode": "off"}
            )
        self.env["mlops.validation.policy"].create(
            {"model_format": "onnx", "scan_type": "integrity", "mode": "warn"}
        )

    def test_one_upload_at_a_time_per_object_key(self):
        backend = self.env["mlops.storage.backend"]._get_default()
        service.reserve_key(self.env, backend, "models/x/1/a.bin")
        with self.env.registry.cursor() as cr:
            other = self.env(cr=cr)
            with self.assertRaises(Conflict):
                service.reserve_key(other, backend, "models/x/1/a.bin")
            service.reserve_key(other, backend, "models/x/1/b.bin")

    def test_identity_key_prevents_duplicate_jobs(self):
        version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
        result = version.validation_result_ids[0]
        jobs = self.env["queue.job"].search(
            [("func_string", "like", f"({result.id},)")]
        )
        self.assertEqual(len(jobs), 1)
        result.with_delay(identity_key=f"mlops-scan-{result.id}")._run_scan()
        jobs = self.env["queue.job"].search(
            [("func_string", "like", f"({result.id},)")]
        )
        self.assertEqual(len(jobs), 1)

    def test_unreachable_store_is_retried(self):
        with s3_backend(self.env, default=True) as backend:
            with trap_jobs() as trap:
                version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
                self.assertTrue(version.artifact_uri.startswith("s3://"))
                backend.endpoint = "127.0.0.1:1"
                # the integrity job, which every other one waits for
                (job,) = (j for j in trap.enqueued_jobs if not j.depends_on)
                self.assertEqual(job.max_retries, 8)
                with self.assertRaises(RetryableJobError) as caught:
                    job.perform()
                # paced by the job function's retry pattern, not a fixed delay
                self.assertIsNone(caught.exception.seconds)
            result = version.validation_result_ids.filtered(
                lambda r: r.scan_type == "format"
            )
            self.assertEqual(version.state, "validating")
            self.assertIn(result.state, ("pending", "running"))

    def test_store_still_unreachable_on_the_last_try_fails_the_scan(self):
        with s3_backend(self.env, default=True) as backend:
            version = self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx")
            backend.endpoint = "127.0.0.1:1"
            result = version.validation_result_ids.filtered(
                lambda r: r.scan_type == "format"
            )
            job = self.env["queue.job"].search(
                [("func_string", "like", f"({result.id},)")]
            )
            job.write({"retry": job.max_retries - 1})
            summary = result.with_context(job_uuid=job.uuid)._run_scan()
            self.assertIn("stayed unreachable", summary)
            self.assertEqual(result.state, "failed")
            for other in version.validation_result_ids - result:
                other.with_context(job_uuid=job.uuid)._run_scan()
            # the round's verdict is its settle job's
            self.assertEqual(version.state, "validating")
            version._validation_settle(version.validation_round)
            self.assertEqual(version.state, "validation_failed")

    def test_upload_to_a_dead_store_leaves_nothing(self):
        with s3_backend(self.env, code="dead", endpoint="127.0.0.1:1", default=True):
            count = self.env["mlops.model.version"].search_count([])
            with self.assertRaises(BackendUnavailable):
                self._upload(
                    artifacts.onnx_bytes(), "model.onnx", "onnx", model="fresh-model"
                )
            self.assertEqual(self.env["mlops.model.version"].search_count([]), count)
            self.assertFalse(
                self.env["mlops.model"].search([("name", "=", "fresh-model")])
            )

    def test_a_failure_after_storing_removes_the_object(self):
        store = self.env["mlops.storage.backend"]._get_default()._get_store()
        before = sorted(p for p in store.root.rglob("*") if p.is_file())
        with (
            patch.object(
                type(self.env["mlops.model.version"]),
                "_enqueue_validation",
                side_effect=RuntimeError("the queue is broken"),
            ),
            self.assertRaises(RuntimeError),
        ):
            self._upload(artifacts.onnx_bytes(), "model.onnx", "onnx", model="lost")
        self.assertEqual(
            sorted(p for p in store.root.rglob("*") if p.is_file()), before
        )
        self.assertFalse(self.env["mlops.model"].search([("name", "=", "lost")]))

    def test_upload_refusals(self):
        data = artifacts.onnx_bytes()
        self._upload(data, "model.onnx", "onnx", version="5.0.0")
        with self.assertRaises(Conflict):
            self._upload(data, "model.onnx", "onnx", version="5.0.0")
        with self.assertRaises(InvalidInput) as caught:
            self._upload(data, "model.onnx", "tensorflow_lite", version="../x")
        self.assertEqual(set(caught.exception.details), {"model_format", "version"})
        with self.assertRaises(InvalidInput):
            self._upload(data, "..", "onnx", version="5.0.1")
        with self.assertRaises(MalformedJson):
            service.register_upload(self.env, "{not json", io.BytesIO(data), "m.onnx")
        with self.assertRaises(InvalidInput):
            service.register_upload(
                self.env, {"model": "x"}, io.BytesIO(data), "m.onnx"
            )

    def test_browser_upload_on_a_draft(self):
        import base64

        version = self._new_version(model_format="onnx", artifact_sha256=False)
        with trap_jobs() as trap:
            version.with_user(self.uploader).write(
                {
                    "artifact_filename": "m.onnx",
                    "artifact_upload": base64.b64encode(artifacts.onnx_bytes()),
                }
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        action = version.action_download_artifact()
        self.assertEqual(action["url"], f"/mlops/artifacts/{version.id}/download")
        self.assertTrue(
            os.path.exists(
                version.storage_backend_id._get_store().local_path(
                    version.artifact_object_key
                )
            )
        )
