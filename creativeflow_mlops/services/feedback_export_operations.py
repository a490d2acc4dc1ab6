"""The operations of feedback exports (REST and JSON-RPC share them;
docs/reference/api.md): ``feedback.export`` and ``feedback.export_get``."""

from ..exceptions import Conflict, InvalidInput
from . import feedback_exports
from .operations import date_time, get, identifier, integer, operation


@operation("feedback.export", status=202, takes=["model_id", "since", "until"])
def feedback_export(env, params):
    model_id = integer(params, "model_id", None, 1)
    if not model_id:
        raise InvalidInput("model_id is required")
    since = date_time(params, "since")
    until = date_time(params, "until")
    # what the body's schema cannot say
    if since and until and since >= until:
        raise Conflict("until comes after since")
    model = get(env, "mlops.model", model_id, "model")
    export = feedback_exports.request(env, model, since, until)
    return {"export_id": export.id, "state": export.state}


@operation("feedback.export_get")
def feedback_export_get(env, params):
    return feedback_exports.to_json(
        get(env, "mlops.feedback.export", identifier(params), "feedback export")
    )
