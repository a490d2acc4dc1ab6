"""Canary rollouts: the new version takes a share of production's traffic
in steps (``canary_steps``, say 10, 50, 100 percent), each held for
``canary_step_seconds``, while its gates watch the colour's traffic over
that step (its target's ``analysis``): error rate (5xx answers) and p95
latency, over at least ``canary_min_requests`` requests. A step that passes moves to the
next one; the last promotes the canary (the previous version's colour stays
up, idle, as after a blue-green switch). A failed gate aborts and rolls
back at once: the previous version never stopped serving and takes all the
traffic again. Too few requests is inconclusive: the step is held again, up
to ``canary_inconclusive_tries`` times, then aborted (Argo Rollouts'
inconclusive analysis). An Approver may promote or abort at any time.

Each step's analysis is a job queued with an ``eta``, its identity the
deployment, step and try: it checks it is still the step in progress
before acting, so a late or repeated job does nothing.
"""

from odoo import fields

from ..adapters.targets import TargetFailed, TargetUnavailable
from . import deployment as deploy_service
from . import errors, jobs, serving, settings


def steps(env, first=None, precision=1):
    """The canary's shares, ending at 100: the setting's, or ``first`` and
    the setting's steps above it (a promotion's ``canary_percent``); each
    setting's share the nearest the target can give (``precision``: its
    traffic step), so what is recorded is what is served."""
    if first:
        return [first] + [
            share for share in steps(env, precision=precision) if share > first
        ]
    step = max(1, precision)
    values = []
    for part in settings.get(env, "canary_steps").split(","):
        try:
            value = int(part)
        except ValueError:
            continue
        if not 0 < value <= 100:
            continue
        value = max(step, round(value / step) * step)
        if value > 100 - step:
            value = 100
        if not values or value > values[-1]:
            values.append(value)
    if not values or values[-1] != 100:
        values.append(100)
    return values


def _steps(deployment, first=None):
    return steps(
        deployment.env,
        first,
        deployment.target_id._capabilities().traffic_step,
    )


def _previous(deployment):
    return deploy_service.siblings(deployment, ("active",))


def start(deployment, url):
    """The switch_traffic stage of a canary: the first step."""
    client = deployment.target_id._get_client()
    first = deployment.canary_percent or None
    share = _steps(deployment, first)[0]
    deployment.write(
        {
            "state": "rolling_out_canary",
            "traffic_percent": share,
            "canary_percent": share,
            "endpoint_url": url,
            "deployed_at": fields.Datetime.now(),
            "config": {
                "step": 0,
                "try": 0,
                "first": first,
                "baseline": client.reading(serving.plan(deployment)),
            },
        }
    )
    _previous(deployment).write({"traffic_percent": 100 - share})
    serving.publish_routes(deployment.target_id)
    _schedule(deployment)
    return f"canary at {share} percent of {url}"


def _schedule(deployment):
    config = deployment.config or {}
    seconds = settings.get(deployment.env, "canary_step_seconds")
    jobs.as_platform(deployment).with_delay(
        channel="root.mlops.deploy",
        eta=seconds,
        identity_key=(
            f"mlops-canary-{deployment.id}-{config.get('step')}-{config.get('try')}"
        ),
        description=deployment.env._(
            "Canary analysis of %(deployment)s, step %(step)s",
            deployment=deployment.display_name,
            step=config.get("step", 0) + 1,
        ),
    )._canary_analyze(config.get("step", 0))


def analyze(deployment, step):
    env = deployment.env
    jobs.lock(deployment)
    config = dict(deployment.config or {})
    if deployment.state != "rolling_out_canary" or config.get("step") != step:
        return "no longer the step in progress"
    client = deployment.target_id._get_client()
    try:
        total, server_errors, p95, now = client.analysis(
            serving.plan(deployment), config["baseline"]
        )
    except TargetUnavailable as error:
        # the metrics cannot be read now: the step is held, as when too few
        # requests came, and the canary keeps its share
        return _hold(deployment, config, step, errors.describe(error))
    except TargetFailed as error:
        return abort(deployment, errors.describe(error))
    minimum = settings.get(env, "canary_min_requests")
    if total < minimum:
        return _hold(
            deployment,
            config,
            step,
            env._(
                "%(total)s requests at step %(step)s, fewer than the %(minimum)s "
                "its gates need",
                total=int(total),
                step=step + 1,
                minimum=minimum,
            ),
        )
    error_rate = server_errors / total
    limit_rate = settings.get(env, "canary_max_error_rate")
    limit_p95 = settings.get(env, "canary_max_p95_ms") / 1000
    if error_rate > limit_rate:
        return abort(
            deployment,
            env._(
                "error rate %(rate).1f%% over %(total)s requests, above %(limit).1f%%",
                rate=100 * error_rate,
                total=int(total),
                limit=100 * limit_rate,
            ),
        )
    if p95 is not None and p95 > limit_p95:
        return abort(
            deployment,
            env._(
                "p95 latency above %(p95)s ms over %(total)s requests (gate: "
                "%(limit)s ms)",
                p95=int(p95 * 1000),
                total=int(total),
                limit=int(limit_p95 * 1000),
            ),
        )
    shares = _steps(deployment, config.get("first"))
    deployment.message_post(
        body=env._(
            "Canary step %(step)s passed: %(total)s requests, %(errors)s errors.",
            step=step + 1,
            total=int(total),
            errors=int(server_errors),
        ),
        subtype_xmlid="mail.mt_note",
    )
    # the next step above the share it has now (an Approver may have moved
    # it by hand)
    later = [s for s in shares[step + 1 :] if s > deployment.traffic_percent]
    if not later or later[0] >= 100:
        return promote(deployment)
    share = later[0]
    deployment.write(
        {
            "traffic_percent": share,
            "canary_percent": share,
            "config": {
                "step": step + 1,
                "try": 0,
                "first": config.get("first"),
                "baseline": now,
            },
        }
    )
    _previous(deployment).write({"traffic_percent": 100 - share})
    serving.publish_routes(deployment.target_id)
    _schedule(deployment)
    return f"step {step + 1} passed: {share} percent"


def _hold(deployment, config, step, why):
    """An inconclusive analysis: the step is tried again later, and the
    canary aborted once ``canary_inconclusive_tries`` in a row were."""
    tries = config.get("try", 0) + 1
    if tries >= settings.get(deployment.env, "canary_inconclusive_tries"):
        return abort(deployment, deployment.env._("inconclusive: %s", why))
    deployment.config = {**config, "try": tries}
    _schedule(deployment)
    return f"inconclusive ({why}): step {step + 1} held again"


def set_share(deployment, percent):
    """An Approver moves the canary's share by hand; the step's gates go on
    watching."""
    deployment.write({"traffic_percent": percent, "canary_percent": percent})
    _previous(deployment).write({"traffic_percent": 100 - percent})
    serving.publish_routes(deployment.target_id)
    deployment.message_post(
        body=deployment.env._("Canary share set to %s percent by hand.", percent),
        subtype_xmlid="mail.mt_note",
    )


def promote(deployment, reason=None):
    """The canary takes all the traffic."""
    previous = _previous(deployment)
    deployment.write({"state": "active", "traffic_percent": 100, "canary_percent": 100})
    previous.write({"state": "inactive_bluegreen", "traffic_percent": 0})
    serving.publish_routes(deployment.target_id)
    deploy_service.record_serving(deployment)
    deploy_service._move_version(deployment)
    deployment.message_post(
        body=deployment.env._("Canary promoted: it serves all the traffic."),
        subtype_xmlid="mail.mt_note",
    )
    return "promoted"


def abort(deployment, reason):
    """Roll the canary back: the previous version takes all the traffic
    again, the canary's server stops, the version returns to staging."""
    env = deployment.env
    client = deployment.target_id._get_client()
    deployment.write({"state": "rolled_back", "traffic_percent": 0, "message": reason})
    _previous(deployment).write({"traffic_percent": 100})
    serving.publish_routes(deployment.target_id)
    client.delete(serving.plan(deployment))
    version = deployment.version_id
    if version.state == "production_pending":
        version.write({"state": "staging"})
    message = env._("The canary was rolled back: %s", reason)
    deploy_service.tell_approver(deployment, message)
    deployment.message_post(body=message, subtype_xmlid="mail.mt_note")
    return f"rolled back: {reason}"
