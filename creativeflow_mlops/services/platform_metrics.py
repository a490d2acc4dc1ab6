"""The addon's own figures in Prometheus' text format (``GET
/platform/metrics``, for a Prometheus scraping with an API key): versions
by state, live deployments, deployments breaching an SLO or drifted, the
queue's jobs, validation and deployment durations, and each live
deployment's last hour as kept by monitoring. What the caller may read:
its companies' records (the queue is the platform's, counted for all).
``docs/monitoring/grafana-dashboard.json`` reads these and the model
servers' own metrics."""

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

from odoo import fields

from .serving import SERVING

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Figures:
    """A collector over one environment, read when Prometheus asks."""

    def __init__(self, env):
        self.env = env

    def collect(self):  # noqa: C901 - one figure after the other
        env = self.env
        versions = GaugeMetricFamily(
            "mlops_versions", "Model versions by state.", labels=["state"]
        )
        for group in env["mlops.model.version"].read_group(
            [], ["state"], ["state"], lazy=False
        ):
            versions.add_metric([group["state"]], group["__count"])
        yield versions

        Deployment = env["mlops.deployment"]
        live = GaugeMetricFamily(
            "mlops_deployments_live",
            "Deployments serving, by environment and target.",
            labels=["environment", "target"],
        )
        for group in Deployment.read_group(
            [("state", "in", SERVING)],
            ["environment", "target_id"],
            ["environment", "target_id"],
            lazy=False,
        ):
            target = group["target_id"][1] if group["target_id"] else ""
            live.add_metric([group["environment"], target], group["__count"])
        yield live
        breached = GaugeMetricFamily(
            "mlops_deployments_slo_breached", "Live deployments breaching their SLO."
        )
        breached.add_metric(
            [],
            Deployment.search_count(
                [("state", "in", SERVING), ("slo_state", "=", "breached")]
            ),
        )
        yield breached
        drifted = GaugeMetricFamily(
            "mlops_deployments_drifted",
            "Live deployments whose target differs from what Odoo applied.",
        )
        drifted.add_metric(
            [],
            Deployment.search_count(
                [("state", "in", SERVING), ("drift", "in", ("drifted", "missing"))]
            ),
        )
        yield drifted

        jobs = GaugeMetricFamily(
            "mlops_queue_jobs",
            "The addon's queued jobs not done, by channel and state.",
            labels=["channel", "state"],
        )
        for group in (
            env["queue.job"]
            .sudo()
            .read_group(
                [
                    ("channel", "=like", "root.mlops%"),
                    (
                        "state",
                        "in",
                        ("wait_dependencies", "pending", "enqueued", "started"),
                    ),
                ],
                ["channel", "state"],
                ["channel", "state"],
                lazy=False,
            )
        ):
            jobs.add_metric([group["channel"], group["state"]], group["__count"])
        yield jobs

        since = fields.Datetime.now() - timedelta(days=1)
        checks = env["mlops.validation.result"].search(
            [("finished_at", ">=", since), ("duration", ">", 0)]
        )
        yield SummaryMetricFamily(
            "mlops_validation_duration_seconds",
            "Validation checks finished in the last day.",
            count_value=len(checks),
            sum_value=sum(checks.mapped("duration")),
        )
        runs = env["mlops.pipeline.run"].search(
            [("finished_at", ">=", since), ("started_at", "!=", False)]
        )
        yield SummaryMetricFamily(
            "mlops_deployment_duration_seconds",
            "Deployment pipeline runs finished in the last day, start to end.",
            count_value=len(runs),
            sum_value=sum(
                (run.finished_at - run.started_at).total_seconds() for run in runs
            ),
        )

        hour = GaugeMetricFamily(
            "mlops_deployment_last_hour",
            "A live deployment's last hour as monitoring kept it.",
            labels=["model", "version", "environment", "figure"],
        )
        for group in env["mlops.deployment.metric"].read_group(
            [("at", ">=", fields.Datetime.now() - timedelta(hours=1))],
            ["deployment_id", "requests:sum", "errors_5xx:sum", "p95_ms:max"],
            ["deployment_id"],
            lazy=False,
        ):
            deployment = Deployment.browse(group["deployment_id"][0])
            if deployment.state not in SERVING:
                continue
            labels = [
                deployment.model_id.slug,
                deployment.version_id.version,
                deployment.environment,
            ]
            hour.add_metric([*labels, "requests"], group["requests"])
            hour.add_metric([*labels, "errors_5xx"], group["errors_5xx"])
            if group["p95_ms"] is not None and group["p95_ms"] is not False:
                hour.add_metric([*labels, "p95_ms"], group["p95_ms"])
        yield hour


def exposition(env):
    """The figures ``env``'s user may read, as Prometheus text (bytes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(env))
    return generate_latest(registry)
