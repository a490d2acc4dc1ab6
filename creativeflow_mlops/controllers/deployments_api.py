# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of deployments: deploy (approve staging), promote,
deployments, undeploy, the endpoint registry n8n reads, and feedback."""

from odoo import http
from odoo.http import request

from ..services import operations, registry
from .framework import _body, _json, _operate, _query, api_route


class MlopsDeploymentsApi(http.Controller):
    """Each route maps its request to its operation (services.operations),
    which the JSON-RPC face runs too."""

    @api_route("/versions/<int:version_id>/deploy", ["POST"])
    def deploy(self, version_id, **_params):
        return _operate("versions.deploy", _body(), id=version_id)

    @api_route("/versions/<int:version_id>/promote", ["POST"])
    def promote(self, version_id, **_params):
        return _operate("versions.promote", _body(), id=version_id)

    @api_route("/deployments", ["GET"])
    def deployments(self, **_params):
        return _operate("deployments.list", _query())

    @api_route("/deployments/<int:deployment_id>", ["GET"])
    def deployment(self, deployment_id, **_params):
        return _operate("deployments.get", id=deployment_id)

    @api_route("/deployments/<int:deployment_id>", ["PATCH"])
    def update(self, deployment_id, **_params):
        return _operate("deployments.update", _body(), id=deployment_id)

    @api_route("/deployments/<int:deployment_id>", ["DELETE"])
    def undeploy(self, deployment_id, **_params):
        return _operate("deployments.delete", id=deployment_id)

    @api_route("/deployments/<int:deployment_id>/rollback", ["POST"])
    def rollback(self, deployment_id, **_params):
        return _operate("deployments.rollback", _body(), id=deployment_id)

    @api_route("/endpoints", ["GET"])
    def endpoints(self, **_params):
        _status, body = operations.run(request.env, "endpoints.list", _query())
        tag = registry.etag(body["items"])
        if request.httprequest.if_none_match.contains(tag.strip('"')):
            response = request.make_response("", status=304)
        else:
            response = _json(body)
        response.headers["ETag"] = tag
        response.headers["Cache-Control"] = "no-cache"
        return response

    @api_route("/feedback", ["POST"])
    def feedback(self, **_params):
        return _operate("feedback.create", _body())

    @api_route("/versions/<int:version_id>/feedback", ["GET"])
    def version_feedback(self, version_id, **_params):
        return _operate("feedback.list", _query(), id=version_id)
