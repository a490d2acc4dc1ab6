"""A/B experiments (docs/reference/monitoring.md): versions of a model
served on one route in the shares their arms say, judged on a primary
metric with ``adapters.experiment_stats``.

- ``start``: each arm is served by a colour that runs on the route (the
  active deployment, or the idle blue-green colour a promotion left); the
  router then splits the route by the arms' weights (``routes``), keeping a
  caller that sends ``X-MLOps-Caller`` on one arm; the idle colour is not
  retired while the experiment runs.
- ``measure`` (a cron, every five minutes, and on demand) is one look: each
  arm's data since the start, the tests against the control (the first
  arm), the always-valid p-value's running minimum kept on the arm.
- ``stop`` gives the route back to its deployments' own shares; ``conclude``
  records the verdict (a winning arm, or no difference) from the last look,
  as the ``experiment.concluded`` event. An experiment past its end is
  stopped and concluded by the cron.
"""

import math

import numpy as np

from odoo import fields

from ..adapters import experiment_stats
from ..exceptions import InvalidInput
from . import jobs
from .serving import plan, publish_routes

# colours an arm may be served by
ARM_STATES = ("active", "inactive_bluegreen")
LOWER_IS_BETTER = ("error_rate", "latency_p95")


def colour(experiment, version):
    """The deployment that serves ``version`` on the experiment's route."""
    return (
        experiment.env["mlops.deployment"]
        .sudo()
        .search(
            [
                ("version_id", "=", version.id),
                ("environment", "=", experiment.environment),
                ("state", "in", ARM_STATES),
            ],
            order="id desc",
            limit=1,
        )
    )


def check_can_start(experiment):
    """Refuse a start that could not split the route as the arms say."""
    env = experiment.env
    problems = {}
    arms = experiment.arm_ids
    if len(arms) < 2:
        problems["arms"] = "two arms at least"
    elif sum(arms.mapped("weight")) != 100:
        problems["arms"] = "weights that add up to 100"
    colours = env["mlops.deployment"].sudo()
    for index, arm in enumerate(arms):
        found = colour(experiment, arm.version_id)
        if not found:
            problems[f"arms.{index}.version_id"] = (
                f"a version served on the {experiment.environment} route (active, or "
                "the idle blue-green colour)"
            )
        colours |= found
    if len(colours.target_id) > 1:
        problems["arms"] = "colours on one target"
    Experiment = env["mlops.experiment"].sudo()
    if Experiment.search_count(
        [
            ("id", "!=", experiment.id),
            ("model_id", "=", experiment.model_id.id),
            ("environment", "=", experiment.environment),
            ("state", "=", "running"),
        ]
    ):
        problems["model_id"] = (
            "no other running experiment on this model and environment"
        )
    if (
        env["mlops.deployment"]
        .sudo()
        .search_count(
            [
                ("model_id", "=", experiment.model_id.id),
                ("environment", "=", experiment.environment),
                ("state", "=", "rolling_out_canary"),
            ]
        )
    ):
        problems["environment"] = "a route without a canary rolling out"
    if problems:
        error = InvalidInput(env._("The experiment cannot start."))
        error.details = problems
        raise error


def start(experiment):
    platform = jobs.as_platform(experiment)
    for arm in platform.arm_ids:
        arm.write({"deployment_id": colour(platform, arm.version_id).id})
    _reset(platform)
    platform.write({"state": "running", "started_at": fields.Datetime.now()})
    _publish(platform)
    platform.message_post(
        body=experiment.env._(
            "Started: %s.",
            ", ".join(f"{a.version_id.version} {a.weight} %" for a in platform.arm_ids),
        ),
        subtype_xmlid="mail.mt_note",
    )


def stop(experiment):
    platform = jobs.as_platform(experiment)
    platform.write({"state": "stopped", "stopped_at": fields.Datetime.now()})
    _publish(platform)
    measure(platform)


def conclude(experiment):
    platform = jobs.as_platform(experiment)
    winner = measure(platform)
    platform.write(
        {
            "state": "concluded",
            "verdict": "winner" if winner else "no_difference",
            "winner_arm_id": winner.id if winner else False,
        }
    )


def arm_left(deployment):
    """``deployment`` stopped serving its route (rolled back, undeployed,
    retired): a running experiment one of whose arms it serves is stopped,
    and says why; the route goes back to its deployments' own shares."""
    env = deployment.env
    running = (
        env["mlops.experiment"]
        .sudo()
        .search(
            [("state", "=", "running"), ("arm_ids.deployment_id", "=", deployment.id)]
        )
    )
    for experiment in jobs.as_platform(running):
        experiment.write({"state": "stopped", "stopped_at": fields.Datetime.now()})
        experiment.message_post(
            body=env._(
                "Stopped: %(deployment)s, which served an arm, is %(state)s.",
                deployment=deployment.display_name,
                state=deployment.state,
            ),
            subtype_xmlid="mail.mt_note",
        )
    return running


def _serving_arms(experiment):
    return experiment.arm_ids.filtered(lambda a: a.deployment_id.state in ARM_STATES)


def _publish(experiment):
    for target in experiment.arm_ids.deployment_id.target_id:
        publish_routes(target)


def routes(target):
    """{route: [(colour, weight)]} of the experiments running on ``target``."""
    running = (
        target.env["mlops.experiment"]
        .sudo()
        .search([("state", "=", "running")])
        .filtered(lambda e: e.arm_ids.deployment_id.target_id == target)
    )
    table = {}
    for experiment in running:
        # never a share for a colour that left the route (``arm_left``
        # stops the experiment in the same transaction)
        arms = _serving_arms(experiment)
        if len(arms) >= 2:
            route = plan(arms[0].deployment_id).route
            table[route] = [(f"d{a.deployment_id.id}", a.weight) for a in arms]
    return table


def pinned(env):
    """The deployments serving a running experiment's arms."""
    return (
        env["mlops.experiment"]
        .sudo()
        .search([("state", "=", "running")])
        .arm_ids.deployment_id.filtered(lambda d: d.state in ARM_STATES)
    )


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def _reset(experiment):
    experiment.arm_ids.write(
        {
            "n": 0,
            "mean": 0,
            "value": 0,
            "difference": 0,
            "interval_low": 0,
            "interval_high": 0,
            "p_value": 0,
            "always_valid_p_value": 0,
            "probability_best": 0,
        }
    )
    experiment.write({"results_at": False, "verdict": False, "winner_arm_id": False})


def _window(experiment):
    return experiment.started_at, experiment.stopped_at or fields.Datetime.now()


def observations(experiment, arm):
    """(``experiment_stats.Arm``, the value shown) of one arm since the
    start."""
    env = experiment.env
    since, until = _window(experiment)
    metric = experiment.metric
    if metric == "error_rate":
        buckets = (
            env["mlops.deployment.metric"]
            .sudo()
            .search(
                [
                    ("deployment_id", "=", arm.deployment_id.id),
                    ("at", ">=", since),
                    ("at", "<=", until),
                ]
            )
        )
        produced = sum(buckets.mapped("requests")) - sum(buckets.mapped("errors_4xx"))
        failed = sum(buckets.mapped("errors_5xx"))
        stats = experiment_stats.Arm.of_rate(failed, max(produced, 0))
        return stats, stats.mean
    if metric == "rating":
        feedback = (
            env["mlops.feedback"]
            .sudo()
            .search(
                [
                    ("version_id", "=", arm.version_id.id),
                    ("rating", ">", 0),
                    ("submitted_at", ">=", since),
                    ("submitted_at", "<=", until),
                    "|",
                    ("deployment_id", "=", arm.deployment_id.id),
                    ("deployment_id", "=", False),
                ]
            )
        )
        values = feedback.mapped("rating")
    elif metric == "latency_p95":
        records = (
            env["mlops.inference.record"]
            .sudo()
            .search(
                [
                    ("deployment_id", "=", arm.deployment_id.id),
                    ("status", "=", 200),
                    ("at", ">=", since),
                    ("at", "<=", until),
                ]
            )
        )
        values = [r for r in records.mapped("latency_ms") if r]
        stats = experiment_stats.Arm.of_values(values)
        shown = float(np.percentile(values, 95)) if values else 0.0
        return stats, shown
    else:
        resolve_outcomes(env)
        outcomes = (
            env["mlops.outcome"]
            .sudo()
            .search(
                [
                    ("deployment_id", "=", arm.deployment_id.id),
                    ("name", "=", experiment.outcome_name),
                    ("at", ">=", since),
                    ("at", "<=", until),
                ]
            )
        )
        values = outcomes.mapped("value")
    stats = experiment_stats.Arm.of_values(values)
    return stats, stats.mean


def measure(experiment):
    """One look: every arm's results against the control; the winning arm
    by the always-valid p-values (or an empty recordset)."""
    arms = experiment.arm_ids
    if not experiment.started_at or len(arms) < 2:
        return arms.browse()
    figures = [observations(experiment, arm) for arm in arms]
    previous = (
        [arm.always_valid_p_value for arm in arms] if experiment.results_at else None
    )
    if previous:
        previous[0] = None
    higher = (
        experiment.higher_is_better
        if experiment.metric == "outcome"
        else experiment.metric not in LOWER_IS_BETTER
    )
    results, winner = experiment_stats.compare(
        [stats for stats, _shown in figures],
        rate=experiment.metric == "error_rate",
        higher_is_better=higher,
        previous=previous,
        alpha=experiment.alpha,
    )
    for arm, (stats, shown), result in zip(arms, figures, results, strict=True):
        low, high = result["interval"]
        arm.write(
            {
                "n": stats.n,
                "mean": _finite(stats.mean),
                "value": _finite(shown),
                "difference": _finite(result.get("difference", 0.0)),
                "interval_low": _finite(low),
                "interval_high": _finite(high),
                "p_value": _finite(result["p_value"], 1.0),
                "always_valid_p_value": _finite(result["always_valid_p_value"], 1.0),
                "probability_best": _finite(result["probability_best"]),
            }
        )
    experiment.results_at = fields.Datetime.now()
    return arms[winner] if winner is not None else arms.browse()


def _finite(value, default=0.0):
    if value is None or not math.isfinite(value):
        return default
    return float(value)


def measure_running(env):
    """Cron: a look at every running experiment; those past their end are
    stopped and concluded."""
    now = fields.Datetime.now()
    running = env["mlops.experiment"].sudo().search([("state", "=", "running")])
    for experiment in running:
        if experiment.ends_at and experiment.ends_at <= now:
            stop(experiment)
            conclude(experiment)
        else:
            measure(experiment)
    return len(running)


def resolve_outcomes(env):
    """Outcomes whose call was not found yet, looked up again in the
    inference log's index."""
    pending = env["mlops.outcome"].sudo().search([("deployment_id", "=", False)])
    if not pending:
        return 0
    records = (
        env["mlops.inference.record"]
        .sudo()
        .search([("request_id", "in", list(set(pending.mapped("request_id"))))])
    )
    by_request = {r.request_id: r for r in records}
    found = 0
    for outcome in pending:
        record = by_request.get(outcome.request_id)
        if record and record.company_id == outcome.company_id:
            outcome.deployment_id = record.deployment_id
            found += 1
    return found


def record_outcome(env, request_id, name, value):
    """A business outcome of the call ``request_id`` (the caller's company,
    the call's deployment when the log has it)."""
    record = env["mlops.inference.record"].search(
        [("request_id", "=", request_id)], limit=1
    )
    return (
        env["mlops.outcome"]
        .sudo()
        .create(
            {
                "request_id": request_id,
                "name": name,
                "value": value,
                "deployment_id": record.deployment_id.id or False,
                "company_id": (record.company_id or env.company).id,
                "user_id": env.uid,
            }
        )
    )


def to_json(experiment):
    def stamp(value):
        return fields.Datetime.to_datetime(value).isoformat() + "Z" if value else None

    return {
        "id": experiment.id,
        "name": experiment.name,
        "model_id": experiment.model_id.id,
        "environment": experiment.environment,
        "state": experiment.state,
        "metric": experiment.metric,
        "outcome_name": experiment.outcome_name or None,
        "alpha": experiment.alpha,
        "started_at": stamp(experiment.started_at),
        "stopped_at": stamp(experiment.stopped_at),
        "ends_at": stamp(experiment.ends_at),
        "results_at": stamp(experiment.results_at),
        "verdict": experiment.verdict or None,
        "winner_version_id": experiment.winner_arm_id.version_id.id or None,
        "arms": [
            {
                "version_id": arm.version_id.id,
                "version": arm.version_id.version,
                "weight": arm.weight,
                "deployment_id": arm.deployment_id.id or None,
                "n": arm.n,
                "mean": arm.mean,
                "value": arm.value,
                "difference": arm.difference if index else None,
                "interval": [arm.interval_low, arm.interval_high] if index else None,
                "p_value": arm.p_value if index and arm.n else None,
                "always_valid_p_value": arm.always_valid_p_value
                if index and arm.n
                else None,
                "probability_best": arm.probability_best,
            }
            for index, arm in enumerate(experiment.arm_ids)
        ],
    }
