# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of deployments: deploy (approve staging), promote,
deployments, undeploy, and the endpoint registry n8n reads."""

from datetime import datetime, timezone

from odoo import http
from odoo.http import request

from ..lifecycle import DEPLOYMENT_STATES, ENVIRONMENTS
from ..services import registry, serializers
from .framework import (
    JsonHTTPError,
    _body,
    _get,
    _int_arg,
    _json,
    _page,
    _text_arg,
    api_route,
)

MAX_REPLICAS = 16


def _choice(value, name, choices):
    if value is not None and value not in choices:
        raise JsonHTTPError(
            422, "invalid_input", f"{name} must be one of {', '.join(choices)}"
        )
    return value


def _reason(body):
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise JsonHTTPError(422, "invalid_input", "reason must be a string")
    return reason


def _latest_deployment(version, environment):
    return version.deployment_ids.filtered(
        lambda d: d.environment == environment
    ).sorted("id")[-1:]


class MlopsDeploymentsApi(http.Controller):
    @api_route("/versions/<int:version_id>/deploy", ["POST"])
    def deploy(self, version_id, **_params):
        body = _body()
        environment = body.get("environment", "staging")
        if environment != "staging":
            raise JsonHTTPError(
                422,
                "invalid_input",
                "deploy brings a version to staging; production is reached with "
                "POST /versions/<id>/promote",
            )
        strategy = _choice(body.get("strategy", "rolling"), "strategy", ["rolling"])
        replicas = body.get("replicas", 1)
        if (
            not isinstance(replicas, int)
            or isinstance(replicas, bool)
            or not (1 <= replicas <= MAX_REPLICAS)
        ):
            raise JsonHTTPError(
                422, "invalid_input", f"replicas is an integer from 1 to {MAX_REPLICAS}"
            )
        target = body.get("target")
        if target is not None and not isinstance(target, str):
            raise JsonHTTPError(422, "invalid_input", "target is a target's code")
        if body.get("resources") is not None and not isinstance(
            body["resources"], dict
        ):
            raise JsonHTTPError(422, "invalid_input", "resources is an object")
        version = _get("mlops.model.version", version_id, "version")
        version.action_approve_staging(
            reason=_reason(body), strategy=strategy, target=target, replicas=replicas
        )
        deployment = _latest_deployment(version, "staging")
        return _json({"deployment_id": deployment.id, "state": deployment.state}, 202)

    @api_route("/versions/<int:version_id>/promote", ["POST"])
    def promote(self, version_id, **_params):
        body = _body()
        strategy = _choice(
            body.get("strategy", "blue_green"), "strategy", ["blue_green", "canary"]
        )
        target = body.get("target")
        if target is not None and not isinstance(target, str):
            raise JsonHTTPError(422, "invalid_input", "target is a target's code")
        version = _get("mlops.model.version", version_id, "version")
        version.action_promote(reason=_reason(body), strategy=strategy, target=target)
        deployment = _latest_deployment(version, "production")
        return _json({"deployment_id": deployment.id, "state": deployment.state}, 202)

    @api_route("/deployments", ["GET"])
    def deployments(self, **_params):
        domain = []
        version_id = _int_arg("version_id", None, 1)
        if version_id:
            domain.append(("version_id", "=", version_id))
        environment = _choice(
            _text_arg("environment"), "environment", [e for e, _l in ENVIRONMENTS]
        )
        if environment:
            domain.append(("environment", "=", environment))
        state = _choice(_text_arg("state"), "state", [s for s, _l in DEPLOYMENT_STATES])
        if state:
            domain.append(("state", "=", state))
        return _page("mlops.deployment", domain, "id desc", serializers.deployment)

    @api_route("/deployments/<int:deployment_id>", ["GET"])
    def deployment(self, deployment_id, **_params):
        record = _get("mlops.deployment", deployment_id, "deployment")
        return _json(serializers.deployment(record, full=True))

    @api_route("/deployments/<int:deployment_id>", ["PATCH"])
    def update(self, deployment_id, **_params):
        body = _body()
        unknown = set(body) - {"replicas", "canary_percent"}
        if unknown or not body:
            raise JsonHTTPError(
                422, "invalid_input", "Send replicas or canary_percent, nothing else."
            )
        record = _get("mlops.deployment", deployment_id, "deployment")
        if "replicas" in body:
            replicas = body["replicas"]
            if (
                not isinstance(replicas, int)
                or isinstance(replicas, bool)
                or not (1 <= replicas <= MAX_REPLICAS)
            ):
                raise JsonHTTPError(
                    422,
                    "invalid_input",
                    f"replicas is an integer from 1 to {MAX_REPLICAS}",
                )
            record.action_set_replicas(replicas)
        if "canary_percent" in body:
            record.action_set_canary_share(body["canary_percent"])
        return _json(serializers.deployment(record))

    @api_route("/deployments/<int:deployment_id>", ["DELETE"])
    def undeploy(self, deployment_id, **_params):
        record = _get("mlops.deployment", deployment_id, "deployment")
        record.action_undeploy()
        return request.make_response("", status=204)

    @api_route("/deployments/<int:deployment_id>/rollback", ["POST"])
    def rollback(self, deployment_id, **_params):
        body = _body()
        record = _get("mlops.deployment", deployment_id, "deployment")
        serving = record.action_rollback(reason=_reason(body))
        return _json({"deployment_id": serving.id, "state": serving.state}, 202)

    @api_route("/endpoints", ["GET"])
    def endpoints(self, **_params):
        environment = _choice(
            _text_arg("environment"), "environment", [e for e, _l in ENVIRONMENTS]
        )
        items = registry.entries(request.env, environment, _text_arg("model"))
        tag = registry.etag(items)
        if request.httprequest.if_none_match.contains(tag.strip('"')):
            response = request.make_response("", status=304)
        else:
            now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
            response = _json(
                {"items": items, "generated_at": serializers.timestamp(now)}
            )
        response.headers["ETag"] = tag
        response.headers["Cache-Control"] = "no-cache"
        return response
