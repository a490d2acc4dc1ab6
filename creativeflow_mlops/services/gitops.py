"""Hearing a review's end: the pull or merge request a ``gitops`` run waits
for (``services.repository_stages.open_change``) was merged, or closed.

- ``hear`` takes a provider's hook (GitHub ``pull_request``, GitLab
  ``Merge Request Hook``), verified with the target's hook secret by
  ``adapters.git_hosting`` (forged or stale: 401, nothing changes); the
  delivery is kept (``mlops.pipeline.delivery``, unique per delivery id:
  a replay is a 409 and changes nothing); a hook for a change no run waits
  for, or for a run finished already, changes nothing.
- Merged: ``await_merge`` succeeds, the run runs again and its next stages
  are queued (``verify`` waits for the cluster to run the new digest: the
  later of the two makes the deployment active). Closed unmerged: the run
  fails cleanly; the environment keeps what served it.
- ``hear_report`` takes Argo CD's report that an Application synced a
  folder (docs/gitops/argocd-notifications.yaml), with the hook secret in
  ``X-MLOps-Token``: Healthy and Synced, running the image of the run that
  waits at ``verify`` for that folder, ``verify`` succeeds (whichever of
  this and the watched cluster comes first); Degraded with that image, the
  run fails. A report kept is never heard twice (409).
- ``expire_reviews`` (cron): a change not merged within the review deadline
  (``review_deadline_hours``) fails its run and is withdrawn; the
  pipeline's own deadline never applies to a waiting run.
"""

import hashlib
from datetime import UTC, timedelta

from odoo import fields

from ..adapters import git_hosting
from ..exceptions import Conflict, InvalidInput, NotFound, Unauthorized
from . import deployment as deployments
from . import jobs, settings
from .operations import text
from .serving import plan

MAX_HOOK_BYTES = git_hosting.MAX_HOOK_BYTES


def find_target(env, code):
    """The gitops target a hook names, as the platform."""
    code = text({"target": code}, "target", limit=128)  # NUL: a 400, not a 500
    target = (
        env["mlops.deployment.target"]
        .sudo()
        .search([("code", "=", code), ("kind", "=", "gitops")], limit=1)
    )
    if not target:
        raise NotFound(f"No gitops target {code!r}.")
    return jobs.as_platform(target)


def hear(target, provider, headers, body):
    """Record a provider's hook about a change; returns the answer."""
    if provider not in git_hosting.PARSERS:
        raise NotFound(f"No provider {provider!r}: github or gitlab.")
    options = target._options()
    if options.provider != provider:
        raise NotFound(
            f"The target {target.code} is reviewed on "
            f"{options.provider or 'no provider'}, not {provider}."
        )
    try:
        event = git_hosting.PARSERS[provider](
            headers, body, target._backend_secret("hook_secret")
        )
    except git_hosting.HookRefused as refused:
        raise Unauthorized(str(refused)) from None
    if event.outcome == "other":
        return {"changed": False, "message": "not a merge or a close: ignored"}
    if (
        provider == "github"
        and options.project
        and (event.project.lower() != options.project.lower())
    ):
        raise InvalidInput(f"the hook is about {event.project}, not {options.project}")
    Run = target.env["mlops.pipeline.run"]
    run = Run.search(
        [
            ("deployment_id.target_id", "=", target.id),
            ("change_number", "=", event.number),
            ("change_branch", "=", event.branch),
        ],
        order="id desc",
        limit=1,
    )
    if not run:
        return {
            "changed": False,
            "message": f"no run waits for change {event.number} ({event.branch})",
        }
    jobs.lock(run)
    signature = f"{provider}:{event.delivery}"
    Delivery = target.env["mlops.pipeline.delivery"]
    if Delivery.search_count([("signature", "=", signature)]):
        raise Conflict(f"Delivery {event.delivery} was heard before.")
    changed, note = _apply(run, event)
    Delivery.create(
        {
            "run_id": run.id,
            "signature": signature,
            "sent_at": event.at.astimezone(UTC).replace(tzinfo=None),
            "stage": "await_merge",
            "status": "succeeded" if event.outcome == "merged" else "failed",
            "changed": changed,
            "note": note,
        }
    )
    return {
        "run_id": run.id,
        "state": run.state,
        "changed": changed,
        "message": note,
    }


def _apply(run, event):
    """(changed, why) of a merge or a close on ``run``."""
    if run.state != "waiting":
        return False, f"the run is {run.state}: the hook changes nothing"
    stage = run.stage_ids.filtered(lambda s: s.name == "await_merge")
    who = event.by or "?"
    if event.outcome == "merged":
        stage._finish(
            "succeeded",
            f"change {event.number} merged by {who}"
            + (f" as {event.merge_commit}" if event.merge_commit else ""),
        )
        run.write(
            {
                "state": "running",
                "change_commit": event.merge_commit or run.change_commit,
            }
        )
        run._enqueue()
        return True, f"merged by {who}: verify queued"
    reason = run.env._(
        "The pull request %(number)s was closed unmerged by %(who)s.",
        number=event.number,
        who=who,
    )
    stage._finish("failed", reason)
    deployments.fail(run, reason, change_closed=True)
    return True, f"closed unmerged by {who}: the run failed"


def hear_report(target, headers, body):
    """Record Argo CD's report on a folder; returns the answer."""
    try:
        report = git_hosting.parse_argocd(
            headers, body, target._backend_secret("hook_secret")
        )
    except git_hosting.HookMalformed as malformed:
        raise InvalidInput(str(malformed)) from None
    except git_hosting.HookRefused as refused:
        raise Unauthorized(str(refused)) from None
    run = _run_at(target, report.path.strip("/"))
    if not run:
        return {
            "changed": False,
            "message": f"no run of {target.code} verifies {report.path}",
        }
    jobs.lock(run)
    signature = "argocd:" + hashlib.sha256(body).hexdigest()
    Delivery = target.env["mlops.pipeline.delivery"]
    if Delivery.search_count([("signature", "=", signature)]):
        raise Conflict("This report was heard before.")
    changed, status, note = _apply_report(run, report)
    Delivery.create(
        {
            "run_id": run.id,
            "signature": signature,
            "sent_at": report.at.astimezone(UTC).replace(tzinfo=None),
            "stage": "verify",
            "status": status,
            "changed": changed,
            "note": note,
        }
    )
    return {"run_id": run.id, "state": run.state, "changed": changed, "message": note}


def _run_at(target, path):
    """The running run of ``target`` whose deployment's folder is ``path``."""
    runs = target.env["mlops.pipeline.run"].search(
        [("deployment_id.target_id", "=", target.id), ("state", "=", "running")],
        order="id desc",
    )
    client = target._get_client()
    return runs.filtered(lambda r: client.folder(plan(r.deployment_id)) == path)[:1]


def _apply_report(run, report):
    """(changed, status, why) of Argo CD's ``report`` on ``run``."""
    stages = run.stage_ids.sorted("sequence")
    verify = stages.filtered(lambda s: s.name == "verify")
    image = run.deployment_id.image or ""
    said = (
        f"Argo CD: {report.application} {report.sync}, {report.health} at "
        f"{report.revision[:12]}"
    )
    if run.state != "running" or verify.state != "pending":
        return False, "running", f"{said}; verify is {verify.state}: nothing to do"
    if stages.filtered(lambda s: s.sequence < verify.sequence and s.state == "pending"):
        return False, "running", f"{said}; the run has not reached verify"
    if image not in report.images:
        return (
            False,
            "running",
            f"{said}, running {', '.join(report.images)}: not {image} yet",
        )
    if report.health == "Degraded":
        reason = f"{said}, running {image}"
        verify._finish("failed", reason)
        deployments.fail(run, reason)
        return True, "failed", f"{said}: the run failed"
    if report.health != "Healthy" or report.sync != "Synced":
        return False, "running", f"{said}: not yet healthy and synced"
    verify._finish("succeeded", f"{said}, running {image}")
    return True, "succeeded", f"{said}: verified"


def expire_reviews(env):
    """Cron: fail the runs whose change waited past the review deadline;
    returns them."""
    hours = settings.get(env, "review_deadline_hours")
    limit = fields.Datetime.now() - timedelta(hours=hours)
    late = (
        env["mlops.pipeline.run"]
        .sudo()
        .search([("state", "=", "waiting"), ("waiting_since", "<", limit)])
    )
    for run in jobs.as_platform(late):
        jobs.lock(run)
        if run.state == "waiting":
            deployments.fail(
                run,
                env._(
                    "The pull request was not merged within %s hours.",
                    hours,
                ),
            )
    return late
