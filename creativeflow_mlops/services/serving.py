"""What runs on the deployment targets now, and keeping it so.

``plan`` is what a deployment asks of its target (``adapters.targets``):
its model server's key, route and artifact; ``routes`` a target's routing
table, from the deployments that serve. ``supervise`` (a cron) starts again
the model servers that should run and do not, with backoff, stops orphans and
retires the idle blue-green colours kept long enough; ``publish_keys`` gives
every route its invoke keys; ``undeploy`` takes deployments down.
"""

import os
from datetime import timedelta

import psycopg2

from odoo import fields

from ..adapters.targets import ServePlan, TargetFailed
from . import errors, jobs, settings
from . import resources as resource_service

# the deployments that take an environment's traffic
SERVING = ("active", "rolling_out_canary")


def plan(deployment):
    """What ``deployment`` asks of its target: its model server's key, its
    route (one per model and environment) and where its artifact lies."""
    target = deployment.target_id
    version = deployment.version_id
    return ServePlan(
        key=f"d{deployment.id}",
        route=target._route_name(version.model_id, deployment.environment),
        model_name=version.model_id.slug,
        version=version.version,
        artifact_path=os.path.join(
            target._root(),
            "artifacts",
            f"d{deployment.id}",
            version.artifact_filename or "model.onnx",
        ),
        replicas=deployment.replicas,
        resources=resource_service.of(deployment),
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
    """Cron: retire the idle blue-green colours kept long enough; on each
    local target, start again the model servers of the deployments that
    should run and do not (a crash, a machine or Odoo restart), with
    backoff; stop the ones no deployment wants (orphans); give the router
    the ports as they are now. Returns what it did.

    It acts on current rows only: each deployment is locked (``NOWAIT``)
    before anything is started or stopped for it, and one that another
    transaction holds or changed since this pass began is left to the next
    pass; a process is an orphan only if it started before this pass's
    snapshot, so a deployment created meanwhile keeps its server."""
    done = {"restarted": [], "stopped": [], "waiting": [], "busy": []}
    Deployment = env["mlops.deployment"].sudo()
    env.cr.execute("SELECT extract(epoch FROM now())")
    (snapshot_epoch,) = env.cr.fetchone()
    now = fields.Datetime.now()
    # an idle blue-green colour is kept this long for an instant switch
    # back, then removed
    retire_before = now - timedelta(minutes=settings.get(env, "bluegreen_keep_minutes"))
    # an external target's pipeline removes its objects; Odoo forgets the
    # idle colour at the same time
    for idle in jobs.as_platform(
        Deployment.search(
            [
                ("target_id.kind", "!=", "local"),
                ("state", "=", "inactive_bluegreen"),
                ("write_date", "<", retire_before),
            ]
        )
    ):
        if _locked(idle, ("inactive_bluegreen",)):
            idle.write({"state": "deleted"})
            done["stopped"].append(f"d{idle.id}")
    for target in (
        env["mlops.deployment.target"].sudo().search([("kind", "=", "local")])
    ):
        client = target._get_client()
        running = client.running()
        changed = False
        wanted = jobs.as_platform(
            Deployment.search(
                [("target_id", "=", target.id), ("state", "in", KEEP_RUNNING)]
            )
        )
        # a deployment still coming up owns its server too (its pipeline
        # started it a moment ago): never an orphan
        coming = Deployment.search(
            [("target_id", "=", target.id), ("state", "in", ("requested", "deploying"))]
        )
        owned = {f"d{d.id}" for d in wanted | coming}
        for deployment in wanted:
            key = f"d{deployment.id}"
            if not _locked(deployment, KEEP_RUNNING):
                done["busy"].append(key)
                continue
            outcome = _tend(deployment, client, key in running, retire_before, now)
            if outcome:
                done[outcome].append(key)
                changed = changed or outcome in ("restarted", "stopped")
        for key, handle in running.items():
            if key in owned or not _orphan(env, key, handle, snapshot_epoch):
                continue
            client.runtime.stop(key)
            done["stopped"].append(key)
            changed = True
        if changed or (wanted and not client.router.running()):
            _publish_unless_newer(target, done)
        if wanted:
            # the watchdog brings a killed process back within a second;
            # this pass brings the watchdog back
            client.ensure_watchdog()
    # keys expire: the files say so, and a lost file comes back
    publish_keys(env)
    return done


# a process younger than this at the start of a supervisor pass may belong
# to a deployment the pass cannot see yet
ORPHAN_GRACE = 5


def _orphan(env, key, handle, snapshot_epoch):
    """Whether the process ``key`` belongs to no deployment that runs: its
    deployment is finished with (a final state never changes), or there is
    none and the process is older than this transaction, which would see
    the deployment that started it."""
    deployment_id = int(key[1:]) if key[1:].isdigit() else 0
    if deployment_id:
        env.cr.execute(
            "SELECT state FROM mlops_deployment WHERE id = %s", [deployment_id]
        )
        row = env.cr.fetchone()
        if row:
            return row[0] in ("deleted", "failed", "rolled_back")
    return handle.started_at < snapshot_epoch - ORPHAN_GRACE


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


def _tend(deployment, client, is_running, retire_before, now):
    """What the supervisor does for one locked deployment that should run."""
    env = deployment.env
    if (
        deployment.state == "inactive_bluegreen"
        and deployment.write_date < retire_before
    ):
        deployment.write({"state": "deleted"})
        client.delete(plan(deployment))
        return "stopped"
    if is_running:
        if deployment.restart_count and client.status(plan(deployment)).ready:
            deployment.write({"restart_count": 0, "restart_after": False})
        return None
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


def publish_keys(env, extra=None):
    """Give every route its invoke keys: the active, unexpired keys whose
    scope covers the route's model and environment, and the hashes of the
    other keys (a 403 there). ``extra``: a deployment coming up, whose
    route may not serve yet."""
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
        client = target._get_client()
        seen = set()
        for deployment in deployments:
            route = plan(deployment).route
            if route in seen:
                continue
            seen.add(route)
            allowed = {
                key.key_hash: epoch[key]
                for key in keys
                if key._allows(deployment.model_id, deployment.environment)
            }
            elsewhere = {key.key_hash for key in keys} - set(allowed)
            client.publish_keys(route, allowed, elsewhere)


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
