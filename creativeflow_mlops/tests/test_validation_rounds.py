# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The settle job and the watchdog. Here jobs are real ``queue.job``
records whose states the tests set, as a crash or an operator would leave
them; the system tier (tests/system) runs the same rounds with a real job
runner, two jobs at a time."""

import io

from odoo.addons.queue_job.tests.common import trap_jobs

from ..services import artifacts as service
from ..services import validation
from . import artifacts
from .common import MlopsCase


class TestValidationRounds(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # the tests move job states by hand: no grace to wait out
        cls.env["ir.config_parameter"].sudo().set_param(
            "creativeflow_mlops.watchdog_grace_minutes", 0
        )

    def _upload(self, data=None, filename="model.onnx", model_format="onnx"):
        type(self)._version_seq += 1
        return service.register_upload(
            self.env(user=self.uploader),
            {
                "model": "rounds",
                "version": f"9.{self._version_seq}.0",
                "model_format": model_format,
            },
            io.BytesIO(data or artifacts.onnx_bytes()),
            filename,
        )

    def _jobs(self, version):
        results = validation.round_results(version)
        keys = [validation.scan_identity(r) for r in results]
        keys.append(validation.settle_identity(version, version.validation_round))
        return self.env["queue.job"].search([("identity_key", "in", keys)])

    def _scan_job(self, version, scan_type):
        result = validation.round_results(version).filtered(
            lambda r: r.scan_type == scan_type
        )
        return self.env["queue.job"].search(
            [("identity_key", "=", validation.scan_identity(result))]
        )

    def _watchdog_lines(self, version):
        return [m.body for m in version.message_ids if "Watchdog" in (m.body or "")]

    def test_the_settle_job_settles_once(self):
        with trap_jobs() as trap:
            version = self._upload()
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        messages = len(version.message_ids)
        # a repeated settle job, or one of an older round, changes nothing
        self.assertIn("no longer open", version._validation_settle(1))
        self.assertIn("no longer open", version._validation_settle(0))
        self.assertEqual(len(version.message_ids), messages)

    def test_the_settle_job_waits_for_unfinished_scans(self):
        with trap_jobs():
            version = self._upload()
        self.assertIn("waiting for", version._validation_settle(1))
        self.assertEqual(version.state, "validating")

    def test_watchdog_leaves_rounds_with_live_jobs_alone(self):
        version = self._upload()  # real jobs, pending
        self.assertEqual(
            set(self._jobs(version).mapped("state")) - {"wait_dependencies"},
            {"pending"},
        )
        self.assertEqual(
            self.env["mlops.model.version"]._cron_validation_watchdog(), {}
        )
        self.assertEqual(version.state, "validating")
        self.assertFalse(self._watchdog_lines(version))

    def test_watchdog_waits_out_its_grace(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "creativeflow_mlops.watchdog_grace_minutes", 10
        )
        version = self._upload()
        self._jobs(version).write({"state": "done"})
        self.assertEqual(
            self.env["mlops.model.version"]._cron_validation_watchdog(), {}
        )
        self.assertEqual(version.state, "validating")

    def test_watchdog_settles_a_round_whose_release_was_lost(self):
        """Every scan done, the settle job still waiting: the process died
        between a scan's commit and the release of its dependents."""
        version = self._upload()
        for result in validation.round_results(version):
            result._run_scan()
        jobs = self._jobs(version)
        settle = jobs.filtered(lambda j: j.method_name == "_validation_settle")
        (jobs - settle).write({"state": "done"})
        self.assertEqual(settle.state, "wait_dependencies")
        outcome = self.env["mlops.model.version"]._cron_validation_watchdog()
        self.assertEqual(outcome, {version.id: "settled"})
        self.assertEqual(version.state, "validated")
        self.assertEqual(settle.state, "cancelled")
        (line,) = self._watchdog_lines(version)
        self.assertIn("no job left to run", line)

    def test_watchdog_fails_a_scan_whose_job_failed(self):
        """queue_job gave up on the integrity job (say, found dead after too
        many retries): the scans behind it wait forever. The round settles
        as failed, the integrity check naming why."""
        version = self._upload()
        self._scan_job(version, "integrity").write(
            {"state": "failed", "exc_name": "JobFoundDead"}
        )
        outcome = self.env["mlops.model.version"]._cron_validation_watchdog()
        self.assertEqual(outcome, {version.id: "settled"})
        self.assertEqual(version.state, "validation_failed")
        results = {r.scan_type: r for r in validation.round_results(version)}
        self.assertEqual(results["integrity"].state, "failed")
        self.assertIn("JobFoundDead", results["integrity"].summary)
        self.assertTrue(results["format"].gated)
        self.assertEqual(
            set(self._jobs(version).mapped("state")), {"failed", "cancelled"}
        )
        self.assertIn("integrity", self._watchdog_lines(version)[0])

    def test_watchdog_queues_lost_scans_again_once(self):
        """Jobs that are gone (deleted, cancelled by hand) are queued again,
        once; lost a second time, the scan fails."""
        with trap_jobs():
            version = self._upload()  # the jobs never reach the database
        with trap_jobs() as trap:
            outcome = self.env["mlops.model.version"]._cron_validation_watchdog()
            self.assertEqual(outcome, {version.id: "requeued"})
            trap.assert_jobs_count(6)
            self.assertIn("queued again", self._watchdog_lines(version)[0])
            results = validation.round_results(version)
            self.assertEqual(set(results.mapped("requeue_count")), {1})
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validated")
        # lost again: the second time fails the scans instead
        version.with_user(self.manager).action_validate()
        self._jobs(version).unlink()  # an operator clears the queue
        with trap_jobs():
            self.env["mlops.model.version"]._cron_validation_watchdog()
        with trap_jobs():
            outcome = self.env["mlops.model.version"]._cron_validation_watchdog()
        self.assertEqual(outcome, {version.id: "settled"})
        self.assertEqual(version.state, "validation_failed")
        integrity = validation.round_results(version).filtered(
            lambda r: r.scan_type == "integrity"
        )
        self.assertIn("lost twice", integrity.summary)

    def test_scan_messages_name_the_artifact_not_its_server_path(self):
        """onnxruntime says "Load model from <absolute path> failed": what the
        version shows (results, findings, chatter) names the file only."""
        from odoo.tools import config

        with trap_jobs() as trap:
            version = self._upload(b"not an onnx model at all", "garbage.onnx")
            trap.perform_enqueued_jobs()
        self.assertEqual(version.state, "validation_failed")
        texts = [r.summary or "" for r in version.validation_result_ids]
        texts += [
            f.get("message") or ""
            for r in version.validation_result_ids
            for f in (r.details or {}).get("findings", [])
        ]
        texts += [m.body or "" for m in version.message_ids]
        texts += version.activity_ids.mapped("summary")
        self.assertTrue(any("garbage.onnx" in t for t in texts), texts)
        for text in texts:
            self.assertNotIn(config["data_dir"], text)
            self.assertNotIn("/tmp/", text)
