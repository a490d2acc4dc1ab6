"""Deployments: from an approval to a serving endpoint.

``request`` (called by the version's approvals, with the deployment's
parameters as arguments) creates the deployment and its pipeline run and
queues the run's stages. ``run_stage`` is each stage's job: it checks the
run is still open and the stage still pending (a job run twice does
nothing), does the stage against the deployment's target
(``adapters.targets``), and records it. A stage that fails fails the run
and the deployment, takes the new colour down, and returns the version to
where it was before the approval, with the reason in its chatter; what
served before keeps serving, as the router only changes in the last stage.

Stages of the ``internal`` provider, each asked of the deployment's target
(a kind skips the stages it does not run, saying why): ``fetch_artifact``
(the stored bytes, hash checked, where the target needs them),
``build_image`` and ``push_image`` (a ModelCar image, where the target
builds one), ``apply`` (submit the new colour and return), ``verify`` (its
status as the target reports it, asked again until ready or the rollout
deadline), ``switch_traffic`` (the route takes the new colour; for
``rolling`` the colour it replaces is then removed, for ``blue_green`` it
stays ``inactive_bluegreen``, ready to switch back). A kind that keeps its
deployments in a repository runs ``commit`` instead of ``apply``, then
``open_change`` (a pull request, where a review is asked: the run waits,
``services.gitops`` hears the merge) and ``await_merge``.
"""

import logging

import psycopg2

from odoo import fields

from odoo.addons.queue_job.exception import RetryableJobError

from ..adapters.targets import (
    PAUSES,
    StageNotRun,
    TargetFailed,
    TargetUnavailable,
)
from ..exceptions import BackendUnavailable, Conflict, InvalidInput, NotFound
from ..lifecycle import PIPELINE_OPEN_STATES
from . import artifacts, errors, jobs, repository_stages, serving, settings
from . import resources as resource_service
from .serving import SERVING, plan, publish_keys, publish_routes

_logger = logging.getLogger(__name__)

STRATEGIES_NOW = ("rolling", "blue_green", "canary")
# the unique index of the open pipeline runs (mlops.pipeline.run)
ONE_OPEN_RUN = "mlops_pipeline_run_one_open"
# a colour not ready yet is asked again this often
VERIFY_POLL_SECONDS = 5
# where a version returns when the deployment approving it does not finish
BEFORE_APPROVAL = {"staging_pending": "validated", "production_pending": "staging"}


class StageFailed(Exception):
    pass


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def check_request(
    version,
    environment,
    strategy,
    target,
    resources=None,
    replicas=1,
    canary_percent=None,
):
    """Refuse what cannot be deployed before anything is approved: what
    the target cannot do is asked of its capabilities, never its kind."""
    env = version.env
    if strategy not in STRATEGIES_NOW:
        raise InvalidInput(
            env._(
                "The %(strategy)s strategy is not available yet; use %(known)s.",
                strategy=strategy,
                known=", ".join(STRATEGIES_NOW),
            )
        )
    if strategy == "canary" and environment != "production":
        raise InvalidInput(
            env._("A canary shares production's traffic: staging deploys rolling.")
        )
    if not target:
        raise InvalidInput(env._("No deployment target is configured."))
    caps = target._capabilities()
    _check_resources(env, target, caps, resources or {})
    check_replicas(target, replicas)
    if strategy == "canary" and not caps.canary:
        raise InvalidInput(
            env._(
                "A canary needs a target that splits traffic by share and gives "
                "Odoo its metrics for the gates; %s does not: promote blue-green "
                "or rolling there.",
                target.name,
            )
        )
    if strategy == "canary" and canary_percent:
        check_share(target, canary_percent)
    if version.model_format not in caps.formats:
        raise InvalidInput(
            env._(
                "%(target)s cannot serve %(format)s models (it serves %(formats)s): "
                "%(version)s is not deployable there.",
                target=target.name,
                format=version.model_format,
                formats=", ".join(caps.formats) or "none",
                version=version.display_name,
            )
        )
    open_runs = (
        env["mlops.pipeline.run"]
        .sudo()
        .search_count(
            [
                ("model_id", "=", version.model_id.id),
                ("environment", "=", environment),
                ("state", "in", PIPELINE_OPEN_STATES),
            ]
        )
    )
    if open_runs:
        raise Conflict(_under_way(version.model_id, environment))
    check_no_canary(version.model_id, environment)


def _under_way(model, environment):
    return model.env._(
        "A deployment of %(model)s to %(environment)s is already under way; "
        "wait until it finishes.",
        model=model.name,
        environment=environment,
    )


def check_no_canary(model, environment):
    """Refuse a change of what serves ``model`` in ``environment`` while a
    canary shares its traffic: the canary's gates own the route until it is
    promoted or aborted."""
    canary = (
        model.env["mlops.deployment"]
        .sudo()
        .search(
            [
                ("model_id", "=", model.id),
                ("environment", "=", environment),
                ("state", "=", "rolling_out_canary"),
            ],
            limit=1,
        )
    )
    if canary:
        raise Conflict(
            model.env._(
                "A canary of %(version)s takes %(percent)s %% of %(model)s in "
                "%(environment)s: promote or abort it first (its deployment "
                "%(id)s).",
                version=canary.version_id.display_name,
                percent=canary.traffic_percent,
                model=model.name,
                environment=environment,
                id=canary.id,
            )
        )


def check_share(target, percent):
    """Refuse a canary share ``target`` cannot give exactly (a split by
    replica ratio moves in steps of its precision)."""
    step = target._capabilities().traffic_step
    if step > 1 and percent % step:
        error = InvalidInput(
            target.env._(
                "%(target)s splits traffic in steps of %(step)s %%: %(percent)s %% "
                "cannot be served exactly; choose a multiple of %(step)s.",
                target=target.name,
                step=step,
                percent=percent,
            )
        )
        error.details = {"canary_percent": f"a multiple of {step} on {target.code}"}
        raise error


def check_replicas(target, replicas):
    """Refuse more replicas than ``target`` runs (the local runtime: one
    model server per deployment)."""
    limit = target._capabilities().max_replicas
    if replicas > limit:
        error = InvalidInput(
            target.env._(
                "%(target)s runs at most %(limit)s replicas per deployment; "
                "%(asked)s were asked.",
                target=target.name,
                limit=limit,
                asked=replicas,
            )
        )
        error.details = {"replicas": f"at most {limit} on {target.code}"}
        raise error


def _check_resources(env, target, caps, resources):
    """What ``target`` cannot give is refused rather than dropped (the
    local runtime has no GPU and caps no memory: its ``cpu`` is the model
    server's threads; a GitHub workflow takes no more inputs)."""
    if not resources:
        return
    # a GPU type comes with a GPU (resources.parse): the GPU says it
    asked = [k for k in resources if k != "gpu_type" and (k != "gpu" or resources[k])]
    problems = {
        f"resources.{key}": caps.resource_refusals.get(key)
        or env._("%s cannot give it", target.name)
        for key in asked
        if key not in caps.resources
    }
    if target.ci_provider_id.kind == "github":
        problems = {
            f"resources.{key}": "a GitHub workflow takes 10 inputs, all in use"
            for key in resources
        }
    if problems:
        error = InvalidInput(
            env._(
                "%(target)s cannot give these resources: %(problems)s",
                target=target.name,
                problems="; ".join(f"{k}: {v}" for k, v in problems.items()),
            )
        )
        error.details = problems
        raise error


def staged_resources(version, environment):
    """The resources ``version`` deploys to ``environment`` with when none
    are asked: production (a promotion, a rollback) runs with what its
    latest staging deployment that did not fail asked for."""
    if environment != "production":
        return {}
    staged = (
        version.sudo()
        .deployment_ids.filtered(
            lambda d: d.environment == "staging" and d.state != "failed"
        )
        .sorted("id")[-1:]
    )
    return resource_service.of(staged) if staged else {}


def resolve_target(env, code=None):
    Target = env["mlops.deployment.target"].sudo()
    if code:
        target = Target.search([("code", "=", code)], limit=1)
        if not target:
            # a code that names nothing, as a missing id is
            raise NotFound(env._("No deployment target %s.", code))
        return target
    return Target._get_default()


def target_for(version, code=None):
    """Where ``version`` deploys: the target named by ``code``, else the
    one its latest deployment that did not fail went to (production follows
    staging there; a rollback returns where the version served), else the
    default target."""
    if code:
        return resolve_target(version.env, code)
    earlier = (
        version.sudo()
        .deployment_ids.filtered(lambda d: d.state != "failed")
        .sorted("id")[-1:]
    )
    return earlier.target_id or resolve_target(version.env)


def request(
    version,
    environment,
    strategy="rolling",
    target=None,
    replicas=1,
    canary_percent=None,
    resources=None,
):
    """Create the deployment of ``version`` to ``environment`` and queue its
    pipeline run (already checked by ``check_request``); a canary starts at
    ``canary_percent`` when given, else at the first configured step;
    ``resources`` default to what staging ran with (``staged_resources``)."""
    if resources is None:
        resources = staged_resources(version, environment)
    platform = jobs.as_platform(version)
    deployment = platform.env["mlops.deployment"].create(
        {
            **resource_service.values(resources),
            "version_id": version.id,
            "environment": environment,
            "strategy": strategy,
            "replicas": replicas,
            "target_id": target.id,
            "traffic_percent": 0,
            "canary_percent": canary_percent if strategy == "canary" else False,
            "deployed_by_id": version.env.user.id,
        }
    )
    try:
        # a concurrent request for the same model and environment that
        # committed first (check_request could not see it) is a 409 now,
        # not an error at the transaction's end
        with platform.env.cr.savepoint():
            run = platform.env["mlops.pipeline.run"].create(
                {
                    "deployment_id": deployment.id,
                    "provider": target._pipeline_provider(),
                    "ci_provider_id": target.ci_provider_id.id,
                }
            )
            run.flush_recordset()
    except psycopg2.errors.UniqueViolation as error:
        if error.diag.constraint_name != ONE_OPEN_RUN:
            raise
        raise Conflict(_under_way(version.model_id, environment)) from None
    run._enqueue()
    return deployment


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------


def run_stage(run, stage_name):
    jobs.lock(run)
    stage = run.stage_ids.filtered(lambda s: s.name == stage_name)
    if run.state not in ("queued", "running") or stage.state != "pending":
        return f"{stage_name}: nothing to do (run {run.state}, stage {stage.state})"
    deployment = run.deployment_id
    if run.state == "queued":
        run.write({"state": "running", "started_at": fields.Datetime.now()})
        if deployment.state == "requested":
            deployment.write({"state": "deploying"})
    stage._start()

    def work():
        # a stage that fails leaves nothing of what it wrote: take_traffic
        # marks the deployment active before the router is told
        try:
            with run.env.cr.savepoint():
                return "succeeded", STAGES[stage_name](deployment)
        except StageNotRun as skipped:
            return "skipped", str(skipped)
        except TargetUnavailable:
            raise  # out of reach now: jobs.attempt has it tried again
        except (StageFailed, TargetFailed) as failure:
            return "failed", errors.describe(failure)

    outcome, problem = jobs.attempt(run.env, work, stage_name.replace("_", " "))
    state, log = outcome or ("failed", problem)
    if state == "failed":
        stage._finish("failed", log)
        fail(run, log)
        return f"{stage_name} failed: {log}"
    stage._finish(state, log)
    if stage == run.stage_ids.sorted("sequence")[-1:]:
        succeed(run)
    elif stage_name in PAUSES and run.state != "waiting":
        run._enqueue()  # nothing to wait for: the stages after it
    return f"{stage_name} {state}"


def siblings(deployment, states):
    """The other deployments of its model and environment on its target in
    ``states``."""
    return deployment.search(
        [
            ("model_id", "=", deployment.model_id.id),
            ("environment", "=", deployment.environment),
            ("target_id", "=", deployment.target_id.id),
            ("state", "in", states),
            ("id", "!=", deployment.id),
        ]
    )


def tell_approver(deployment, message):
    """A failure in the version's chatter, and an activity for whoever
    approved the deployment."""
    jobs.tell(deployment.version_id, message, deployment.deployed_by_id)


def _client(deployment):
    return deployment.target_id._get_client()


def _opener(version):
    """Opens a local copy of ``version``'s artifact, for the kinds whose
    stages need the bytes (a file beside the runtime, an image's layer)."""
    if not version.artifact_object_key:
        raise StageFailed(f"{version.display_name} has no artifact")
    return lambda: artifacts.local_copy(version)


def _fetch_artifact(deployment):
    return _client(deployment).fetch_artifact(
        plan(deployment), _opener(deployment.version_id)
    )


def scale(deployment):
    """A serving deployment to its ``replicas`` on its target, then its
    routes again (a canary's split is sized anew)."""
    if deployment.state not in SERVING:
        return
    message = _client(deployment).scale(plan(deployment))
    publish_routes(deployment.target_id)
    if message:
        deployment.message_post(
            body=deployment.env._(
                "Scaled to %(replicas)s replicas: %(message)s",
                replicas=deployment.replicas,
                message=message,
            ),
            subtype_xmlid="mail.mt_note",
        )


def _build_image(deployment):
    return _client(deployment).build_image(
        plan(deployment), _opener(deployment.version_id)
    )


def _push_image(deployment):
    image, log = _client(deployment).push_image(plan(deployment))
    deployment.write({"image": image})
    return log


def _apply(deployment):
    """Submit the colour to the target, and return: ``verify`` waits."""
    publish_keys(deployment.env, deployment)
    return _client(deployment).apply(plan(deployment)).message


def _verify(deployment):
    """The colour's status as the target reports it now. Not ready yet: the
    job is tried again a few seconds later (its row locks released in
    between, a retry that does not count as a failure) until the rollout
    deadline (``rollout_timeout_seconds`` after ``apply``)."""
    status = _client(deployment).verify(plan(deployment))
    if status.ready:
        return status.message
    if status.failed:
        raise StageFailed(f"{status.message}\n{status.log}".strip())
    run = deployment.run_ids[:1]
    # since the stage before it ended (apply, or a merge)
    before = run.stage_ids.filtered(
        lambda s: s.name != "verify" and s.finished_at and s.state != "skipped"
    )
    applied = max(before.mapped("finished_at"), default=None)
    timeout = settings.get(deployment.env, "rollout_timeout_seconds")
    if applied and (fields.Datetime.now() - applied).total_seconds() > timeout:
        raise StageFailed(
            f"not ready {timeout} seconds after it was applied: {status.message}\n"
            f"{status.log}".strip()
        )
    raise RetryableJobError(
        f"verify: not ready yet ({status.message})",
        seconds=VERIFY_POLL_SECONDS,
        ignore_retry=True,
    )


def _switch_traffic(deployment):
    """The new colour takes the environment's traffic; the one it replaces
    goes idle (blue-green) or away (rolling)."""
    client = deployment.target_id._get_client()
    url = client.route_url(plan(deployment).route)
    endpoint = f"{url}/v2/models/{deployment.model_id.slug}/infer"
    if deployment.strategy == "canary" and siblings(deployment, SERVING):
        from . import canary  # noqa: PLC0415 - canary builds on this module

        return canary.start(deployment, endpoint)
    return take_traffic(deployment, endpoint)


def take_traffic(deployment, endpoint):
    """``deployment`` serves its environment at ``endpoint`` from now (its
    target's router told, for a target Odoo routes): the deployment it
    replaces goes idle (blue-green) or away (rolling), the ledger and the
    version follow. Returns the stage's log line."""
    client = deployment.target_id._get_client()
    replaced = siblings(deployment, SERVING)
    deployment.write(
        {
            "state": "active",
            "traffic_percent": 100,
            "endpoint_url": endpoint,
            "deployed_at": fields.Datetime.now(),
        }
    )
    idle = "inactive_bluegreen" if deployment.strategy == "blue_green" else "deleted"
    replaced.write({"state": idle, "traffic_percent": 0})
    publish_routes(deployment.target_id)
    record_serving(deployment)
    for old in replaced.filtered(lambda d: d.state == "deleted"):
        client.delete(plan(old))
    _move_version(deployment)
    return f"{deployment.version_id.version} takes the traffic at {endpoint}" + (
        f"; {', '.join(replaced.mapped('version_id.version'))} {idle}"
        if replaced
        else ""
    )


STAGES = {
    "fetch_artifact": _fetch_artifact,
    "build_image": _build_image,
    "push_image": _push_image,
    "commit": repository_stages.commit,
    "open_change": repository_stages.open_change,
    "await_merge": repository_stages.await_merge,
    "apply": _apply,
    "verify": _verify,
    "switch_traffic": _switch_traffic,
}


def record_serving(deployment, kind=None, reason=None, approver=None):
    """A line of the promotion ledger: ``deployment`` serves its model's
    environment from now; the line before ends now. Its ``kind`` is the
    approval's: a rollback that deployed the previous version again (its
    idle colour gone) is a rollback in the ledger too."""
    Ledger = deployment.env["mlops.promotion"]
    now = fields.Datetime.now()
    previous = Ledger._current(deployment.model_id, deployment.environment)
    previous.write({"live_until": now})
    approval = deployment.env["mlops.version.approval"].search(
        [("deployment_id", "=", deployment.id)], order="id desc", limit=1
    )
    if kind is None:
        kind = "rollback" if approval.stage == "rollback" else "promotion"
    return Ledger.create(
        {
            "model_id": deployment.model_id.id,
            "environment": deployment.environment,
            "version_before_id": previous.version_after_id.id,
            "version_after_id": deployment.version_id.id,
            "deployment_id": deployment.id,
            "strategy": deployment.strategy,
            "kind": kind,
            "approved_by_id": (approver or approval.user_id).id,
            "approved_at": now if approver else approval.date,
            "reason": reason if reason is not None else approval.reason,
            "freeze_override": approval.freeze_override,
            "live_from": now,
        }
    )


def reapply(deployment, user):
    """Apply ``deployment``'s colour again as Odoo wants it, then its
    routes: reconciliation's *Re-apply* (by ``user``). Its drift is unknown
    until the next pass looks."""
    jobs.lock(deployment)
    client = _client(deployment)
    try:
        status = client.reapply(plan(deployment))
        publish_routes(deployment.target_id)
    except TargetUnavailable as error:
        raise BackendUnavailable(errors.describe(error)) from error
    except TargetFailed as error:
        raise Conflict(errors.describe(error)) from error
    deployment.write({"drift": "unknown", "drift_detail": False})
    deployment.message_post(
        body=deployment.env._(
            "Applied again by %(user)s: %(message)s",
            user=user.name,
            message=status.message,
        ),
        subtype_xmlid="mail.mt_note",
    )
    return status


def switch_back(current, reason):
    """Roll ``current`` (a production deployment) back to what served
    before it, in one action: the idle blue-green colour of the previous
    version takes the traffic at once when it is still up; otherwise the
    previous version is deployed again (a pipeline run). Returns the
    deployment that serves, or will."""
    env = current.env
    approver = env.user
    check_no_canary(current.model_id, current.environment)
    ledger = env["mlops.promotion"]._current(current.model_id, current.environment)
    previous = ledger.version_before_id
    if ledger.deployment_id != current or not previous:
        raise Conflict(
            env._("%s has nothing before it to roll back to.", current.display_name)
        )
    platform = jobs.as_platform(current)
    idle = platform.search(
        [
            ("version_id", "=", previous.id),
            ("environment", "=", current.environment),
            ("target_id", "=", current.target_id.id),
            ("state", "=", "inactive_bluegreen"),
        ],
        order="id desc",
        limit=1,
    )
    client = platform.target_id._get_client()
    if idle and client.verify(plan(idle)).ready:
        # the previous version first asks for production (the approval,
        # with its reason), then takes it: the current one is deprecated
        previous.with_context(mlops_reason=reason)._lifecycle_move("production_pending")
        approval = previous.approval_ids.sorted("id")[-1:]
        approval.sudo().deployment_id = idle
        idle.write({"state": "active", "traffic_percent": 100})
        platform.write({"state": "rolled_back", "traffic_percent": 0})
        publish_routes(platform.target_id)
        client.delete(plan(platform))
        jobs.as_platform(previous).write({"state": "production"})
        record_serving(jobs.as_platform(idle), "rollback", reason, approver)
        current.version_id.sudo().message_post(
            body=env._(
                "Rolled back to %(previous)s by %(user)s: %(reason)s",
                previous=previous.display_name,
                user=approver.name,
                reason=reason,
            ),
            subtype_xmlid="mail.mt_note",
        )
        return idle
    # the idle colour is gone: deploy the previous version again
    previous.action_rollback(reason=reason, target=current.target_id.code)
    return previous.deployment_ids.sorted("id")[-1:]


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------


def _move_version(deployment):
    version = deployment.version_id
    target = {"staging": "staging", "production": "production"}[deployment.environment]
    if version.state != target:
        version.write({"state": target})


def succeed(run):
    run.write({"state": "succeeded", "finished_at": fields.Datetime.now()})
    deployment = run.deployment_id
    deployment.message_post(
        body=run.env._("Live at %s.", deployment.endpoint_url),
        subtype_xmlid="mail.mt_note",
    )


def fail(run, reason, change_closed=False):
    """The run failed: so did the deployment; the new colour goes (and its
    pull request, unless ``change_closed`` by its reviewer), the version
    returns to where it was before its approval, and the approver is
    told."""
    env = run.env
    _close(run, "failed", reason, change_closed)
    deployment = run.deployment_id
    if deployment.state in ("requested", "deploying", "rolling_out_canary"):
        deployment.write({"state": "failed", "message": reason})
    try:
        deployment.target_id._get_client().delete(plan(deployment))
    except Exception:  # noqa: BLE001 - the failure is recorded either way
        _logger.exception("removing the failed colour of %s", deployment.display_name)
    _return_version(deployment)
    message = env._(
        "The %(environment)s deployment failed: %(reason)s",
        environment=deployment.environment,
        reason=reason,
    )
    tell_approver(deployment, message)


def _close(run, state, reason, change_closed=False):
    run.write({"state": state, "finished_at": fields.Datetime.now(), "message": reason})
    why = {
        "failed": run.env._("an earlier stage failed"),
        "cancelled": run.env._("the run was cancelled"),
    }[state]
    for stage in run.stage_ids.filtered(lambda s: s.state in ("pending", "running")):
        stage._finish(
            "failed" if stage.state == "running" and state == "failed" else "skipped",
            why,
        )
    if run.change_branch:
        _withdraw_change(run, 0 if change_closed else run.change_number)


def _withdraw_change(run, number):
    """The run's pull request closed (``number``, unless its reviewer
    closed it) and its branch removed; a failure to is logged, not
    raised: the run is closed either way."""
    try:
        run.deployment_id.target_id._get_client().close_change(
            number, run.change_branch
        )
    except Exception:  # noqa: BLE001 - the run is closed either way
        _logger.exception("withdrawing the change of %s", run.display_name)
        return
    run.message_post(
        body=run.env._("Its pull request was withdrawn: %s", run.change_url or ""),
        subtype_xmlid="mail.mt_note",
    )


def _return_version(deployment):
    version = deployment.version_id
    if version.state in BEFORE_APPROVAL:
        version.write({"state": BEFORE_APPROVAL[version.state]})


def undeploy(deployments, reason):
    """Take ``deployments`` down, whatever they are doing. A pipeline run
    still open is cancelled first: the stage at work (it holds the run's
    lock) finishes, the others never start, and the version it was
    approving returns where it was; then what they run leaves the router
    and their ledger lines end (``serving.undeploy``)."""
    deployments = jobs.as_platform(deployments)
    runs = deployments.run_ids.filtered(lambda r: r.state in PIPELINE_OPEN_STATES)
    if runs:
        jobs.lock(runs)
        jobs.lock(deployments)
        for run in runs.filtered(lambda r: r.state in PIPELINE_OPEN_STATES):
            _close(run, "cancelled", reason)
            _return_version(run.deployment_id)
            run.deployment_id.message_post(
                body=run.env._("Its pipeline run was cancelled: %s", reason),
                subtype_xmlid="mail.mt_note",
            )
    serving.undeploy(deployments)
