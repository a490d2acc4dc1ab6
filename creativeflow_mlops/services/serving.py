"""What runs on the deployment targets now, and keeping it so.

``plan`` is what a deployment asks of its target (``adapters.targets``):
its model server's key, route and artifact; ``routes`` a target's routing
table, from the deployments that serve. ``supervise`` (a cron) starts again
the model servers that should run and do not, with backoff, stops orphans and
retires the idle blue-green colours kept long enough; ``publish_keys`` gives
every route its invoke keys; ``undeploy`` takes deployments down.
"""

import logging
from datetime import timedelta

import psycopg2

from odoo import fields

from ..adapters.targets import ServePlan, TargetFailed
from . import errors, events, jobs, settings
from . import resources as resource_service

_logger = logging.getLogger(__name__)

# the deployments that take an environment's traffic
SERVING = ("active", "rolling_out_canary")


def plan(deployment):
    """What ``deployment`` asks of its target: its colour's key, its route
    (one per model and environment), its artifact (URI and SHA-256, and the
    image once built), strategy, first share and resources."""
    target = deployment.target_id
    version = deployment.version_id
    model = version.model_id
    return ServePlan(
        key=f"d{deployment.id}",
        route=target._route_name(model, deployment.environment),
        model_name=model.slug,
        version=version.version,
        artifact_uri=version.artifact_uri or "",
        artifact_sha256=version.artifact_sha256 or "",
        artifact_filename=version.artifact_filename or "model.onnx",
        model_format=version.model_format or "",
        environment=deployment.environment,
        strategy=deployment.strategy,
        traffic_percent=deployment.canary_percent or 100
        if deployment.strategy == "canary"
        else 100,
        replicas=deployment.replicas,
        resources=resource_service.of(deployment),
        image=deployment.image or "",
        log_rate=deployment.inference_log_rate,
        personal_fields=tuple(version._personal_field_names()),
        labels={
            "model": model.slug,
            "version": version.version,
            "deployment": f"d{deployment.id}",
            "environment": deployment.environment,
            "company": str(model.company_id.id),
        },
    )


def routes(target):
    """The routing table of ``target``: {route: [(colour, percent)]}."""
    table = {}
    serving = target.env["mlops.deployment"].search(
        [("target_id", "=", target.id), ("state", "in", SERVING)]
    )
    for deployment in serving:
        route = plan(deployment).route
        table.setdefault(route, []).append(
            (f"d{deployment.id}", deployment.traffic_percent)
        )
    # a running experiment splits its route by its arms' weights
    table.update(target.env["mlops.experiment"]._running_routes(target))
    return table


def publish_routes(target):
    """Give ``target``'s router its whole routing table as it is now.

    The table is computed from this transaction's snapshot, so two
    transactions publishing at once (two models' pipelines, a pipeline and
    the supervisor) could each write a table without the other's change.
    They are serialized on the target's row: the update below waits for a
    transaction that published and has not committed, and fails (a
    serialization failure, which the job queue, the API and Odoo's
    dispatcher retry from a fresh snapshot) when one committed since this
    one's snapshot. The last table written is always the newest."""
    target.env.cr.execute(
        "UPDATE mlops_deployment_target SET write_date = write_date WHERE id = %s",
        [target.id],
    )
    target._get_client().switch_traffic(routes(target))


# a deployment whose model server stops is started again after 10 s, 20 s,
# 40 s... up to 10 minutes; a run of restarts ends when it stays up
BACKOFF_SECONDS = 10
BACKOFF_MAX_SECONDS = 600
KEEP_RUNNING = ("active", "inactive_bluegreen", "rolling_out_canary")


def supervise(env):
    """Cron: reconcile every target with what Odoo wants of it. Per target,
    one ``reconcile`` (a handful of list calls on a cluster, not one per
    deployment) says which colours run as applied; then, for each
    deployment that should run: an idle blue-green colour kept long enough
    is retired; a missing or drifted colour is started again with backoff
    where the target ``restarts`` (a machine of its own), else its drift is
    recorded for a person to re-apply; what runs that no deployment wants
    (an orphan) is stopped; the routes are published again when that
    changed them. Returns what it did.

    It acts on current rows only: each deployment is locked (``NOWAIT``)
    before anything is started or stopped for it, and one that another
    transaction holds or changed since this pass began is left to the next
    pass; a process is an orphan only if it started before this pass's
    snapshot, so a deployment created meanwhile keeps its server."""
    done = {"restarted": [], "stopped": [], "waiting": [], "busy": [], "drifted": []}
    Deployment = env["mlops.deployment"].sudo()
    env.cr.execute("SELECT extract(epoch FROM now())")
    (snapshot_epoch,) = env.cr.fetchone()
    now = fields.Datetime.now()
    # an idle blue-green colour is kept this long for an instant switch
    # back, then removed
    retire_before = now - timedelta(minutes=settings.get(env, "bluegreen_keep_minutes"))
    for target in env["mlops.deployment.target"].sudo().search([]):
        wanted = jobs.as_platform(
            Deployment.search(
                [("target_id", "=", target.id), ("state", "in", KEEP_RUNNING)]
            )
        )
        # a deployment still coming up owns its colour too (its pipeline
        # started it a moment ago): never an orphan
        coming = Deployment.search(
            [("target_id", "=", target.id), ("state", "in", ("requested", "deploying"))]
        )
        owned = {f"d{d.id}" for d in wanted | coming}
        if (
            not wanted
            and not target._capabilities().restarts
            and not Deployment.search_count([("target_id", "=", target.id)], limit=1)
        ):
            # never deployed to: nothing of ours can be there
            continue
        client = target._get_client()
        try:
            found = client.reconcile([plan(d) for d in wanted])
        except TargetFailed as error:
            _unknown(wanted, errors.describe(error))
            done["busy"].append(target.code)
            continue
        changed = False
        for deployment in wanted:
            key = f"d{deployment.id}"
            if not _locked(deployment, KEEP_RUNNING):
                done["busy"].append(key)
                continue
            outcome = _tend(
                deployment, client, found.observed.get(key), retire_before, now
            )
            if outcome:
                done[outcome].append(key)
                changed = changed or outcome in ("restarted", "stopped")
        for key, started_at in found.strays.items():
            if key in owned or not _orphan(env, key, started_at, snapshot_epoch):
                continue
            client.remove_stray(key)
            done["stopped"].append(key)
            changed = True
        if changed or found.republish:
            _publish_unless_newer(target, done)
    # keys expire: the files say so, and a lost file comes back
    publish_keys(env)
    return done


# a process younger than this at the start of a supervisor pass may belong
# to a deployment the pass cannot see yet
ORPHAN_GRACE = 5


def _orphan(env, key, started_at, snapshot_epoch):
    """Whether what runs under ``key`` belongs to no deployment that runs:
    its deployment is finished with (a final state never changes), or there
    is none and it is older than this transaction, which would see the
    deployment that started it."""
    deployment_id = int(key[1:]) if key[1:].isdigit() else 0
    if deployment_id:
        env.cr.execute(
            "SELECT state FROM mlops_deployment WHERE id = %s", [deployment_id]
        )
        row = env.cr.fetchone()
        if row:
            return row[0] in ("deleted", "failed", "rolled_back")
    return started_at < snapshot_epoch - ORPHAN_GRACE


def _publish_unless_newer(target, done):
    """The supervisor publishes the routes it changed, unless a transaction
    committed a newer table since this pass began: that one already gives
    the ports of the servers started (they are read from the runtime)."""
    try:
        with target.env.cr.savepoint(flush=False):
            publish_routes(target)
    except (psycopg2.errors.LockNotAvailable, psycopg2.errors.SerializationFailure):
        done["busy"].append(target.code)


def _locked(deployment, states):
    """Lock ``deployment``'s row now, if no other transaction holds it or
    changed it since this one began, and it is still in ``states``."""
    try:
        with deployment.env.cr.savepoint(flush=False):
            deployment.env.cr.execute(
                "SELECT state FROM mlops_deployment WHERE id = %s FOR UPDATE NOWAIT",
                [deployment.id],
            )
            row = deployment.env.cr.fetchone()
    except (
        psycopg2.errors.LockNotAvailable,
        psycopg2.errors.SerializationFailure,
    ):
        return False
    return bool(row) and row[0] in states


def _tend(deployment, client, observed, retire_before, now):
    """What the supervisor does for one locked deployment that should run,
    given what reconciliation ``observed`` of it (None: the target reports
    nothing of its colours)."""
    if (
        deployment.state == "inactive_bluegreen"
        and deployment.write_date < retire_before
        and deployment not in deployment.env["mlops.experiment"]._pinned_deployments()
    ):
        deployment.write({"state": "deleted"})
        client.delete(plan(deployment))
        return "stopped"
    if observed is None:
        return None
    if observed.drift == "in_sync":
        values = {}
        if deployment.drift != "in_sync":
            values.update(drift="in_sync", drift_detail=False)
        if deployment.restart_count and client.verify(plan(deployment)).ready:
            values.update(restart_count=0, restart_after=False)
        if values:
            deployment.write(values)
        return None
    if deployment.target_id._capabilities().restarts:
        return _restart(deployment, client, now)
    return _record_drift(deployment, observed)


def _restart(deployment, client, now):
    """Start a colour that stopped again, with backoff."""
    env = deployment.env
    if deployment.restart_after and deployment.restart_after > now:
        return "waiting"
    delay = min(BACKOFF_SECONDS * 2**deployment.restart_count, BACKOFF_MAX_SECONDS)
    values = {
        "restart_count": deployment.restart_count + 1,
        "restart_after": now + timedelta(seconds=delay),
    }
    outcome = None
    try:
        client.apply(plan(deployment))
    except TargetFailed as error:
        values["message"] = errors.describe(error)
        deployment.message_post(
            body=env._(
                "Its model server stopped and did not start again: %s",
                errors.describe(error),
            ),
            subtype_xmlid="mail.mt_note",
        )
    else:
        outcome = "restarted"
        deployment.message_post(
            body=env._("Its model server had stopped; it was started again."),
            subtype_xmlid="mail.mt_note",
        )
    deployment.write(values)
    return outcome


def _record_drift(deployment, observed):
    """A colour that differs from what was applied, on a target a person
    owns: recorded once per change (the field, the chatter, an activity on
    the version for whoever approved it), with *Re-apply* on the form."""
    if (deployment.drift, deployment.drift_detail or "") == (
        observed.drift,
        observed.detail,
    ):
        return "drifted"
    env = deployment.env
    deployment.write({"drift": observed.drift, "drift_detail": observed.detail})
    message = env._(
        "%(deployment)s is %(drift)s on %(target)s: %(detail)s. Re-apply it, or "
        "undeploy it.",
        deployment=deployment.display_name,
        drift=observed.drift,
        target=deployment.target_id.name,
        detail=observed.detail,
    )
    # the version's activities are where an approver looks
    jobs.tell(deployment, message, deployment.deployed_by_id, deployment.version_id)
    events.record_happening(
        deployment,
        "drifted",
        {"drift": observed.drift, "drift_detail": observed.detail},
    )
    return "drifted"


def _unknown(deployments, why):
    """The target cannot be read: its deployments' drift is unknown."""
    deployments.filtered(lambda d: d.drift != "unknown").write(
        {"drift": "unknown", "drift_detail": why}
    )


def publish_keys(env, extra=None):
    """Give every route its invoke keys: the active, unexpired keys whose
    scope covers the route's model and environment, and the hashes of the
    other keys (a 403 there). ``extra``: a deployment coming up, whose
    route may not serve yet; its target's failure is the stage's. Any other
    target that cannot take them is logged and the others still get
    theirs (a cluster out of reach neither blocks a key's revocation
    elsewhere nor another target's rollout); the supervisor publishes again
    each pass, and what checks keys refuses what it does not know, so a
    late table is never a key let in."""
    Key = env["mlops.invoke.key"].sudo()
    keys = Key.search([])
    epoch = {
        key: key.expires_at.timestamp() if key.expires_at else None for key in keys
    }
    Deployment = env["mlops.deployment"].sudo()
    for target in env["mlops.deployment.target"].sudo().search([]):
        deployments = Deployment.search(
            [
                ("target_id", "=", target.id),
                ("state", "in", (*KEEP_RUNNING, "deploying", "requested")),
            ]
        ) | (extra.sudo() if extra and extra.target_id == target else Deployment)
        if not deployments:
            continue
        table = {}
        for deployment in deployments:
            route = plan(deployment).route
            if route in table:
                continue
            allowed = {
                key.key_hash: epoch[key]
                for key in keys
                if key._allows(deployment.model_id, deployment.environment)
            }
            table[route] = (allowed, {key.key_hash for key in keys} - set(allowed))
        try:
            target._get_client().publish_key_table(table)
        except TargetFailed as error:
            if extra and extra.target_id == target:
                raise
            _logger.warning(
                "the invoke keys of %s: %s", target.code, errors.describe(error)
            )


def undeploy(deployments):
    """Take ``deployments`` down: out of the routes first, then their
    processes; recorded as ``deleted``. A ledger line whose deployment goes
    ends now: the ledger never says a deployment serves that does not."""
    deployments = jobs.as_platform(deployments)
    deployments.write({"state": "deleted", "traffic_percent": 0})
    deployments.env["mlops.promotion"].search(
        [("deployment_id", "in", deployments.ids), ("live_until", "=", False)]
    ).write({"live_until": fields.Datetime.now()})
    for target in deployments.target_id:
        client = target._get_client()
        publish_routes(target)
        for gone in deployments.filtered(lambda d, t=target: d.target_id == t):
            client.delete(plan(gone))
