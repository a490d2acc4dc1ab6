# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

from odoo import api, fields, models

from ..lifecycle import VERSION_STATES
from ..services import settings

RECENT_DAYS = 7
LIST_LIMIT = 10


class MlopsDashboard(models.AbstractModel):
    """What the app's landing page shows, read with the user's own rights:
    a user sees the counts, failures and messages of the records their
    groups, record rules and companies let them read, nothing else."""

    _name = "mlops.dashboard"
    _description = "MLOps Overview"

    @api.model
    def get_dashboard_data(self):
        return {
            "versions_by_state": self._versions_by_state(),
            "failing": self._failing_validations(),
            "stuck": self._stuck_validations(),
            "recent": self._recent_activity(),
            "live": self._live_health(),
        }

    @api.model
    def _live_health(self):
        """Each live deployment's last hour as monitoring kept it: requests,
        5xx rate, worst p95, its SLO and drift; breaching ones first."""
        deployments = self.env["mlops.deployment"].search(
            [("state", "in", ("active", "rolling_out_canary"))], limit=LIST_LIMIT * 2
        )
        since = fields.Datetime.now() - timedelta(hours=1)
        figures = {
            deployment.id: (requests, errors, p95)
            for deployment, requests, errors, p95 in self.env[
                "mlops.deployment.metric"
            ]._read_group(
                [("deployment_id", "in", deployments.ids), ("at", ">=", since)],
                ["deployment_id"],
                ["requests:sum", "errors_5xx:sum", "p95_ms:max"],
            )
        }
        rows = []
        for deployment in deployments:
            requests, errors, p95 = figures.get(deployment.id, (0, 0, None))
            rows.append(
                {
                    "id": deployment.id,
                    "name": deployment.display_name,
                    "environment": deployment.environment,
                    "requests": requests,
                    "error_rate": round(100 * errors / requests, 2) if requests else 0,
                    "p95_ms": round(p95) if p95 else None,
                    "slo": deployment.slo_state or "",
                    "drift": deployment.drift
                    if deployment.drift in ("drifted", "missing")
                    else "",
                }
            )
        rows.sort(key=lambda r: (r["slo"] != "breached", not r["drift"], r["name"]))
        return rows[:LIST_LIMIT]

    @api.model
    def _versions_by_state(self):
        counts = dict(
            self.env["mlops.model.version"]._read_group([], ["state"], ["__count"])
        )
        return [
            {"state": state, "label": label, "count": counts.get(state, 0)}
            for state, label in VERSION_STATES
        ]

    @api.model
    def _failing_validations(self):
        """The latest failed scans of the last week."""
        since = fields.Datetime.now() - timedelta(days=RECENT_DAYS)
        results = self.env["mlops.validation.result"].search(
            [("state", "=", "failed"), ("finished_at", ">=", since)],
            order="finished_at desc, id desc",
            limit=LIST_LIMIT,
        )
        labels = dict(results._fields["scan_type"].selection)
        return [
            {
                "id": result.id,
                "version_id": result.version_id.id,
                "version": result.version_id.display_name,
                "scan_type": labels.get(result.scan_type, result.scan_type),
                "blocking": result.blocking,
                "summary": (result.summary or "")[:300],
                "finished_at": fields.Datetime.to_string(result.finished_at),
            }
            for result in results
        ]

    @api.model
    def _stuck_validations(self):
        """Versions validating for longer than the watchdog's grace: their
        round has a job waiting, running for long, or lost."""
        grace = settings.get(self.env, "watchdog_grace_minutes")
        before = fields.Datetime.now() - timedelta(minutes=grace)
        versions = self.env["mlops.model.version"].search(
            [("state", "=", "validating"), ("write_date", "<", before)],
            order="write_date",
            limit=LIST_LIMIT,
        )
        return [
            {
                "id": version.id,
                "version": version.display_name,
                "since": fields.Datetime.to_string(version.write_date),
                "round": version.validation_round,
            }
            for version in versions
        ]

    @api.model
    def _recent_activity(self):
        messages = self.env["mail.message"].search(
            [
                ("model", "in", ("mlops.model.version", "mlops.deployment")),
                ("message_type", "in", ("comment", "notification")),
            ],
            order="id desc",
            limit=LIST_LIMIT,
        )
        return [
            {
                "id": message.id,
                "model": message.model,
                "res_id": message.res_id,
                "record": message.record_name or "",
                "author": message.author_id.name or "",
                "date": fields.Datetime.to_string(message.date),
                "preview": message.preview or self._tracking_text(message),
            }
            for message in messages
        ]

    @api.model
    def _tracking_text(self, message):
        """A state change's message has no body: say what changed, in the
        fields the user may read (as the chatter does)."""
        values = message.sudo().tracking_value_ids._filter_has_field_access(self.env)
        return "; ".join(
            f"{value.field_id.field_description}: "
            f"{value.old_value_char or ''} → {value.new_value_char or ''}"
            for value in values
        )
