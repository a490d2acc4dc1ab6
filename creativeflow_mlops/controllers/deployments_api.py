# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of deployments: deploy (approve staging), promote,
deployments, undeploy, the endpoint registry n8n reads, and feedback."""

from odoo import http
from odoo.http import request

from ..lifecycle import DEPLOYMENT_STATES
from ..services import (  # noqa: F401 pylint: disable=unused-import
    endpoint_registry,
    feedback_export_operations,  # registers the operations the routes run
    operations,
    platform_metrics,
)
from .framework import _body, _operate, _query, api_route
from .openapi_schemas import BODIES, ID, PAGE, STRING, page_of, ref

ENVIRONMENT = ("environment", {"enum": ["staging", "production"]})


class MlopsDeploymentsApi(http.Controller):
    """Each route maps its request to its operation (services.operations),
    which the JSON-RPC face runs too."""

    @api_route(
        "/versions/<int:version_id>/deploy",
        ["POST"],
        summary="Approve a validated version for staging",
        body=BODIES["deploy"],
        answer=(202, ref("DeploymentAccepted")),
        errors=(409,),
    )
    def deploy(self, version_id, **_params):
        return _operate("versions.deploy", _body(), id=version_id)

    @api_route(
        "/versions/<int:version_id>/promote",
        ["POST"],
        summary="Promote a staging version to production",
        body=BODIES["promote"],
        answer=(202, ref("DeploymentAccepted")),
        errors=(409,),
    )
    def promote(self, version_id, **_params):
        return _operate("versions.promote", _body(), id=version_id)

    @api_route(
        "/deployments",
        ["GET"],
        summary="Deployments",
        query=(
            ("version_id", ID),
            ENVIRONMENT,
            ("state", {"enum": [s for s, _label in DEPLOYMENT_STATES]}),
            *PAGE,
        ),
        answer=(200, page_of("Deployment")),
    )
    def deployments(self, **_params):
        return _operate("deployments.list", _query())

    @api_route(
        "/deployments/<int:deployment_id>",
        ["GET"],
        summary="A deployment, with its pipeline run and live status",
        answer=(200, ref("Deployment")),
    )
    def deployment(self, deployment_id, **_params):
        return _operate("deployments.get", id=deployment_id)

    @api_route(
        "/deployments/<int:deployment_id>/metrics",
        ["GET"],
        summary="A deployment's kept metrics, one item per step",
        query=(
            ("window", {"type": "integer", "minimum": 1, "maximum": 43200}),
            ("step", {"type": "integer", "minimum": 1, "maximum": 43200}),
        ),
        answer=(200, ref("DeploymentMetrics")),
    )
    def metrics(self, deployment_id, **_params):
        return _operate("deployments.metrics", _query(), id=deployment_id)

    @api_route(
        "/deployments/<int:deployment_id>/drift",
        ["GET"],
        summary="A deployment's latest drift report",
        answer=(200, ref("DriftReport")),
        errors=(404,),
    )
    def drift(self, deployment_id, **_params):
        return _operate("deployments.drift", id=deployment_id)

    @api_route(
        "/platform/metrics",
        ["GET"],
        summary="The addon's own figures, for Prometheus",
        answer=(200, platform_metrics.CONTENT_TYPE),
    )
    def platform_metrics(self, **_params):
        request.env["mlops.model"].check_access("read")
        return request.make_response(
            platform_metrics.exposition(request.env),
            headers=[("Content-Type", platform_metrics.CONTENT_TYPE)],
        )

    @api_route(
        "/deployments/<int:deployment_id>",
        ["PATCH"],
        summary="Replicas, or a canary's share by hand",
        body=BODIES["update"],
        answer=(200, ref("Deployment")),
        errors=(409,),
    )
    def update(self, deployment_id, **_params):
        return _operate("deployments.update", _body(), id=deployment_id)

    @api_route(
        "/deployments/<int:deployment_id>",
        ["DELETE"],
        summary="Undeploy",
        answer=(204, None),
        errors=(409,),
    )
    def undeploy(self, deployment_id, **_params):
        return _operate("deployments.delete", id=deployment_id)

    @api_route(
        "/deployments/<int:deployment_id>/rollback",
        ["POST"],
        summary="Return production to the version before",
        body=BODIES["rollback"],
        answer=(202, ref("DeploymentAccepted")),
        errors=(409,),
    )
    def rollback(self, deployment_id, **_params):
        return _operate("deployments.rollback", _body(), id=deployment_id)

    @api_route(
        "/endpoints",
        ["GET"],
        summary="The endpoint registry n8n reads (ETag, 304)",
        query=(ENVIRONMENT, ("model", STRING)),
        answer=(
            200,
            {
                "type": "object",
                "required": ["items", "generated_at"],
                "properties": {
                    "items": {"type": "array", "items": ref("Endpoint")},
                    "generated_at": {"type": "string", "format": "date-time"},
                },
            },
        ),
        errors=(304,),
    )
    def endpoints(self, **_params):
        _status, body = operations.run(request.env, "endpoints.list", _query())
        tag = endpoint_registry.etag(body["items"])
        if request.httprequest.if_none_match.contains(tag.strip('"')):
            response = request.make_response("", status=304)
        else:
            response = request.make_response(
                endpoint_registry.encoded(body),
                headers=[("Content-Type", "application/json; charset=utf-8")],
            )
        response.headers["ETag"] = tag
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api_route(
        "/events",
        ["GET"],
        summary="State changes after a cursor",
        query=(
            ("since", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
            ("version_id", ID),
        ),
        errors=(409, 410),
        answer=(
            200,
            {
                "type": "object",
                "required": ["items", "next"],
                "properties": {
                    "items": {"type": "array", "items": ref("Event")},
                    "next": {"type": "integer"},
                },
            },
        ),
    )
    def events(self, **_params):
        return _operate("events.list", _query())

    @api_route(
        "/feedback",
        ["POST"],
        summary="Feedback on a version's answers",
        body=BODIES["feedback"],
        answer=(201, ref("Feedback")),
    )
    def feedback(self, **_params):
        return _operate("feedback.create", _body())

    @api_route(
        "/versions/<int:version_id>/feedback",
        ["GET"],
        summary="A version's feedback",
        query=PAGE,
        answer=(200, page_of("Feedback")),
    )
    def version_feedback(self, version_id, **_params):
        return _operate("feedback.list", _query(), id=version_id)

    @api_route(
        "/feedback/export",
        ["POST"],
        summary="Export a model's feedback with its calls, for retraining",
        body=BODIES["feedback_export"],
        answer=(202, ref("FeedbackExportAccepted")),
        errors=(409,),
    )
    def feedback_export(self, **_params):
        return _operate("feedback.export", _body())

    @api_route(
        "/feedback/export/<int:export_id>",
        ["GET"],
        summary="A feedback export: its state and its file",
        answer=(200, ref("FeedbackExport")),
    )
    def feedback_export_get(self, export_id, **_params):
        return _operate("feedback.export_get", id=export_id)
