# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""REST routes of A/B experiments and business outcomes
(docs/reference/api.md): each maps its request to its operation
(services.experiment_operations), which the JSON-RPC face runs too."""

from odoo import http

# registers the operations the routes run
from ..services import experiment_operations  # noqa: F401 pylint: disable=unused-import
from .framework import _body, _operate, api_route
from .openapi_schemas import BODIES, ref


class MlopsExperimentsApi(http.Controller):
    @api_route(
        "/experiments",
        ["POST"],
        summary="An A/B experiment between versions of a model (draft)",
        body=BODIES["experiment"],
        answer=(201, ref("Experiment")),
        errors=(409,),
    )
    def experiments_create(self, **_params):
        return _operate("experiments.create", _body())

    @api_route(
        "/experiments/<int:experiment_id>",
        ["GET"],
        summary="An experiment with its arms' results and verdict",
        answer=(200, ref("Experiment")),
    )
    def experiments_get(self, experiment_id, **_params):
        return _operate("experiments.get", id=experiment_id)

    @api_route(
        "/experiments/<int:experiment_id>/start",
        ["POST"],
        summary="Start an experiment: the route splits by its arms' weights",
        answer=(200, ref("Experiment")),
        errors=(409,),
    )
    def experiments_start(self, experiment_id, **_params):
        return _operate("experiments.start", _body(), id=experiment_id)

    @api_route(
        "/experiments/<int:experiment_id>/stop",
        ["POST"],
        summary="Stop an experiment: the route goes back to its deployments",
        answer=(200, ref("Experiment")),
        errors=(409,),
    )
    def experiments_stop(self, experiment_id, **_params):
        return _operate("experiments.stop", _body(), id=experiment_id)

    @api_route(
        "/outcomes",
        ["POST"],
        summary="A business outcome of a served call, by its request id",
        body=BODIES["outcome"],
        answer=(201, ref("Outcome")),
    )
    def outcomes_create(self, **_params):
        return _operate("outcomes.create", _body())
