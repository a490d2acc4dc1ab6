"""Data drift (docs/reference/monitoring.md): a deployment's recent inputs,
from its inference log, against a reference window, feature by feature
(``adapters.drift``: Evidently's methods and defaults, numpy and scipy).

- ``schedule`` (a cron, hourly) queues a ``compute`` job per live
  deployment that logs its calls (identity: the deployment and the hour).
- The reference is the version's staging traffic when this is another
  deployment of it (production), else the deployment's own first logged
  calls (at most half of them); the current window is its latest calls of the last
  ``drift_window_hours``, never the reference's own.
- Features: each logged input tensor gives one feature per column
  (``x[3]``), one per tensor when a row holds one value; at most
  ``drift_max_features``, in order.
- A report (``mlops.drift.report``) per pass with enough calls on both
  sides (``drift_min_rows``); the deployment keeps the latest score. When
  its data starts to drift: a note, an activity for the model's owner and
  the ``drift.detected`` event (bus, ``/events``, webhooks).
"""

import logging
import time
from datetime import timedelta

from odoo import fields

from ..adapters import drift
from ..adapters.storage import StorageRefused, StorageUnavailable
from . import events, jobs, monitoring, settings
from .serving import SERVING

_logger = logging.getLogger(__name__)

CHANNEL = "root.mlops.monitoring"


def schedule(env):
    """Cron: a drift job per live deployment that keeps an inference log."""
    live = (
        env["mlops.deployment"]
        .sudo()
        .search([("state", "in", SERVING), ("inference_log_rate", ">", 0)])
    )
    hour = int(time.time() // 3600)
    for deployment in live:
        jobs.as_platform(deployment).with_delay(
            channel=CHANNEL,
            identity_key=f"mlops-drift-{deployment.id}-{hour}",
            description=env._("Drift of %s", deployment.display_name),
        )._compute_drift()
    return len(live)


def features(rows, limit):
    """{feature: [values]} of the logged calls' inputs: one feature per
    column of a tensor whose rows hold several values, one per tensor when
    each row holds one; at most ``limit`` features."""
    columns = {}
    for row in rows:
        for tensor in row.get("inputs") or ():
            if not isinstance(tensor, dict) or not isinstance(tensor.get("data"), list):
                continue
            name, data, shape = tensor.get("name"), tensor["data"], tensor.get("shape")
            if not isinstance(shape, list) or not shape or not data:
                continue
            batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
            width = len(data) // batch
            if width == 0 or width * batch != len(data):
                continue
            for start in range(0, len(data), width):
                values = data[start : start + width]
                if width == 1:
                    _add(columns, name, values[0], limit)
                    continue
                for j, value in enumerate(values):
                    if not _add(columns, f"{name}[{j}]", value, limit):
                        break
    return columns


def _add(columns, name, value, limit):
    column = columns.get(name)
    if column is None:
        if len(columns) >= limit:
            return False
        column = columns[name] = []
    column.append(value)
    return True


def _read(batches, limit):
    """Up to ``limit`` records of ``batches``, in their order."""
    rows, used = [], batches.browse()
    for batch in batches:
        if len(rows) >= limit:
            break
        rows.extend(batch._read_rows()[: limit - len(rows)])
        used |= batch
    return rows, used


def windows(deployment):
    """(reference kind, reference batches, current batches), oldest
    first within each."""
    env = deployment.env
    Batch = env["mlops.inference.batch"].sudo()
    since = fields.Datetime.now() - timedelta(
        hours=settings.get(env, "drift_window_hours")
    )
    current = Batch.search(
        [("deployment_id", "=", deployment.id), ("last_at", ">=", since)],
        order="first_at desc, id desc",
    )
    staging = Batch.search(
        [
            ("version_id", "=", deployment.version_id.id),
            ("environment", "=", "staging"),
            ("deployment_id", "!=", deployment.id),
        ],
        order="first_at, id",
    )
    if staging:
        return "staging", staging, current
    own = Batch.search([("deployment_id", "=", deployment.id)], order="first_at, id")
    return "own", own, current


def compute(deployment):
    """Job: a drift report of ``deployment`` when both windows hold enough
    calls; what happened, as the job's result."""
    env = deployment.env
    limit = settings.get(env, "drift_max_rows")
    minimum = settings.get(env, "drift_min_rows")
    kind, reference_batches, current_batches = windows(deployment)
    if kind == "own":
        # its own first calls, at most half of what it logged
        limit_reference = min(limit, sum(reference_batches.mapped("rows")) // 2)
    else:
        limit_reference = limit
    try:
        reference_rows, reference_used = _read(reference_batches, limit_reference)
        if kind == "own":
            # the current window never reads the reference's own calls
            current_batches = current_batches - reference_used
        current_rows, current_used = _read(current_batches, limit)
    except (StorageUnavailable, StorageRefused) as error:
        return f"the inference log cannot be read: {error}"
    if len(reference_rows) < minimum or len(current_rows) < minimum:
        return (
            f"not enough calls: {len(reference_rows)} in the reference, "
            f"{len(current_rows)} recent ({minimum} each at least)"
        )
    cap = settings.get(env, "drift_max_features")
    reference, current = features(reference_rows, cap), features(current_rows, cap)
    try:
        result = drift.dataset_drift(
            reference,
            current,
            share=settings.get(env, "drift_share"),
            p_value=settings.get(env, "drift_p_value"),
            distance=settings.get(env, "drift_distance"),
            large=settings.get(env, "drift_large_window"),
        )
    except ValueError as error:
        return f"no drift measured: {error}"
    report = _keep(deployment, kind, result, reference_used, current_used)
    report.write(
        {"reference_rows": len(reference_rows), "current_rows": len(current_rows)}
    )
    was_drifted = deployment.data_drifted
    deployment.write({"data_drift_score": result.score, "data_drifted": result.drifted})
    if result.drifted and not was_drifted:
        _alert(deployment, report)
    return f"score {result.score:.2f} over {len(result.features)} features"


def _keep(deployment, kind, result, reference_used, current_used):
    return (
        deployment.env["mlops.drift.report"]
        .sudo()
        .create(
            {
                "deployment_id": deployment.id,
                "score": result.score,
                "drifted": result.drifted,
                "share": result.share,
                "reference": kind,
                "reference_from": min(reference_used.mapped("first_at"), default=False),
                "reference_to": max(reference_used.mapped("last_at"), default=False),
                "current_from": min(current_used.mapped("first_at"), default=False),
                "current_to": max(current_used.mapped("last_at"), default=False),
                "feature_ids": [
                    (0, 0, {k: v for k, v in f.to_json().items()})
                    for f in result.features
                ],
            }
        )
    )


def _alert(deployment, report):
    env = deployment.env
    moved = report.feature_ids.filtered("drifted").mapped("name")
    detail = env._(
        "The data drifted: %(count)s of %(total)s features moved (%(names)s).",
        count=len(moved),
        total=len(report.feature_ids),
        names=", ".join(moved[:10]) + (", ..." if len(moved) > 10 else ""),
    )
    monitoring.tell_owner(deployment, detail)
    events.record_happening(
        deployment,
        "drift_detected",
        {"score": report.score, "features": moved, "report_id": report.id},
        event_type="drift.detected",
    )


def to_json(report):
    """The report as the API gives it."""

    def stamp(value):
        return value and fields.Datetime.to_datetime(value).isoformat() + "Z"

    return {
        "score": round(report.score, 4),
        "drifted": report.drifted,
        "features": [f._to_json() for f in report.feature_ids],
        "reference": {
            "source": report.reference,
            "rows": report.reference_rows,
            "from": stamp(report.reference_from) or None,
            "to": stamp(report.reference_to) or None,
        },
        "current": {
            "rows": report.current_rows,
            "from": stamp(report.current_from) or None,
            "to": stamp(report.current_to) or None,
        },
        "at": stamp(report.at),
    }
