# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``GET /mlops/api/v1/openapi.json``: an OpenAPI 3.1 document of the REST
routes, built from their own declarations (``framework.api_route``): one
source for paths, parameters, bodies, answers and errors."""

import copy
import re

from odoo import http
from odoo.http import request

from ..services import errors as service_errors
from ..services import settings
from . import framework
from .openapi_schemas import ID, METADATA, SCHEMAS, ref

COMMON_ERRORS = (400, 401, 403, 404, 415, 422, 503)
REASONS = {
    400: "Malformed request or parameter",
    401: "No valid credentials",
    403: "Not allowed to the caller",
    404: "No such resource (or not the caller's company's)",
    409: "The state or a duplicate forbids it",
    410: "The cursor is from before events retention dropped",
    413: "Too large",
    415: "Not application/json",
    422: "Valid JSON, invalid values",
    503: "A backend is unreachable, or a concurrent change: try again",
}
CONVERTER = re.compile(r"<(?:(int|string|path):)?(\w+)>")


def _path(path):
    params = []

    def replace(match):
        kind, name = match.group(1) or "string", match.group(2)
        schema = ID if kind == "int" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return CONVERTER.sub(replace, path), params


def _to_version(name="version_id"):
    body = f"$response.body#/{name}"
    return {
        "GetVersion": ("version_get", {"version_id": body}),
        "ValidateVersion": ("validate_post", {"version_id": body}),
        "DeployVersion": ("deploy_post", {"version_id": body}),
        "PromoteVersion": ("promote_post", {"version_id": body}),
        "VersionFeedback": ("version_feedback_get", {"version_id": body}),
    }


def _to_deployment(name="deployment_id"):
    body = f"$response.body#/{name}"
    return {
        "GetDeployment": ("deployment_get", {"deployment_id": body}),
        "UpdateDeployment": ("update_patch", {"deployment_id": body}),
        "RollBack": ("rollback_post", {"deployment_id": body}),
        "Undeploy": ("undeploy_delete", {"deployment_id": body}),
    }


# what a client does next with what an operation answered (OpenAPI links):
# schemathesis' stateful phase follows them from the operations that create
LINKS = {
    "upload_post": {
        **_to_version(),
        "GetModel": ("model_get", {"model_id": "$response.body#/model_id"}),
    },
    "start_upload_post": {
        "UploadStatus": ("upload_status_get", {"token": "$response.body#/upload_id"}),
        "CompleteUpload": (
            "complete_upload_post",
            {"token": "$response.body#/upload_id"},
        ),
    },
    "complete_upload_post": _to_version(),
    "deploy_post": _to_deployment(),
    "promote_post": _to_deployment(),
    "rollback_post": _to_deployment(),
    "models_get": {
        "GetModel": ("model_get", {"model_id": "$response.body#/items/0/id"}),
        "ModelVersions": (
            "model_versions_get",
            {"model_id": "$response.body#/items/0/id"},
        ),
    },
    "model_versions_get": _to_version("items/0/id"),
    "deployments_get": _to_deployment("items/0/id"),
}


def _links(operation_id):
    return {
        name: {"operationId": target, "parameters": parameters}
        for name, (target, parameters) in LINKS.get(operation_id, {}).items()
    }


def _responses(route, operation_id=None):
    status, schema = route["answer"]
    responses = {}
    if status == 204:
        responses["204"] = {"description": "Done, nothing to say"}
    elif isinstance(schema, str):
        # a media type of text (Prometheus' exposition)
        content = {schema.split(";")[0]: {"schema": {"type": "string"}}}
        responses[str(status)] = {"description": "Success", "content": content}
    else:
        content = {"application/json": {"schema": schema or {"type": "object"}}}
        responses[str(status)] = {"description": "Success", "content": content}
        links = _links(operation_id)
        if links:
            responses[str(status)]["links"] = links
    codes = set(COMMON_ERRORS) | set(route["errors"])
    if isinstance(route["body"], dict):  # JSON: MAX_JSON_BYTES at most
        codes.add(413)
    for code in sorted(codes):
        if code == 304:
            responses["304"] = {"description": "Unchanged since the ETag given"}
            continue
        responses[str(code)] = {
            "description": REASONS.get(code, "Error"),
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return responses


# the security scheme of each route that checks its own credentials
SECURITY = {"signature": "signature", "target_key": "inferenceLogKey"}


def _operation(route, method, path_params):
    operation_id = f"{route['name']}_{method.lower()}"
    operation = {
        "operationId": operation_id,
        "summary": route["summary"],
        "parameters": path_params
        + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in route["query"]
        ]
        + [
            {
                "name": name,
                "in": "header",
                "required": True,
                "description": description,
                "schema": {"type": "string"},
            }
            for name, description in route.get("headers", ())
        ],
        "responses": _responses(route, operation_id),
    }
    if route["auth"] in ("signature", "target_key"):
        operation["security"] = [{SECURITY[route["auth"]]: []}]
    elif route["auth"] == "gate":
        # an API key, or a signature with the gate secret
        operation["security"] = [{"bearer": []}, {"signature": []}]
    body = route["body"]
    if body == "multipart":
        operation["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["metadata", "file"],
                        "properties": {
                            "metadata": {
                                **METADATA,
                                "required": ["model", "version", "model_format"],
                            },
                            "file": {
                                "type": "string",
                                "contentMediaType": "application/octet-stream",
                                "minLength": 1,
                                "description": "The artifact: one byte at least.",
                            },
                        },
                    },
                    "encoding": {"metadata": {"contentType": "application/json"}},
                }
            },
        }
    elif body == "binary":
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/octet-stream": {
                    "schema": {
                        "type": "string",
                        "contentMediaType": "application/octet-stream",
                    }
                }
            },
        }
    elif body is not None:
        operation["requestBody"] = {
            # a body with required fields is required
            "required": bool(
                body.get("required") or body.get("anyOf") or body.get("minProperties")
            ),
            "content": {"application/json": {"schema": body}},
        }
    return operation


def document(base_url, upload_bytes=None):
    """The document; ``upload_bytes``: the largest direct upload the
    settings allow now, stated as the upload's ``size`` maximum."""
    paths = {}
    for route in framework.ROUTES:
        path, path_params = _path(route["path"])
        for method in route["methods"]:
            paths.setdefault(path, {})[method.lower()] = _operation(
                route, method, path_params
            )
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi_get",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    if upload_bytes:
        upload = paths["/uploads"]["post"]["requestBody"]["content"]
        schema = copy.deepcopy(upload["application/json"]["schema"])
        schema["properties"]["size"]["maximum"] = upload_bytes
        upload["application/json"]["schema"] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CreativeFlow MLOps",
            "version": "1",
            "description": "The registry, validation and deployments of AI models "
            "(docs/reference/api.md). Errors are always "
            '{"error": {"code", "message", "details"}}.',
        },
        "servers": [{"url": base_url.rstrip("/") + service_errors.REST_PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An Odoo API key (Preferences, Account Security).",
                },
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-MLOps-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of '<X-MLOps-Timestamp>."
                    "<raw body>'> with the pipeline run's secret (/ci/callback) or "
                    "the gate secret, MLOPS_GATE_SECRET (/gates).",
                },
                "inferenceLogKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A deployment target's inference log key "
                    "(the target's form: New Inference Log Key).",
                },
            },
        },
    }


class MlopsOpenApi(http.Controller):
    @http.route(
        f"{service_errors.REST_PREFIX}/openapi.json",
        type="http",
        auth="none",
        methods=["GET"],
        save_session=False,
    )
    def openapi(self, **_params):
        base = request.httprequest.host_url
        upload_bytes = None
        if request.db:
            upload_bytes = settings.get(request.env, "max_direct_upload_gb") * 1024**3
        return request.make_json_response(
            document(base, upload_bytes),
            headers={"Cache-Control": "public, max-age=60"},
        )
