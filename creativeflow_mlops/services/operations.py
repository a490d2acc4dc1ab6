"""The operations of the REST and JSON-RPC faces (docs/reference/api.md):
one implementation each, registered under the contract's JSON-RPC name.
An operation is given the caller's environment and the request's
parameters in one dict (a REST route's path ids, query and body; a
JSON-RPC call's ``params``) and returns ``(status, body)``, the REST
answer; errors are the exceptions of ``..exceptions`` and Odoo's, which
each face maps to the contract's shape. So a rule (a right, a record rule,
a company, a state) holds the same on both faces: there is one place it is
checked.

The multipart upload (``POST /models/upload``) is the REST face's alone: it
streams a body JSON-RPC does not carry.
"""

import re
from datetime import UTC, datetime

from ..exceptions import Conflict, InvalidInput, MLOpsError, NotFound
from ..lifecycle import DEPLOYMENT_STATES, ENVIRONMENTS, VERSION_STATES
from . import drift_reports, endpoint_registry, events, monitoring, reads, serializers

MAX_LIMIT = 200
# PostgreSQL takes a LIMIT or OFFSET up to int8; no page is that far
MAX_OFFSET = 2**31 - 1
MAX_REPLICAS = 16
MAX_TEXT = 10_000
# GET /deployments/<id>/metrics: 30 days of minutes at most
MAX_METRICS_WINDOW = 30 * 24 * 60
# the date-times of a body (the schemas' ``format: date-time``)
RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

OPERATIONS = {}


class BadRequest(MLOpsError):
    """A parameter of the wrong type or out of its range (400)."""


def operation(name, status=200, takes=None):
    """Register ``func(env, params) -> body`` as the operation ``name``,
    answering ``status`` when it succeeds. ``takes``, for an operation that
    changes something, names what it takes besides ``id``: any other is
    refused before anything runs (a typo never passes for a default)."""

    def decorator(func):
        accepted = None if takes is None else frozenset(takes) | {"id"}
        OPERATIONS[name] = (func, status, accepted)
        return func

    return decorator


def run(env, name, params):
    """``(status, body)`` of the operation ``name``; ``NotFound`` for a name
    the contract does not have."""
    if name not in OPERATIONS:
        raise NotFound(f"No operation {name!r}; see the contract's table.")
    if not isinstance(params, dict):
        raise BadRequest("params is a JSON object.")
    func, status, accepted = OPERATIONS[name]
    unknown = accepted is not None and set(params) - accepted
    if unknown:
        error = InvalidInput(
            f"unknown fields: {', '.join(sorted(unknown))}; {name} takes "
            f"{', '.join(sorted(accepted - {'id'})) or 'nothing more'}"
        )
        error.details = {field: "unknown field" for field in sorted(unknown)}
        raise error
    return status, func(env, params)


# ---------------------------------------------------------------------------
# Parameters: a REST query gives strings, a body or JSON-RPC typed values
# ---------------------------------------------------------------------------


def integer(params, name, default=None, low=0, high=MAX_OFFSET):
    raw = params.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool) or raw == "":
        raise BadRequest(f"{name} must be an integer")
    if isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer") from None
    if not isinstance(raw, int):
        raise BadRequest(f"{name} must be an integer")
    if raw < low or (high is not None and raw > high):
        raise BadRequest(f"{name} must be between {low} and {high}")
    return raw


def text(params, name, limit=MAX_TEXT):
    """A text, or None; NUL (which PostgreSQL refuses in text) is a 400."""
    raw = params.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidInput(f"{name} must be a string")
    if "\x00" in raw:
        raise BadRequest(f"{name} must not contain NUL")
    if len(raw) > limit:
        raise InvalidInput(f"{name} is at most {limit} characters")
    return raw


def date_time(params, name):
    """An RFC 3339 date-time (the schema's ``format``), as naive UTC to the
    second: any case of T and Z, any fraction, a leap second as :59."""
    raw = params.get(name)
    if raw is None:
        return None
    found = isinstance(raw, str) and RFC3339.fullmatch(raw)
    if not found:
        raise InvalidInput(f"{name} is an RFC 3339 date and time")
    day, clock, offset = found.groups()
    if clock.endswith(":60"):
        clock = clock[:6] + "59"  # a leap second
    offset = "+00:00" if offset in ("Z", "z") else offset
    if day.startswith("0000"):
        raise Conflict(f"{name} is out of range")
    try:
        local = datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:
        raise InvalidInput(f"{name} is an RFC 3339 date and time") from None
    try:
        return local.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        # a valid stamp past what Python holds once in UTC
        raise Conflict(f"{name} is out of range") from None


def choice(params, name, choices, default=None):
    value = params.get(name, default)
    if value is not None and value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}")
    return value


def identifier(params, name="id"):
    return integer(params, name, low=1) or _missing(name)


def _missing(name):
    raise InvalidInput(f"{name} is required")


def contains(value):
    """An ``=ilike`` pattern matching ``value`` anywhere, its own ``%``,
    ``_`` and backslashes taken literally."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def get(env, model, record_id, label):
    """A record the caller may read. No rights on the model at all is a 403;
    a record that does not exist or that a rule hides (another company's) is
    the same 404, so ids do not tell what exists elsewhere."""
    Model = env[model]
    Model.check_access("read")
    # one query: the id through the caller's rules, archived records too
    # (as ``has_access``)
    found = Model.with_context(active_test=False)._search([("id", "=", record_id)])
    record = Model.browse(found)
    if not record:
        raise NotFound(f"No {label} {record_id}.")
    return record


# what the answers on models and versions read besides their own records:
# models, versions, their validations and deployments all carry the same
# company rule, on a company stored from the model, and users' logins
MODEL_TREE = ("mlops.model", "mlops.model.version", "mlops.model.tag", "res.users")
VERSION_TREE = (*MODEL_TREE, "mlops.validation.result", "mlops.deployment")


def readable_tree(records, models):
    """``records``, found through the caller's rules, read without them once
    the caller's rights on every model the answer reads are checked. The
    records related to a version are of its company (stored related
    fields), so their company rules let the same rows through; applying them
    again on each related read was half of a ``GET /versions/<id>``."""
    check_tree(records.env, models)
    return records.sudo()


def check_tree(env, models):
    """The caller may read every model of an answer (403 otherwise)."""
    for model in models:
        env[model].check_access("read")


def bounds(params):
    """``(limit, offset)`` of a page."""
    return integer(params, "limit", 50, 1, MAX_LIMIT), integer(params, "offset", 0)


def page(env, params, model, domain, order, serialize, tree=()):
    """``{"items", "total"}`` for the ``limit`` and ``offset`` asked; read
    through ``readable_tree`` when ``tree`` names the models read."""
    limit, offset = bounds(params)
    Model = env[model]
    records = Model.search(domain, limit=limit, offset=offset, order=order)
    if tree:
        records = readable_tree(records, tree)
    return {
        "items": [serialize(r) for r in records],
        "total": Model.search_count(domain),
    }


def _reason(params):
    return text(params, "reason")


def accepted(version):
    """The 202 of an upload: the version as registered."""
    return {
        "model_id": version.model_id.id,
        "version_id": version.id,
        "state": version.state,
        "artifact": serializers.artifact(version),
    }


def _override(params):
    """A Manager's reason to go past a deploy freeze, or None."""
    reason = text(params, "override_freeze")
    if reason is not None and not reason.strip():
        raise InvalidInput("override_freeze is a reason: more than blanks")
    return reason


def _latest_deployment(version, environment):
    return version.deployment_ids.filtered(
        lambda d: d.environment == environment
    ).sorted("id")[-1:]


# ---------------------------------------------------------------------------
# Models and versions
# ---------------------------------------------------------------------------


@operation("models.list")
def models_list(env, params):
    domain = []
    query = text(params, "q")
    if query:
        pattern = contains(query)
        domain = ["|", ("name", "=ilike", pattern), ("description", "=ilike", pattern)]
    return page(
        env, params, "mlops.model", domain, "name, id", serializers.model, MODEL_TREE
    )


@operation("models.get")
def models_get(env, params):
    record = get(env, "mlops.model", identifier(params), "model")
    return serializers.model(readable_tree(record, MODEL_TREE), True)


@operation("versions.list")
def versions_list(env, params):
    model_id = identifier(params, "model_id")
    get(env, "mlops.model", model_id, "model")
    domain = [("model_id", "=", model_id)]
    state = choice(params, "state", dict(VERSION_STATES))
    if state:
        domain.append(("state", "=", state))
    check_tree(env, MODEL_TREE)
    return reads.versions_page(env, domain, *bounds(params))


@operation("versions.get")
def versions_get(env, params):
    version_id = identifier(params)
    env["mlops.model.version"].check_access("read")
    answer = reads.version(env, version_id)
    if answer is None:
        raise NotFound(f"No version {version_id}.")
    check_tree(env, VERSION_TREE)
    return answer


@operation("versions.validate", status=202, takes=["scan_types"])
def versions_validate(env, params):
    scan_types = params.get("scan_types")
    if scan_types is not None and not (
        isinstance(scan_types, list) and all(isinstance(s, str) for s in scan_types)
    ):
        raise InvalidInput("scan_types must be a list of names")
    record = get(env, "mlops.model.version", identifier(params), "version")
    record.action_validate(scan_types)
    return {"version_id": record.id, "state": record.state}


def _replicas(value):
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not (1 <= value <= MAX_REPLICAS)
    ):
        raise InvalidInput(f"replicas is an integer from 1 to {MAX_REPLICAS}")
    return value


def _target_code(params):
    target = params.get("target")
    if target is not None and not isinstance(target, str):
        raise InvalidInput("target is a target's code")
    return target


@operation(
    "versions.deploy",
    status=202,
    takes=[
        "environment",
        "strategy",
        "replicas",
        "resources",
        "target",
        "reason",
        "override_freeze",
    ],
)
def versions_deploy(env, params):
    if params.get("environment", "staging") != "staging":
        raise InvalidInput(
            "deploy brings a version to staging; production is reached with "
            "POST /versions/<id>/promote"
        )
    strategy = choice(params, "strategy", ["rolling"], "rolling")
    replicas = _replicas(params.get("replicas", 1))
    target = _target_code(params)
    reason = _reason(params)
    version = get(env, "mlops.model.version", identifier(params), "version")
    version.action_approve_staging(
        reason=reason,
        strategy=strategy,
        target=target,
        replicas=replicas,
        # checked by the action, which every path goes through
        resources=params.get("resources"),
        override_freeze=_override(params),
    )
    deployment = _latest_deployment(version, "staging")
    return {"deployment_id": deployment.id, "state": deployment.state}


@operation(
    "versions.promote",
    status=202,
    takes=["strategy", "canary_percent", "target", "reason", "override_freeze"],
)
def versions_promote(env, params):
    strategy = choice(params, "strategy", ["blue_green", "canary"], "blue_green")
    target = _target_code(params)
    reason = _reason(params)
    version = get(env, "mlops.model.version", identifier(params), "version")
    version.action_promote(
        reason=reason,
        strategy=strategy,
        target=target,
        canary_percent=params.get("canary_percent"),
        override_freeze=_override(params),
    )
    deployment = _latest_deployment(version, "production")
    return {"deployment_id": deployment.id, "state": deployment.state}


# ---------------------------------------------------------------------------
# Direct uploads
# ---------------------------------------------------------------------------


@operation(
    "uploads.create",
    status=201,
    takes=[
        "model",
        "version",
        "filename",
        "size",
        "content_type",
        "metadata",
        "sha256",
    ],
)
def uploads_create(env, params):
    return env["mlops.upload"]._start(params)


@operation("uploads.complete", status=202, takes=["parts"])
def uploads_complete(env, params):
    upload = env["mlops.upload"]._find(params.get("id"))
    version = upload._complete(params.get("parts"))
    # the version stays draft until the queued verification registers it
    # (its SHA-256 is unknown until then); uploads.get tells how that went
    answer = accepted(version)
    if version.state == "draft":
        answer["artifact"].update(
            uri=upload.storage_backend_id._get_store().uri(upload.object_key),
            size=int(upload.size),
            filename=upload.filename,
        )
    return {**answer, "upload_id": upload.token}


@operation("uploads.get")
def uploads_get(env, params):
    """Where a direct upload stands: ``verifying`` after the completion,
    ``completed`` once its version is registered, ``failed`` or ``aborted``
    with the reason (not in the contract's table: added so a client can
    tell why a draft went away)."""
    upload = env["mlops.upload"]._find(params.get("id"))
    return {
        "upload_id": upload.token,
        "state": upload.state,
        "message": upload.message or None,
        "version_id": upload.version_id.id or None,
        "part_size": upload.part_size,
        "parts": upload.part_count,
        "expires_at": serializers.timestamp(upload.expires_at),
    }


# ---------------------------------------------------------------------------
# Deployments and the endpoint registry
# ---------------------------------------------------------------------------


@operation("deployments.list")
def deployments_list(env, params):
    domain = []
    version_id = integer(params, "version_id", None, 1)
    if version_id:
        domain.append(("version_id", "=", version_id))
    environment = choice(params, "environment", [e for e, _l in ENVIRONMENTS])
    if environment:
        domain.append(("environment", "=", environment))
    state = choice(params, "state", [s for s, _l in DEPLOYMENT_STATES])
    if state:
        domain.append(("state", "=", state))
    return page(
        env, params, "mlops.deployment", domain, "id desc", serializers.deployment
    )


@operation("deployments.get")
def deployments_get(env, params):
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    return serializers.deployment(record, full=True)


@operation("deployments.metrics")
def deployments_metrics(env, params):
    """The deployment's kept metrics over the last ``window`` minutes, one
    item per ``step`` minutes (a step past the window: one item)."""
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    window = integer(params, "window", 60, 1, MAX_METRICS_WINDOW)
    step = min(integer(params, "step", 1, 1, MAX_METRICS_WINDOW), window)
    return {"items": monitoring.series(record, window, step)}


@operation("deployments.drift")
def deployments_drift(env, params):
    """The deployment's latest drift report."""
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    report = env["mlops.drift.report"].search(
        [("deployment_id", "=", record.id)], order="at desc, id desc", limit=1
    )
    if not report:
        raise NotFound(env._("No drift report of deployment %s yet.", record.id))
    return drift_reports.to_json(report)


@operation("deployments.update", takes=["replicas", "canary_percent"])
def deployments_update(env, params):
    changes = {k: v for k, v in params.items() if k != "id"}
    if not changes:
        raise InvalidInput("Send replicas or canary_percent.")
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    if "replicas" in changes:
        record.action_set_replicas(_replicas(changes["replicas"]))
    if "canary_percent" in changes:
        record.action_set_canary_share(changes["canary_percent"])
    return serializers.deployment(record)


@operation("deployments.rollback", status=202, takes=["reason"])
def deployments_rollback(env, params):
    reason = _reason(params)
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    serving = record.action_rollback(reason=reason)
    return {"deployment_id": serving.id, "state": serving.state}


@operation("deployments.delete", status=204, takes=[])
def deployments_delete(env, params):
    record = get(env, "mlops.deployment", identifier(params), "deployment")
    record.action_undeploy()
    return None


@operation("endpoints.list")
def endpoints_list(env, params):
    environment = choice(params, "environment", [e for e, _l in ENVIRONMENTS])
    items = endpoint_registry.cached_entries(env, environment, text(params, "model"))
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    return {"items": items, "generated_at": serializers.timestamp(now)}


@operation("events.list")
def events_list(env, params):
    since = integer(params, "since", 0)
    limit = integer(params, "limit", 100, 1, events.MAX_LIMIT)
    version_id = integer(params, "version_id", None, 1)
    return events.page(env, since, limit, version_id)


# ---------------------------------------------------------------------------
# Feedback
# ---------------------------------------------------------------------------


@operation("feedback.create", status=201)
def feedback_create(env, params):
    allowed = {
        "version_id",
        "deployment_id",
        "rating",
        "comment",
        "data",
        "generation_request_id",
    }
    unknown = set(params) - allowed
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    version_id = integer(params, "version_id", None, 1)
    deployment_id = integer(params, "deployment_id", None, 1)
    if not version_id and not deployment_id:
        raise InvalidInput("name the version_id or the deployment_id")
    values = {}
    if deployment_id:
        deployment = get(env, "mlops.deployment", deployment_id, "deployment")
        values["deployment_id"] = deployment.id
        values["version_id"] = deployment.version_id.id
    if version_id:
        version = get(env, "mlops.model.version", version_id, "version")
        if deployment_id and version.id != values["version_id"]:
            raise InvalidInput("the deployment serves another version")
        values["version_id"] = version.id
    rating = params.get("rating")
    if rating is not None and (
        not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5
    ):
        raise InvalidInput("rating is an integer from 1 to 5")
    data = params.get("data")
    if data is not None and not isinstance(data, dict | list):
        raise InvalidInput("data is a JSON object or array")
    if data is not None and not data:
        # kept as it came or not at all: an empty one would read back null
        raise InvalidInput("data is empty: send null or leave it out")
    values.update(
        rating=rating or 0,
        comment=text(params, "comment") or False,
        data=data,
        generation_request_id=text(params, "generation_request_id", 200) or False,
    )
    return serializers.feedback(env["mlops.feedback"].create(values))


@operation("feedback.list")
def feedback_list(env, params):
    version = get(env, "mlops.model.version", identifier(params), "version")
    return page(
        env,
        params,
        "mlops.feedback",
        [("version_id", "=", version.id)],
        "id desc",
        serializers.feedback,
    )
