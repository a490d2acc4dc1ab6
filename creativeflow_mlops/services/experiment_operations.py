"""The operations of A/B experiments and business outcomes (REST and
JSON-RPC share them; docs/reference/api.md): ``experiments.create``,
``experiments.get``, ``experiments.start``, ``experiments.stop``,
``outcomes.create``."""

import math

from ..exceptions import Conflict, InvalidInput
from ..lifecycle import ENVIRONMENTS, EXPERIMENT_METRICS
from . import experiments
from .operations import (
    choice,
    date_time,
    get,
    identifier,
    integer,
    operation,
    text,
)

MAX_ARMS = 10


def _arms(params):
    arms = params.get("arms")
    if not isinstance(arms, list) or not 2 <= len(arms) <= MAX_ARMS:
        raise InvalidInput(f"arms is a list of 2 to {MAX_ARMS} arms")
    clean = []
    for index, arm in enumerate(arms):
        if not isinstance(arm, dict) or set(arm) - {"version_id", "weight"}:
            raise InvalidInput(f"arms.{index} is {{version_id, weight}}")
        clean.append(
            (
                integer(arm, "version_id", None, 1)
                or _missing(f"arms.{index}.version_id"),
                integer(arm, "weight", None, 0, 100),
            )
        )
    if any(weight is None for _version, weight in clean):
        raise InvalidInput("each arm needs a weight from 0 to 100")
    # what the body's schema cannot say: a conflict with the arms' rules
    if sum(weight for _version, weight in clean) != 100:
        raise Conflict("the arms' weights add up to 100")
    if len({version for version, _weight in clean}) != len(clean):
        raise Conflict("each arm is another version")
    return clean


def _missing(name):
    raise InvalidInput(f"{name} is required")


@operation(
    "experiments.create",
    status=201,
    takes=[
        "model_id",
        "environment",
        "arms",
        "metric",
        "ends_at",
        "name",
        "outcome_name",
        "higher_is_better",
        "alpha",
    ],
)
def experiments_create(env, params):
    model = get(
        env,
        "mlops.model",
        integer(params, "model_id", None, 1) or _missing("model_id"),
        "model",
    )
    environment = choice(
        params, "environment", [e for e, _l in ENVIRONMENTS], "production"
    )
    metric = choice(params, "metric", [m for m, _l in EXPERIMENT_METRICS], "rating")
    outcome = text(params, "outcome_name", 100)
    if metric == "outcome" and not outcome:
        raise Conflict("a business outcome metric needs outcome_name")
    higher = params.get("higher_is_better", True)
    if not isinstance(higher, bool):
        raise InvalidInput("higher_is_better is true or false")
    alpha = params.get("alpha", 0.05)
    if (
        not isinstance(alpha, int | float)
        or isinstance(alpha, bool)
        or not 0 < alpha < 0.5
    ):
        raise InvalidInput("alpha is a number between 0 and 0.5")
    arms = []
    for version_id, weight in _arms(params):
        version = get(env, "mlops.model.version", version_id, "version")
        if version.model_id != model:
            raise Conflict(f"version {version_id} is not a version of model {model.id}")
        arms.append((0, 0, {"version_id": version.id, "weight": weight}))
    experiment = env["mlops.experiment"].create(
        {
            "name": text(params, "name", 200) or f"{model.name} {environment}",
            "model_id": model.id,
            "environment": environment,
            "metric": metric,
            "outcome_name": outcome or False,
            "higher_is_better": higher,
            "alpha": float(alpha),
            "ends_at": date_time(params, "ends_at") or False,
            "arm_ids": arms,
        }
    )
    return experiments.to_json(experiment)


@operation("experiments.get")
def experiments_get(env, params):
    return experiments.to_json(
        get(env, "mlops.experiment", identifier(params), "experiment")
    )


@operation("experiments.start", takes=[])
def experiments_start(env, params):
    experiment = get(env, "mlops.experiment", identifier(params), "experiment")
    experiment.action_start()
    return experiments.to_json(experiment)


@operation("experiments.stop", takes=[])
def experiments_stop(env, params):
    experiment = get(env, "mlops.experiment", identifier(params), "experiment")
    experiment.action_stop()
    return experiments.to_json(experiment)


@operation("outcomes.create", status=201, takes=["request_id", "name", "value"])
def outcomes_create(env, params):
    request_id = text(params, "request_id", 128)
    name = text(params, "name", 100)
    if not request_id:
        raise InvalidInput("request_id is the call's X-Request-Id")
    if not name:
        raise InvalidInput("name is the outcome's name")
    value = params.get("value")
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
    ):
        raise InvalidInput("value is a finite number")
    outcome = experiments.record_outcome(env, request_id, name, float(value))
    return {
        "id": outcome.id,
        "request_id": outcome.request_id,
        "name": outcome.name,
        "value": outcome.value,
        "deployment_id": outcome.deployment_id.id or None,
    }
