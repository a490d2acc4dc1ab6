# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json
import logging

from odoo import api, fields, models

from ..adapters.storage import StorageError
from ..lifecycle import VALIDATION_STATES
from ..scanners import catalog
from ..scanners.report import ScanReport
from ..services import artifacts, jobs, settings, validation
from ..utils import scrub_paths

_logger = logging.getLogger(__name__)

# tries of a scan job, paced by the job function's retry pattern (XML)
MAX_TRIES = 8


class MlopsValidationResult(models.Model):
    _name = "mlops.validation.result"
    _inherit = ["mlops.guarded.mixin"]
    _description = "AI Model Validation Result"
    _order = "version_id, round desc, id"

    version_id = fields.Many2one(
        "mlops.model.version", required=True, ondelete="cascade", index=True
    )
    model_id = fields.Many2one(related="version_id.model_id", store=True)
    company_id = fields.Many2one(related="version_id.company_id", store=True)
    scan_type = fields.Selection(catalog.SELECTION, required=True)
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
    duration = fields.Float(
        compute="_compute_duration", store=True, aggregator="avg", string="Duration (s)"
    )
    validated_by_id = fields.Many2one("res.users", string="Requested By")
    requeue_count = fields.Integer(
        readonly=True,
        help="How often the watchdog queued this scan again after its job was "
        "lost; a second loss fails the scan.",
    )

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
        labels = dict(catalog.SELECTION)
        for result in self:
            result.display_name = (
                f"{result.version_id.display_name}: {labels.get(result.scan_type, '')}"
            )

    # ------------------------------------------------------------------
    # Job
    # ------------------------------------------------------------------

    def _scan_job(self):
        """The queue_job delayable running this scan: one per result, never
        two (identity key); its channel and retry pattern are the job
        function's (data/queue_job_data.xml)."""
        self.ensure_one()
        return self.delayable(
            identity_key=validation.scan_identity(self),
            max_retries=MAX_TRIES,
            description=self.env._(
                "%(scan)s scan of %(version)s",
                scan=self.scan_type,
                version=self.version_id.display_name,
            ),
        )._run_scan()

    def _run_scan(self):
        """Queued job: run one scan of the version's artifact and record its
        report; the round's settle job, which waits for every scan, decides
        the verdict. Idempotent: a scan already done, or a version no longer
        validated in this round, is left alone. A store that stays
        unreachable, or a scanner that crashes, fails the scan (fail
        closed) rather than leaving the round open."""
        self.ensure_one()
        result = jobs.lock(self.sudo())
        version = result.version_id
        if version.state != "validating" or result.round != version.validation_round:
            return "the version is no longer validated in this round"
        if result.state in validation.DONE_STATES:
            return f"already {result.state}"
        result.write({"state": "running", "started_at": fields.Datetime.now()})

        def scan_and_store():
            report = result._scan()
            return report, result._store_report(report)

        done, problem = jobs.attempt(
            self.env, scan_and_store, self.env._("the %s scan", result.scan_type)
        )
        report, report_uri = done or (
            ScanReport(
                result.scan_type,
                "failed",
                self.env._("%s; the artifact is not trusted", problem),
            ),
            False,
        )
        result._record(report, report_uri)
        return f"{result.scan_type}: {report.state}: {report.summary}"

    def _record(self, report, report_uri=False):
        """Settle this result from a scanner's report."""
        # messages name the artifact, never where the server keeps it
        findings = [
            {
                **vars(f),
                "message": scrub_paths(f.message),
                "location": scrub_paths(f.location),
            }
            for f in report.findings[:200]
        ]
        self.write(
            {
                "state": report.state,
                "summary": scrub_paths(report.summary),
                "details": {"findings": findings, **report.details},
                "report_uri": report_uri,
                "started_at": self.started_at or fields.Datetime.now(),
                "finished_at": fields.Datetime.now(),
            }
        )
        version = self.version_id
        if self.scan_type == "integrity":
            self._after_integrity(report)
        if self.scan_type == "format" and report.state in ("passed", "warning"):
            self._take_signature(report.details.get("signature") or {})
        if self.scan_type == "performance_benchmark" and report.state == "passed":
            version.write(
                {"metrics": {**(version.metrics or {}), "benchmark": report.details}}
            )

    def _take_signature(self, signature):
        """A version uploaded without a signature takes the model's own (as
        MLflow infers one): the registry's schema and example, and a
        client's, then name the inputs the model server checks."""
        version = self.version_id
        values = {}
        if not version.input_schema and signature.get("inputs"):
            values["input_schema"] = signature["inputs"]
        if not version.output_schema and signature.get("outputs"):
            values["output_schema"] = signature["outputs"]
        if values:
            version.write(values)

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

    def _scan(self):
        """This scan's report, from the registry's spec."""
        version = self.version_id
        spec = catalog.SPECS[self.scan_type]
        context = catalog.ScanContext(
            model_format=version.model_format,
            filename=version.artifact_filename,
            parameters=version.parameters or {},
            input_schema=version.input_schema,
            output_schema=version.output_schema,
            expected_size=version.artifact_size,
            expected_sha256=version.artifact_sha256 or None,
            runtime_memory_mb=settings.get(self.env, "runtime_memory_mb"),
            benchmark_runs=settings.get(self.env, "benchmark_runs"),
            trivy_path=settings.get(self.env, "trivy_path"),
            content_safety_url=settings.get(self.env, "content_safety_url"),
        )
        store = version.storage_backend_id._get_store()
        context.measure = lambda: store.hash_object(version.artifact_object_key)
        if not spec.needs_file or catalog.can_run(self.scan_type, context.model_format):
            return catalog.run(self.scan_type, context)
        with artifacts.local_copy(version) as path:
            context.path = path
            return catalog.run(self.scan_type, context)

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
