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


# a deployment whose model server stops is started again after 10 s, 20 s,
# 40 s... up to 10 minutes; a run of restarts ends when it stays up
BACKOFF_SECONDS = 10
BACKOFF_MAX_SECONDS = 600
KEEP_RUNNING = ("active", "inactive_bluegreen", "rolling_out_canary")


def supervise(env):
    """Cron: retire the idle blue-green colours kept long enough; on each
    local target, start again the model servers of the
    deployments that should run and do not (a crash, a machine or Odoo
    restart), with backoff; stop the ones no deployment wants (orphans);
    give the router the ports as they are now. Returns what it did."""
    done = {"restarted": [], "stopped": [], "waiting": []}
    Deployment = env["mlops.deployment"].sudo()
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
        idle.write({"state": "deleted"})
        done["stopped"].append(f"d{idle.id}")
    for target in (
        env["mlops.deployment.target"].sudo().search([("kind", "=", "local")])
    ):
        client = target._get_client()
        wanted = jobs.as_platform(
            Deployment.search(
                [("target_id", "=", target.id), ("state", "in", KEEP_RUNNING)]
            )
        )
        running = client.running()
        changed = False
        retired = wanted.filtered(
            lambda d, before=retire_before: (
                d.state == "inactive_bluegreen" and d.write_date < before
            )
        )
        for idle in retired:
            idle.write({"state": "deleted"})
            client.delete(plan(idle))
            done["stopped"].append(f"d{idle.id}")
            changed = True
        wanted -= retired
        for deployment in wanted:
            key = f"d{deployment.id}"
            if key in running:
                if deployment.restart_count and client.status(plan(deployment)).ready:
                    deployment.write({"restart_count": 0, "restart_after": False})
                continue
            if deployment.restart_after and deployment.restart_after > now:
                done["waiting"].append(key)
                continue
            delay = min(
                BACKOFF_SECONDS * 2**deployment.restart_count, BACKOFF_MAX_SECONDS
            )
            values = {
                "restart_count": deployment.restart_count + 1,
                "restart_after": now + timedelta(seconds=delay),
            }
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
                changed = True
                done["restarted"].append(key)
                deployment.message_post(
                    body=env._("Its model server had stopped; it was started again."),
                    subtype_xmlid="mail.mt_note",
                )
            deployment.write(values)
        # a deployment still coming up owns its server too (its pipeline
        # started it a moment ago): never an orphan
        coming = Deployment.search(
            [("target_id", "=", target.id), ("state", "in", ("requested", "deploying"))]
        )
        for key in set(running) - {f"d{d.id}" for d in wanted | coming}:
            client.runtime.stop(key)
            done["stopped"].append(key)
            changed = True
        if changed or (wanted and not client.router.running()):
            client.switch_traffic(routes(target))
    # keys expire: the files say so, and a lost file comes back
    publish_keys(env)
    return done


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
    processes; recorded as ``deleted``."""
    deployments = jobs.as_platform(deployments)
    deployments.write({"state": "deleted", "traffic_percent": 0})
    for target in deployments.target_id:
        client = target._get_client()
        client.switch_traffic(routes(target))
        for gone in deployments.filtered(lambda d, t=target: d.target_id == t):
            client.delete(plan(gone))
