# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json
import logging

import psycopg2

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY

from odoo.addons.queue_job.exception import RetryableJobError

from ..adapters.storage import StorageError, StorageRefused, StorageUnavailable
from ..lifecycle import SCAN_TYPES, VALIDATION_STATES
from ..scanners import dockerfile, formats, integrity, pickle_scan, runtime
from ..scanners.report import ScanReport
from ..services import jobs

_logger = logging.getLogger(__name__)

DONE_STATES = ("passed", "failed", "warning", "skipped")
# tries of a scan job, paced by the job function's retry pattern (XML)
MAX_TRIES = 8


class MlopsValidationResult(models.Model):
    _name = "mlops.validation.result"
    _description = "AI Model Validation Result"
    _order = "version_id, round desc, id"

    version_id = fields.Many2one(
        "mlops.model.version", required=True, ondelete="cascade", index=True
    )
    model_id = fields.Many2one(related="version_id.model_id", store=True)
    company_id = fields.Many2one(related="version_id.company_id", store=True)
    scan_type = fields.Selection(SCAN_TYPES, required=True)
    round = fields.Integer(default=1, help="Validation round of the version.")
    state = fields.Selection(
        VALIDATION_STATES, default="pending", required=True, index=True
    )
    blocking = fields.Boolean(
        default=True, help="A failure of a blocking scan fails the version."
    )
    summary = fields.Text()
    details = fields.Json()
    gated = fields.Boolean(
        readonly=True,
        help="Not run because the integrity check of its round failed: counts as a "
        "failure until the scan runs again.",
    )
    report_uri = fields.Char(string="Report URI", help="Full JSON report in the store.")
    started_at = fields.Datetime()
    finished_at = fields.Datetime()
    duration = fields.Float(compute="_compute_duration", string="Duration (s)")
    validated_by_id = fields.Many2one("res.users", string="Requested By")

    @api.depends("started_at", "finished_at")
    def _compute_duration(self):
        for result in self:
            if result.started_at and result.finished_at:
                result.duration = (
                    result.finished_at - result.started_at
                ).total_seconds()
            else:
                result.duration = 0.0

    @api.depends("version_id", "scan_type")
    def _compute_display_name(self):
        labels = dict(SCAN_TYPES)
        for result in self:
            result.display_name = (
                f"{result.version_id.display_name}: {labels.get(result.scan_type, '')}"
            )

    # ------------------------------------------------------------------
    # Job
    # ------------------------------------------------------------------

    def _scan_job(self):
        """The queue_job delayable running this scan: one per result, never
        two (identity key), on the validation channel."""
        self.ensure_one()
        return self.delayable(
            channel="root.mlops.validation",
            identity_key=f"mlops-scan-{self.id}",
            max_retries=MAX_TRIES,
            description=self.env._(
                "%(scan)s scan of %(version)s",
                scan=self.scan_type,
                version=self.version_id.display_name,
            ),
        )._run_scan()

    def _run_scan(self):
        """Queued job (channel root.mlops.validation): run one scan of the
        version's artifact, store its report, settle the version when it was
        the last scan of the round. Idempotent: a scan already done, or a
        version no longer validating, is left alone."""
        self.ensure_one()
        result = self.sudo()
        version = result.version_id
        if version.state != "validating" or result.round != version.validation_round:
            return "the version is no longer validated in this round"
        if result.state in DONE_STATES:
            version._validation_finalize()
            return f"already {result.state}"
        result.write({"state": "running", "started_at": fields.Datetime.now()})
        try:
            with self.env.cr.savepoint():
                report = result._scan()
            report_uri = result._store_report(report)
        except StorageUnavailable as error:
            if not result._is_last_attempt():
                # the delay comes from the job function's retry pattern
                raise RetryableJobError(
                    f"the artifact store is unreachable: {error}"
                ) from error
            # out of retries: settle the version instead of leaving it validating
            report = ScanReport(
                result.scan_type,
                "failed",
                f"the artifact store stayed unreachable: {error}",
            )
            report_uri = False
        except StorageRefused as error:
            report = ScanReport(
                result.scan_type, "failed", f"artifact unreadable: {error}"
            )
            report_uri = False
        except psycopg2.Error as error:
            if error.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                raise  # queue_job retries it
            _logger.exception("%s scan of %s failed", result.scan_type, version)
            report = ScanReport(
                result.scan_type, "failed", f"the scan failed in the database: {error}"
            )
            report_uri = False
        except Exception as error:  # noqa: BLE001 - a scanner bug fails closed
            _logger.exception("%s scan of %s failed", result.scan_type, version)
            report = ScanReport(
                result.scan_type,
                "failed",
                f"the scanner stopped with an error ({type(error).__name__}: "
                f"{str(error)[:200]}); the artifact is not trusted",
            )
            report_uri = False
        result._record(report, report_uri)
        version._validation_finalize()
        return f"{result.scan_type}: {report.state}: {report.summary}"

    def _record(self, report, report_uri=False):
        """Settle this result from a scanner's report."""
        self.write(
            {
                "state": report.state,
                "summary": report.summary,
                "details": {
                    "findings": [vars(f) for f in report.findings][:200],
                    **report.details,
                },
                "report_uri": report_uri,
                "started_at": self.started_at or fields.Datetime.now(),
                "finished_at": fields.Datetime.now(),
            }
        )
        version = self.version_id
        if self.scan_type == "integrity":
            self._after_integrity(report)
        if self.scan_type == "performance_benchmark" and report.state == "passed":
            version.write(
                {"metrics": {**(version.metrics or {}), "benchmark": report.details}}
            )

    def _after_integrity(self, report):
        """Record what the integrity check measured; when it failed and
        blocks, the round's other scans are not run on those bytes."""
        version = self.version_id
        if report.state == "passed":
            values = {"artifact_verified_at": fields.Datetime.now()}
            if not version.artifact_sha256:
                values["artifact_sha256"] = report.details["sha256"]
            version.write(values)
        elif self.blocking:
            others = version.validation_result_ids.filtered(
                lambda r: r.round == self.round and r.state == "pending"
            )
            others.write(
                {
                    "state": "skipped",
                    "gated": True,
                    "summary": self.env._(
                        "not run: the artifact failed its integrity check"
                    ),
                }
            )

    def _is_last_attempt(self):
        """Whether the queued job running this has no retry left."""
        return jobs.is_last_attempt(self.env)

    def _scan(self):
        version = self.version_id
        settings = self.env["ir.config_parameter"].sudo()
        if self.scan_type == "content_safety":
            checker = settings.get_param("creativeflow_mlops.content_safety_url")
            if not checker:
                return ScanReport.skipped(
                    self.scan_type, "no content-safety checker is configured"
                )
            return ScanReport.skipped(
                self.scan_type, f"the checker at {checker} is not supported yet"
            )
        if self.scan_type in ("functional_io", "performance_benchmark") and (
            version.model_format != "onnx"
        ):
            return ScanReport.skipped(
                self.scan_type,
                f"the local runtime runs ONNX models only, not {version.model_format}",
            )
        if self.scan_type == "integrity":
            store = version.storage_backend_id._get_store()
            size, sha256 = store.hash_object(version.artifact_object_key)
            return integrity.verify(
                size, sha256, version.artifact_size, version.artifact_sha256
            )
        with version._artifact_path() as path:
            name = version.artifact_filename
            if self.scan_type == "format":
                return formats.scan(path, version.model_format, name)
            if self.scan_type == "security_artifact":
                return pickle_scan.scan_file(path, name)
            if self.scan_type == "security_container":
                trivy = settings.get_param("creativeflow_mlops.trivy_path")
                image = (version.parameters or {}).get("image")
                return dockerfile.scan(path, name, image=image, trivy=trivy)
            # the model runs in a child process with a memory cap, not here
            memory = int(
                settings.get_param("creativeflow_mlops.runtime_memory_mb", 8192)
            )
            if self.scan_type == "functional_io":
                return runtime.run_isolated(
                    "functional_io",
                    path,
                    memory_mb=memory,
                    input_schema=version.input_schema,
                    output_schema=version.output_schema,
                )
            runs = int(settings.get_param("creativeflow_mlops.benchmark_runs", 50))
            return runtime.run_isolated(
                "benchmark",
                path,
                memory_mb=memory,
                runs=max(2, runs),
                input_schema=version.input_schema,
            )

    def _store_report_quietly(self, report):
        try:
            return self._store_report(report)
        except StorageError as error:
            _logger.warning("storing the %s report: %s", self.scan_type, error)
            return False

    def _store_report(self, report):
        version = self.version_id
        if not version.artifact_object_key:
            return False
        key = (
            f"{version.artifact_object_key}.reports/{self.round}-{self.scan_type}.json"
        )
        stored = version.storage_backend_id._get_store().put_bytes(
            key,
            json.dumps(report.to_dict(), indent=1, default=str).encode(),
            "application/json",
        )
        return stored.uri
