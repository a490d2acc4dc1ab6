"""Monitoring (docs/reference/monitoring.md): how live deployments serve,
kept, and the SLOs that watch it.

- ``schedule`` (a cron, every minute) queues one ``collect`` job per target
  with live deployments, its identity the target and the minute: never on a
  request's path, never two for one minute.
- ``collect`` asks the target for each deployment's window since its last
  reading (``Target.window``: answers by status class, latency quantiles,
  CPU and memory where the target says) and keeps it as a minute bucket
  (``mlops.deployment.metric``); the reading becomes the next window's
  start. A target out of reach loses nothing: the next pass's window
  starts from the last reading it had. Then the deployments' SLOs are
  evaluated over their windows.
- ``rollup`` (a cron, hourly) folds minute buckets older than
  ``metrics_minute_retention_hours`` into hour buckets and drops hour
  buckets older than ``metrics_retention_days``.
- An SLO breach (``breach``): the deployment says so, its chatter, an
  activity for the model's owner, the ``slo.breached`` event (bus,
  ``/events``, webhooks) and, for an active production deployment whose SLO
  rolls back, the normal rollback, whose ledger line names the SLO and the
  values measured.
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from odoo import fields
from odoo.tools import SQL

from ..adapters.targets import TargetFailed
from ..exceptions import MLOpsError
from . import deployment as deploy_service
from . import errors, events, jobs, settings
from .serving import SERVING, plan

_logger = logging.getLogger(__name__)

CHANNEL = "root.mlops.monitoring"


def schedule(env):
    """Cron: a collection job per target with live deployments."""
    live = env["mlops.deployment"].sudo().search([("state", "in", SERVING)])
    minute = int(time.time() // 60)
    for target in live.target_id:
        jobs.as_platform(target).with_delay(
            channel=CHANNEL,
            identity_key=f"mlops-metrics-{target.id}-{minute}",
            description=env._("Metrics of %s", target.name),
        )._collect_metrics()
    return len(live.target_id)


def collect(target):
    """Job: a bucket per live deployment of ``target`` since its last
    reading, then their SLOs. Returns what it kept."""
    env = target.env
    Deployment = env["mlops.deployment"].sudo()
    deployments = _claim(
        Deployment.search([("target_id", "=", target.id), ("state", "in", SERVING)])
    )
    client = target._get_client()
    kept = []
    now = fields.Datetime.now()
    for deployment in deployments:
        cursor = deployment.metrics_cursor or {}
        if cursor.get("at") and fields.Datetime.to_datetime(cursor["at"]) >= now:
            continue  # read this very second: buckets start a second apart
        try:
            if not cursor.get("reading"):
                reading = client.reading(plan(deployment))
                window = None
            else:
                window, reading = client.window(plan(deployment), cursor["reading"])
        except TargetFailed as error:
            # the window stays open: the next pass covers this one too
            _logger.info(
                "no metrics of %s: %s", deployment.display_name, errors.describe(error)
            )
            continue
        if window is not None:
            start = fields.Datetime.to_datetime(cursor["at"])
            seconds = max(1, int((now - start).total_seconds()))
            env["mlops.deployment.metric"].sudo().create(
                _bucket(deployment, start, seconds, window)
            )
            kept.append(deployment.id)
        deployment.metrics_cursor = {
            "at": fields.Datetime.to_string(now),
            "reading": reading,
        }
    for deployment in deployments:
        evaluate(deployment)
    return f"{len(kept)} buckets kept"


def _claim(deployments):
    """The rows no other collector holds (locked for this transaction)."""
    if not deployments:
        return deployments
    env = deployments.env
    env.cr.execute(
        SQL(
            "SELECT id FROM mlops_deployment WHERE id IN %s ORDER BY id "
            "FOR UPDATE SKIP LOCKED",
            tuple(deployments.ids),
        )
    )
    claimed = deployments.browse([row[0] for row in env.cr.fetchall()])
    claimed.invalidate_recordset()
    return claimed


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)


def _bucket(deployment, start, seconds, window):
    return {
        "deployment_id": deployment.id,
        "at": start,
        "period": "minute",
        "seconds": seconds,
        "requests": int(window.requests),
        "errors_4xx": int(window.errors_4xx),
        "errors_5xx": int(window.errors_5xx),
        "p50_ms": _ms(window.p50),
        "p95_ms": _ms(window.p95),
        "p99_ms": _ms(window.p99),
        "cpu_cores": window.cpu_cores,
        "memory_mb": None
        if window.memory_bytes is None
        else window.memory_bytes / 2**20,
    }


# ---------------------------------------------------------------------------
# Reading the buckets back
# ---------------------------------------------------------------------------


def summary(deployment, since):
    """{requests, errors_4xx, errors_5xx, error_rate, p95_ms} of
    ``deployment``'s buckets from ``since``: sums, the 5xx rate over the
    answers the model produced, the largest p95 of a bucket that served."""
    env = deployment.env
    env.cr.execute(
        SQL(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(errors_4xx), 0), "
            "coalesce(sum(errors_5xx), 0), max(p95_ms) FILTER (WHERE requests > 0) "
            "FROM mlops_deployment_metric WHERE deployment_id = %s AND at >= %s",
            deployment.id,
            since,
        )
    )
    requests, e4, e5, p95 = env.cr.fetchone()
    produced = requests - e4
    return {
        "requests": requests,
        "errors_4xx": e4,
        "errors_5xx": e5,
        "error_rate": e5 / produced if produced > 0 else 0.0,
        "p95_ms": p95,
    }


def series(deployment, window_minutes, step_minutes):
    """The contract's metrics items over the last ``window_minutes``, one
    per ``step_minutes``: sums of answers, the request-weighted p50, the
    largest p95 and p99 (a bucket's quantiles cannot be merged exactly)."""
    env = deployment.env
    since = fields.Datetime.now() - timedelta(minutes=window_minutes)
    step = step_minutes * 60
    env.cr.execute(
        SQL(
            """
            SELECT floor(extract(epoch FROM at) / %(step)s) * %(step)s AS slot,
                   sum(requests), sum(errors_4xx), sum(errors_5xx),
                   sum(p50_ms * requests) FILTER (WHERE p50_ms IS NOT NULL)
                       / nullif(sum(requests) FILTER (WHERE p50_ms IS NOT NULL), 0),
                   max(p95_ms), max(p99_ms)
              FROM mlops_deployment_metric
             WHERE deployment_id = %(deployment)s AND at >= %(since)s
             GROUP BY slot ORDER BY slot
            """,
            step=step,
            deployment=deployment.id,
            since=since,
        )
    )
    return [
        {
            "at": datetime.fromtimestamp(float(slot), UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "requests": int(requests),
            "errors_4xx": int(e4),
            "errors_5xx": int(e5),
            "p50_ms": None if p50 is None else round(float(p50), 3),
            "p95_ms": p95,
            "p99_ms": p99,
        }
        for slot, requests, e4, e5, p50, p95, p99 in env.cr.fetchall()
    ]


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------


def rollup(env):
    """Cron: minute buckets of whole hours older than the minute retention
    become one hour bucket each (sums; request-weighted p50; largest p95,
    p99), and hour buckets past the retention go. Returns (hours made,
    minutes folded, hours dropped)."""
    now = fields.Datetime.now()
    hours = settings.get(env, "metrics_minute_retention_hours")
    cutoff = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    env.cr.execute(
        SQL(
            """
            WITH folded AS (
                DELETE FROM mlops_deployment_metric
                 WHERE period = 'minute' AND at < %(cutoff)s
             RETURNING *
            )
            INSERT INTO mlops_deployment_metric (
                deployment_id, model_id, version_id, environment, target_id,
                company_id, at, period, seconds, requests, errors_4xx,
                errors_5xx, error_rate, throughput, p50_ms, p95_ms, p99_ms,
                cpu_cores, memory_mb, create_uid, create_date, write_uid,
                write_date)
            SELECT deployment_id, min(model_id), min(version_id),
                   min(environment), min(target_id), min(company_id),
                   date_trunc('hour', at), 'hour', sum(seconds), sum(requests),
                   coalesce(sum(errors_4xx), 0), coalesce(sum(errors_5xx), 0),
                   coalesce(sum(errors_5xx)::float / nullif(
                       sum(requests) - coalesce(sum(errors_4xx), 0), 0), 0),
                   sum(requests)::float / nullif(sum(seconds), 0),
                   sum(p50_ms * requests) FILTER (WHERE p50_ms IS NOT NULL)
                       / nullif(sum(requests) FILTER (WHERE p50_ms IS NOT NULL), 0),
                   max(p95_ms), max(p99_ms), avg(cpu_cores), avg(memory_mb),
                   %(uid)s, now() at time zone 'UTC', %(uid)s,
                   now() at time zone 'UTC'
              FROM folded
             GROUP BY deployment_id, date_trunc('hour', at)
            ON CONFLICT (deployment_id, period, at) DO UPDATE SET
                   seconds = mlops_deployment_metric.seconds + EXCLUDED.seconds,
                   requests = mlops_deployment_metric.requests + EXCLUDED.requests,
                   errors_4xx = mlops_deployment_metric.errors_4xx
                       + EXCLUDED.errors_4xx,
                   errors_5xx = mlops_deployment_metric.errors_5xx
                       + EXCLUDED.errors_5xx,
                   p95_ms = greatest(mlops_deployment_metric.p95_ms, EXCLUDED.p95_ms),
                   p99_ms = greatest(mlops_deployment_metric.p99_ms, EXCLUDED.p99_ms)
            RETURNING id
            """,
            cutoff=cutoff,
            uid=env.uid,
        )
    )
    made = len(env.cr.fetchall())
    days = settings.get(env, "metrics_retention_days")
    env.cr.execute(
        SQL(
            "DELETE FROM mlops_deployment_metric WHERE period = 'hour' AND at < %s",
            now - timedelta(days=days),
        )
    )
    dropped = env.cr.rowcount
    env["mlops.deployment.metric"].invalidate_model()
    return made, dropped


# ---------------------------------------------------------------------------
# SLOs
# ---------------------------------------------------------------------------


def evaluate(deployment):
    """Compare ``deployment``'s window with its SLO: a breach is acted on
    once (``breach``), a recovery said once; fewer requests than the SLO's
    minimum decides nothing."""
    slo = deployment.env["mlops.slo"].sudo()._for(deployment)
    if not slo:
        if deployment.slo_state:
            deployment.write({"slo_state": False, "slo_detail": False})
        return None
    since = fields.Datetime.now() - timedelta(minutes=slo.window_minutes)
    measured = summary(deployment, since)
    problems = slo._problems(measured)
    if measured["requests"] < slo.min_requests:
        state = deployment.slo_state  # too few to decide: as it was
    else:
        state = "breached" if problems else "met"
    if state == "breached" and deployment.slo_state != "breached":
        return breach(deployment, slo, measured, problems)
    if state == "met" and deployment.slo_state == "breached":
        deployment.message_post(
            body=deployment.env._(
                "SLO %(slo)s met again: %(requests)s requests, %(rate).2f%% errors.",
                slo=slo.name,
                requests=measured["requests"],
                rate=100 * measured["error_rate"],
            ),
            subtype_xmlid="mail.mt_note",
        )
    if state != deployment.slo_state:
        deployment.write({"slo_state": state, "slo_detail": "; ".join(problems)})
    return state


def tell_owner(deployment, detail):
    """Say ``detail`` in the deployment's chatter and as an activity for the
    model's owner on the version."""
    jobs.tell(deployment, detail, deployment.model_id.owner_id, deployment.version_id)


def breach(deployment, slo, measured, problems):
    """An SLO breached: said once, everywhere it matters; in production
    with automatic rollback, rolled back through the normal path."""
    env = deployment.env
    detail = env._(
        "SLO %(slo)s breached over the last %(window)s minutes (%(requests)s "
        "requests): %(problems)s",
        slo=slo.name,
        window=slo.window_minutes,
        requests=measured["requests"],
        problems="; ".join(problems),
    )
    deployment.write({"slo_state": "breached", "slo_detail": detail})
    tell_owner(deployment, detail)
    events.record_happening(
        deployment,
        "breached",
        {"slo": slo.name, "slo_id": slo.id, "measured": measured, "problems": problems},
        event_type="slo.breached",
    )
    if not (
        slo.auto_rollback
        and deployment.environment == "production"
        and deployment.state == "active"
    ):
        return "breached"
    reason = env._("automatic rollback: %s", detail)
    try:
        with env.cr.savepoint():
            deploy_service.switch_back(jobs.as_platform(deployment), reason)
    except (TargetFailed, MLOpsError) as error:
        deployment.message_post(
            body=env._(
                "The SLO breach could not roll back: %s", errors.describe(error)
            ),
            subtype_xmlid="mail.mt_note",
        )
        return "breached"
    return "rolled_back"
