"""External pipeline runs: a CI provider (``adapters.ci``) runs the stages
of a deployment to an ``external`` target and reports each through
``POST /ci/callback``.

- ``trigger`` (the run's one queued job) asks the provider to start, with
  the run's id, what to deploy, and where and how to report;
- ``verify`` checks a report's signature: ``X-MLOps-Timestamp`` within 5
  minutes of now, ``X-MLOps-Signature`` the HMAC of ``"<timestamp>.<raw
  body>"`` with the run's own secret (derived from the database secret, so
  stored nowhere), a signature never seen before (a replayed delivery is
  refused);
- ``report`` records the stage: stages only move forward (a repeated or
  older report changes nothing), a finished run never reopens, a failed
  stage fails the run, and ``switch_traffic`` succeeding makes the
  deployment serve at the ``endpoint_url`` the pipeline names;
- ``expire`` (cron) fails the runs whose pipeline went silent.
"""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from odoo import fields

from ..adapters.ci import CIRefused, TriggerRequest, callback_signature
from ..adapters.targets import STAGES
from ..exceptions import InvalidInput, Unauthorized
from . import deployment as deployments
from . import errors, jobs, settings
from . import resources as resource_service

CALLBACK_PATH = f"{errors.REST_PREFIX}/ci/callback"
WINDOW_SECONDS = 300
MAX_CALLBACK_BYTES = 64 * 1024
REPORTED = ("running", "succeeded", "failed", "skipped")
# a stage's state moves forward only
RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2, "skipped": 2}
# an external pipeline's stages
STAGE_NAMES = list(STAGES)
MAX_URL = 2048
MAX_TEXT = 4000


def new_nonce():
    return secrets.token_hex(16)


def callback_secret(run):
    """The run's signing secret: an HMAC of its id and nonce with the
    database's secret; the pipeline is given it, Odoo re-derives it."""
    key = run.env["ir.config_parameter"].sudo().get_param("database.secret")
    message = f"mlops.pipeline.run:{run.id}:{run.sudo().callback_nonce}"
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def callback_url(env):
    base = env["ir.config_parameter"].sudo().get_param("web.base.url") or ""
    return base.rstrip("/") + CALLBACK_PATH


# ---------------------------------------------------------------------------
# Triggering
# ---------------------------------------------------------------------------


def trigger(run):
    """Queued job: start the run's pipeline at its provider. A provider out
    of reach is tried again (the job's retry pattern) until the last try,
    which fails the run; a refusal fails it at once."""
    jobs.lock(run)
    if run.state != "queued":
        return f"nothing to do (run {run.state})"
    deployment = run.deployment_id
    version = deployment.version_id
    request = TriggerRequest(
        run_id=run.id,
        deployment_id=deployment.id,
        model=version.model_id.slug,
        version=version.version,
        environment=deployment.environment,
        strategy=deployment.strategy,
        replicas=deployment.replicas,
        artifact_uri=version.artifact_uri or "",
        artifact_sha256=version.artifact_sha256 or "",
        callback_url=callback_url(run.env),
        callback_secret=callback_secret(run),
        resources=resource_service.of(deployment),
    )
    provider = run.ci_provider_id

    def work():
        try:
            return provider._get_client().trigger(request)
        except CIRefused as refused:
            return refused

    triggered, problem = jobs.attempt(run.env, work, f"triggering {provider.name}")
    if isinstance(triggered, CIRefused):
        problem = errors.describe(triggered)
    if problem:
        deployments.fail(run, problem)
        return problem
    run.write(
        {
            "state": "running",
            "started_at": fields.Datetime.now(),
            "external_id": triggered.external_id or False,
            "external_url": triggered.url or False,
            "message": triggered.message,
        }
    )
    if deployment.state == "requested":
        deployment.write({"state": "deploying"})
    return triggered.message


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def find_run(env, run_id):
    """The run a report names, or None (told apart from a bad signature by
    nobody: both are a 401)."""
    if not isinstance(run_id, int) or isinstance(run_id, bool) or run_id <= 0:
        return None
    run = env["mlops.pipeline.run"].sudo().browse(run_id).exists()
    return run if run and run.provider != "internal" else None


def verify(run, timestamp, signature, body, now=None):
    """Raise ``Unauthorized`` unless the report is signed with ``run``'s
    secret within the window and was never delivered before."""
    env = run.env if run else None
    refused = Unauthorized(
        "The signature does not match: sign '<timestamp>.<raw body>' with the "
        "run's secret (HMAC-SHA256) and send it as 'X-MLOps-Signature: sha256=<hex>'."
    )
    if not run:
        raise refused
    try:
        sent = int(timestamp or "")
    except ValueError:
        raise Unauthorized(
            env._("X-MLOps-Timestamp is the time of sending, in unix seconds.")
        ) from None
    now = now if now is not None else datetime.now(UTC).timestamp()
    if abs(now - sent) > WINDOW_SECONDS:
        raise Unauthorized(
            env._(
                "The report was signed %(age)s seconds from now; reports older or "
                "newer than %(window)s seconds are refused.",
                age=int(now - sent),
                window=WINDOW_SECONDS,
            )
        )
    expected = callback_signature(callback_secret(run), str(sent), body)
    if not hmac.compare_digest(expected, (signature or "").strip()):
        raise refused
    seen = (
        env["mlops.pipeline.delivery"]
        .sudo()
        .search_count([("signature", "=", expected)], limit=1)
    )
    if seen:
        raise Unauthorized(
            env._(
                "This delivery was received before: a replayed report is refused "
                "(sign each delivery anew)."
            )
        )
    return expected, sent


def _text(body, name, limit=MAX_TEXT):
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"{name} is a string of at most {limit} characters")
    return value.replace("\x00", "")


def parse(body):
    """(stage, status, endpoint_url, image, message) of a report, or
    ``InvalidInput``."""
    stage = body.get("stage")
    if stage not in STAGE_NAMES:
        raise InvalidInput(f"stage is one of {', '.join(STAGE_NAMES)}")
    status = body.get("status")
    if status not in REPORTED:
        raise InvalidInput(f"status is one of {', '.join(REPORTED)}")
    endpoint = _text(body, "endpoint_url", MAX_URL)
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise InvalidInput("endpoint_url is an http(s) URL")
    if stage == "switch_traffic" and status == "succeeded" and not endpoint:
        raise InvalidInput(
            "a switch_traffic that succeeded names the endpoint_url that serves"
        )
    return stage, status, endpoint, _text(body, "image", 512), _text(body, "message")


def report(run, body, signature, sent):
    """Record a verified report; returns the callback's answer. Only a
    move forward changes anything."""
    stage_name, status, endpoint, image, message = parse(body)
    run = jobs.as_platform(run)
    jobs.lock(run)
    run.last_heard_at = fields.Datetime.now()
    stage = run.stage_ids.filtered(lambda s: s.name == stage_name)
    changed, note = _apply(run, stage, status, endpoint, image, message)
    run.env["mlops.pipeline.delivery"].sudo().create(
        {
            "run_id": run.id,
            "signature": signature,
            "sent_at": datetime.fromtimestamp(sent, UTC).replace(tzinfo=None),
            "stage": stage_name,
            "status": status,
            "changed": changed,
            "note": note,
        }
    )
    return {
        "run_id": run.id,
        "state": run.state,
        "stage": {"name": stage_name, "state": stage.state},
        "changed": changed,
        "message": note,
    }


def _apply(run, stage, status, endpoint, image, message):
    """(changed, why) of a report on ``stage``."""
    if run.state not in ("queued", "running"):
        return False, f"the run {run.state} already: a late report changes nothing"
    if RANK[status] <= RANK[stage.state]:
        return False, f"{stage.name} is {stage.state} already"
    if run.state == "queued":
        # the report came before the trigger's answer was recorded
        run.write({"state": "running", "started_at": fields.Datetime.now()})
    deployment = run.deployment_id
    if deployment.state == "requested":
        deployment.write({"state": "deploying"})
    if image:
        run.image = image
    now = fields.Datetime.now()
    # stages the pipeline went past without a word
    for earlier in run.stage_ids.filtered(
        lambda s: s.sequence < stage.sequence and s.state in ("pending", "running")
    ):
        earlier._finish(
            "skipped" if earlier.state == "pending" else "succeeded",
            "not reported by the pipeline",
        )
    if status == "running":
        stage.write({"state": "running", "started_at": now})
        return True, f"{stage.name} running"
    if not stage.started_at:
        stage.started_at = now
    stage._finish(status, message)
    if status == "failed":
        deployments.fail(run, message or f"the pipeline's {stage.name} failed")
        return True, f"{stage.name} failed: the run failed"
    if stage.name == "switch_traffic" and status == "succeeded":
        # the server's base URL, or its model's infer URL
        suffix = f"/v2/models/{deployment.model_id.slug}/infer"
        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith(suffix):
            endpoint += suffix
        log = deployments.take_traffic(deployment, endpoint)
        stage.log = ((stage.log or "") + "\n" + log).strip()
        deployments.succeed(run)
        return True, "switch_traffic succeeded: the deployment serves"
    return True, f"{stage.name} {status}"


def expire(env):
    """Cron: fail the external runs whose pipeline has said nothing for
    ``pipeline_timeout_minutes``; returns them."""
    limit = fields.Datetime.now() - timedelta(
        minutes=settings.get(env, "pipeline_timeout_minutes")
    )
    silent = (
        env["mlops.pipeline.run"]
        .sudo()
        .search(
            [
                ("provider", "!=", "internal"),
                ("state", "in", ("queued", "running")),
                ("last_heard_at", "<", limit),
            ]
        )
    )
    for run in jobs.as_platform(silent):
        jobs.lock(run)
        if run.state in ("queued", "running"):
            deployments.fail(
                run,
                env._(
                    "The pipeline said nothing for %s minutes.",
                    settings.get(env, "pipeline_timeout_minutes"),
                ),
            )
    return silent
