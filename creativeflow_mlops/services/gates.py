"""Odoo as the gate the cluster obeys: ``POST /gates/<model>/<environment>``
answers whether Odoo holds an approved promotion of the version the caller
names (docs/gitops/README.md). Flagger's ``confirm-rollout`` and
``confirm-promotion`` webhooks go on only on a 2xx; an Argo Rollouts
``web`` metric reads ``approved``. The caller authenticates with an API
key (a user of its own, who may read the model), or signs the request with
the gate secret (``verify_signature``); every answer is kept
(``mlops.gate.check``), the refusals too."""

import hmac
import os
from datetime import UTC, datetime

from odoo import fields, tools

from ..adapters.ci import callback_signature
from ..exceptions import InvalidInput, Unauthorized
from .operations import text

# the gate secret: MLOPS_GATE_SECRET, or mlops_gate_secret in Odoo's
# configuration file
SECRET_VARIABLE = "MLOPS_GATE_SECRET"
# a signature older or newer than this is refused
WINDOW_SECONDS = 300

# a version is approved for an environment while it is in one of these
# states, with an approval of that stage
APPROVED = {
    "staging": ("staging_pending", "staging"),
    "production": ("production_pending", "production"),
}
STAGES = {"staging": ("staging",), "production": ("production", "rollback")}


# what Flagger's webhooks send (name, namespace, phase, checksum, metadata)
# and a web metric's body (version): all strings, metadata's values too
FIELDS = ("version", "name", "namespace", "phase", "checksum")


def verify_signature(timestamp, signature, body, now=None):
    """Raise ``Unauthorized`` unless ``body`` is signed with the gate
    secret, as ``/ci/callback`` reports are with their run's:
    ``X-MLOps-Signature: sha256=<hex HMAC-SHA256 of "<X-MLOps-Timestamp>.<raw
    body>">``, within five minutes. A signed request asked again answers
    the same (a gate check changes nothing), so a replay gains nothing."""
    secret = os.environ.get(SECRET_VARIABLE) or tools.config.get("mlops_gate_secret")
    if not secret:
        raise Unauthorized(
            "No gate secret is set (MLOPS_GATE_SECRET): send an API key instead."
        )
    try:
        sent = int(timestamp or "")
    except ValueError:
        raise Unauthorized(
            "X-MLOps-Timestamp is the time of sending, in unix seconds."
        ) from None
    now = now if now is not None else datetime.now(UTC).timestamp()
    if abs(now - sent) > WINDOW_SECONDS:
        raise Unauthorized(
            f"The request was signed {int(now - sent)} seconds from now; older or "
            f"newer than {WINDOW_SECONDS} seconds is refused."
        )
    expected = callback_signature(secret, str(sent), body)
    if not hmac.compare_digest(expected, (signature or "").strip()):
        raise Unauthorized(
            "The signature does not match: sign '<timestamp>.<raw body>' with the "
            "gate secret (HMAC-SHA256), as 'X-MLOps-Signature: sha256=<hex>'."
        )


def check_body(body):
    """Refuse (422) what neither Flagger nor the documented web metric
    sends: another field, a value that is not a string."""
    unknown = sorted(set(body) - {*FIELDS, "metadata"})
    problems = {field: "unknown field" for field in unknown}
    for field in FIELDS:
        if field in body and not isinstance(body[field], str):
            problems[field] = "a string"
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(value, str) for value in metadata.values()
    ):
        problems["metadata"] = "an object of strings"
    if problems:
        error = InvalidInput(
            "; ".join(f"{field}: {problem}" for field, problem in problems.items())
        )
        error.details = problems
        raise error


def version_named(body):
    """The version the caller names: ``version`` (an Argo Rollouts ``web``
    metric's body), or Flagger's ``metadata.version``."""
    version = body.get("version")
    metadata = body.get("metadata")
    if version is None and isinstance(metadata, dict):
        version = metadata.get("version")
    return text({"version": version}, "version", limit=64)


def decide(env, model, environment, body):
    """``(status, answer)`` of a gate check, kept as an ``mlops.gate.check``."""
    name = version_named(body)
    version = env["mlops.model.version"].search(
        [("model_id", "=", model.id), ("version", "=", name or "")], limit=1
    )
    approval = env["mlops.version.approval"]
    if not name:
        status, code, reason = (
            403,
            "not_approved",
            "Name the version: 'version' in the body, or in Flagger's metadata.",
        )
    elif not version:
        status, code, reason = (
            403,
            "not_approved",
            f"{model.name} has no version {name}.",
        )
    elif version.state not in APPROVED[environment]:
        status, code, reason = (
            403,
            "not_approved",
            f"{version.display_name} is "
            f"{version._lifecycle_state_label(version.state)}: no approved "
            f"{environment} promotion of it.",
        )
    else:
        approval = version.approval_ids.filtered(
            lambda a: a.decision == "approved" and a.stage in STAGES[environment]
        ).sorted("id")[-1:]
        freezes = env["mlops.deploy.freeze"]._in_effect_at(
            environment, model.company_id
        )
        if not approval:
            status, code, reason = (
                403,
                "not_approved",
                f"{version.display_name} has no {environment} approval.",
            )
        elif freezes and not approval.freeze_override:
            status, code, reason = (
                409,
                "frozen",
                f"{environment.capitalize()} is frozen: {freezes._describe()}.",
            )
        else:
            status, code, reason = 200, "", ""
    line = env["mlops.promotion"].sudo()._current(model, environment)
    env["mlops.gate.check"].sudo().create(
        {
            "model_id": model.id,
            "environment": environment,
            "version": name or False,
            "version_id": version.id,
            "caller_id": env.user.id,
            "phase": _short(body.get("phase")),
            "source": _short(body.get("name")),
            "approved": status == 200,
            "status": status,
            "reason": reason or False,
            "promotion_id": line.id,
        }
    )
    answer = {
        "approved": status == 200,
        "model": model.name,
        "environment": environment,
        "version": name,
    }
    if status != 200:
        return status, {**answer, "error": {"code": code, "message": reason}}
    return status, {
        **answer,
        "approved_by": approval.user_id.name,
        "approved_at": fields.Datetime.to_string(approval.date),
        "reason": approval.reason or "",
        "freeze_override": approval.freeze_override or None,
    }


def _short(value):
    return value[:256] if isinstance(value, str) else False
