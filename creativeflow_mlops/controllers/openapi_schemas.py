# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of what the REST
routes take and answer: the contract's objects (docs/reference/api.md) as
``services.serializers`` writes them. Routes name them in their
declarations; ``openapi`` assembles the document."""

from ..lifecycle import DRIFT_STATES, INTERFACE_TYPES, MODEL_FORMATS, TASK_TYPES
from ..scanners import catalog
from ..services import metadata, resources


def _nullable(kind):
    return {"type": [kind, "null"]}


# PostgreSQL stores no NUL: every string the server takes is without one
STRING = {"type": "string", "pattern": "^[^\\u0000]*$"}
INTEGER = {"type": "integer"}
# a record's id: PostgreSQL's integer, as the server reads it
ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
STAMP = {"type": ["string", "null"], "format": "date-time"}
OBJECT = {"type": "object"}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name):
    return {
        "type": "object",
        "required": ["items", "total"],
        "properties": {
            "items": {"type": "array", "items": ref(name)},
            "total": INTEGER,
        },
    }


def accepted(*required, **properties):
    return {
        "type": "object",
        "required": list(required),
        "properties": {name: INTEGER for name in required} | properties,
    }


NO_NUL = {"type": "string", "pattern": "^[^\\u0000]*$"}
SCHEMAS = {
    "JsonValue": {
        "description": "Any JSON without a NUL character in its strings "
        "(PostgreSQL stores none).",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            NO_NUL,
            {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
            {
                "type": "object",
                "propertyNames": NO_NUL,
                "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
            },
        ],
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": STRING,
                    "message": STRING,
                    "details": OBJECT,
                },
            }
        },
    },
    "Artifact": {
        "type": "object",
        "required": ["uri", "sha256", "size"],
        "properties": {
            "uri": _nullable("string"),
            "sha256": _nullable("string"),
            "size": _nullable("integer"),
            "filename": _nullable("string"),
            "download_url": _nullable("string"),
            "verified_at": STAMP,
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "name", "task_type", "description", "owner", "created_at"],
        "properties": {
            "id": INTEGER,
            "name": STRING,
            "slug": STRING,
            "task_type": _nullable("string"),
            "description": _nullable("string"),
            "owner": _nullable("string"),
            "tags": {"type": "array", "items": STRING},
            "production_version": _nullable("string"),
            "created_at": STAMP,
            "versions": {"type": "array", "items": OBJECT},
        },
    },
    "Version": {
        "type": "object",
        "required": [
            "id",
            "model_id",
            "version",
            "state",
            "model_format",
            "interface_type",
            "artifact",
            "parameters",
            "metrics",
            "lineage",
            "created_by",
            "created_at",
        ],
        "properties": {
            "id": INTEGER,
            "model_id": INTEGER,
            "model": STRING,
            "version": STRING,
            "state": STRING,
            "model_format": _nullable("string"),
            "interface_type": _nullable("string"),
            "description": _nullable("string"),
            "artifact": ref("Artifact"),
            "parameters": {"type": ["object", "array"]},
            "metrics": {"type": ["object", "array"]},
            "signature": OBJECT,
            "lineage": OBJECT,
            "created_by": _nullable("string"),
            "created_at": STAMP,
            "validations": {"type": "array", "items": OBJECT},
            "deployments": {"type": "array", "items": ref("Deployment")},
        },
    },
    "Deployment": {
        "type": "object",
        "required": [
            "id",
            "version_id",
            "environment",
            "strategy",
            "state",
            "replicas",
            "resources",
            "traffic_percent",
            "endpoint_url",
            "target",
            "drift",
            "created_at",
        ],
        "properties": {
            "id": INTEGER,
            "version_id": INTEGER,
            "version": STRING,
            "environment": STRING,
            "strategy": STRING,
            "state": STRING,
            "replicas": INTEGER,
            "resources": ref("Resources"),
            "traffic_percent": INTEGER,
            "endpoint_url": _nullable("string"),
            "target": _nullable("string"),
            "message": _nullable("string"),
            "drift": {
                "type": "string",
                "enum": [key for key, _label in DRIFT_STATES],
                "description": "What reconciliation found on the target "
                "(docs/reference/targets.md).",
            },
            "drift_detail": _nullable("string"),
            "image": _nullable("string"),
            "created_at": STAMP,
            "pipeline_run": {"type": ["object", "null"]},
            "live": {"type": ["object", "null"]},
        },
    },
    "Resources": {
        "type": "object",
        "description": "What each model server asks for; the keys not set are "
        "not asked. The local target runs on the CPU (cpu sets its threads) "
        "and caps no memory; a GitHub workflow takes none.",
        "properties": {
            "gpu": {"type": "integer", "minimum": 0, "maximum": resources.MAX_GPU},
            "gpu_type": {
                "type": "string",
                "pattern": f"^{resources.GPU_TYPE_PATTERN}$",
                "description": "a GPU product as nodes label it, e.g. NVIDIA-A10G",
            },
            "cpu": {
                "type": "string",
                "maxLength": resources.MAX_QUANTITY,
                "pattern": f"^{resources.CPU_PATTERN}$",
                "description": "cores or millicores: 2, 0.5, 500m",
            },
            "memory": {
                "type": "string",
                "maxLength": resources.MAX_QUANTITY,
                "pattern": f"^{resources.QUANTITY_PATTERN}$",
                "description": "a Kubernetes quantity: 512Mi, 8Gi",
            },
        },
        # a GPU type is asked with a GPU
        "dependentSchemas": {
            "gpu_type": {
                "required": ["gpu"],
                "properties": {"gpu": {"minimum": 1}},
            }
        },
        "additionalProperties": False,
    },
    "Endpoint": {
        "type": "object",
        "required": [
            "slug",
            "model",
            "model_id",
            "version",
            "version_id",
            "environment",
            "state",
            "protocol",
            "invoke_url",
            "auth",
            "traffic",
        ],
        "properties": {
            "slug": STRING,
            "model": STRING,
            "model_id": INTEGER,
            "version": STRING,
            "version_id": INTEGER,
            "environment": STRING,
            "state": STRING,
            "protocol": STRING,
            "invoke_url": STRING,
            "health_url": STRING,
            "metadata_url": STRING,
            "auth": OBJECT,
            "input_schema": {"type": ["object", "array"]},
            "output_schema": {"type": ["object", "array"]},
            "traffic": {"type": "array", "items": OBJECT},
            "updated_at": STAMP,
            "curl_example": STRING,
        },
    },
    "Event": {
        "type": "object",
        "required": [
            "id",
            "type",
            "resource",
            "resource_id",
            "model_id",
            "version_id",
            "state",
            "previous_state",
            "at",
            "data",
        ],
        "properties": {
            "id": INTEGER,
            "type": STRING,
            "resource": {
                "enum": ["version", "deployment", "pipeline_run", "experiment"]
            },
            "resource_id": INTEGER,
            "model_id": _nullable("integer"),
            "version_id": _nullable("integer"),
            "state": STRING,
            "previous_state": _nullable("string"),
            "at": STAMP,
            "data": OBJECT,
        },
    },
    "Experiment": {
        "type": "object",
        "required": ["id", "model_id", "environment", "state", "metric", "arms"],
        "properties": {
            "id": INTEGER,
            "name": STRING,
            "model_id": INTEGER,
            "environment": STRING,
            "state": {"enum": ["draft", "running", "stopped", "concluded"]},
            "metric": STRING,
            "outcome_name": _nullable("string"),
            "alpha": {"type": "number"},
            "started_at": STAMP,
            "stopped_at": STAMP,
            "ends_at": STAMP,
            "results_at": STAMP,
            "verdict": {"enum": ["winner", "no_difference", None]},
            "winner_version_id": _nullable("integer"),
            "arms": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version_id", "weight", "n", "probability_best"],
                    "properties": {
                        "version_id": INTEGER,
                        "version": STRING,
                        "weight": INTEGER,
                        "deployment_id": _nullable("integer"),
                        "n": INTEGER,
                        "mean": {"type": "number"},
                        "value": {"type": "number"},
                        "difference": _nullable("number"),
                        "interval": {"type": ["array", "null"]},
                        "p_value": _nullable("number"),
                        "always_valid_p_value": _nullable("number"),
                        "probability_best": {"type": "number"},
                    },
                },
            },
        },
    },
    "Outcome": {
        "type": "object",
        "required": ["id", "request_id", "name", "value", "deployment_id"],
        "properties": {
            "id": INTEGER,
            "request_id": STRING,
            "name": STRING,
            "value": {"type": "number"},
            "deployment_id": _nullable("integer"),
        },
    },
    "FeedbackExportAccepted": {
        "type": "object",
        "required": ["export_id", "state"],
        "properties": {"export_id": INTEGER, "state": {"enum": ["queued"]}},
    },
    "FeedbackExport": {
        "type": "object",
        "required": ["export_id", "model_id", "state", "artifact", "lines"],
        "properties": {
            "export_id": INTEGER,
            "model_id": INTEGER,
            "since": STAMP,
            "until": STAMP,
            "state": {"enum": ["queued", "done", "failed"]},
            "artifact": {
                "description": "The JSONL object, once done.",
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["uri", "sha256", "size", "download_url"],
                        "properties": {
                            "uri": STRING,
                            "sha256": STRING,
                            "size": INTEGER,
                            "download_url": STRING,
                        },
                    },
                    {"type": "null"},
                ],
            },
            "lines": INTEGER,
            "logged_lines": INTEGER,
            "error": _nullable("string"),
            "versions": {"type": "array", "items": INTEGER},
            "created_at": STAMP,
            "finished_at": STAMP,
        },
    },
    "DriftReport": {
        "type": "object",
        "required": ["score", "drifted", "features", "reference", "current", "at"],
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "drifted": {"type": "boolean"},
            "features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "method", "value", "threshold", "drifted"],
                    "properties": {
                        "name": STRING,
                        "method": {
                            "type": "string",
                            "enum": [
                                "ks",
                                "wasserstein",
                                "chisquare",
                                "jensenshannon",
                                "psi",
                            ],
                        },
                        "value": {"type": "number"},
                        "threshold": {"type": "number"},
                        "drifted": {"type": "boolean"},
                    },
                },
            },
            "reference": {
                "type": "object",
                "properties": {
                    "source": {"type": "string", "enum": ["staging", "own"]},
                    "rows": INTEGER,
                    "from": _nullable("string"),
                    "to": _nullable("string"),
                },
            },
            "current": {
                "type": "object",
                "properties": {
                    "rows": INTEGER,
                    "from": _nullable("string"),
                    "to": _nullable("string"),
                },
            },
            "at": STRING,
        },
    },
    "DeploymentMetrics": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "at",
                        "requests",
                        "errors_4xx",
                        "errors_5xx",
                        "p50_ms",
                        "p95_ms",
                        "p99_ms",
                    ],  # fmt: skip
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "requests": INTEGER,
                        "errors_4xx": INTEGER,
                        "errors_5xx": INTEGER,
                        "p50_ms": _nullable("number"),
                        "p95_ms": _nullable("number"),
                        "p99_ms": _nullable("number"),
                    },
                },
            }
        },
    },
    "Feedback": {
        "type": "object",
        "required": ["id", "version_id", "rating", "submitted_at"],
        "properties": {
            "id": INTEGER,
            "version_id": INTEGER,
            "deployment_id": _nullable("integer"),
            "model_id": INTEGER,
            "rating": _nullable("integer"),
            "comment": _nullable("string"),
            "data": {"type": ["object", "array", "null"]},
            "generation_request_id": _nullable("string"),
            "user": STRING,
            "submitted_at": STAMP,
        },
    },
    "Upload": {
        "type": "object",
        "required": ["upload_id", "state"],
        "properties": {
            "upload_id": STRING,
            "state": STRING,
            "message": _nullable("string"),
            "version_id": _nullable("integer"),
            "part_size": _nullable("integer"),
            "parts": {"type": ["integer", "array", "null"]},
            "expires_at": STAMP,
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["model_id", "version_id", "state", "artifact"],
        "properties": {
            "model_id": INTEGER,
            "version_id": INTEGER,
            "state": STRING,
            "artifact": ref("Artifact"),
            "upload_id": STRING,
        },
    },
    "DeploymentAccepted": accepted("deployment_id", state=STRING),
    "VersionAccepted": accepted("version_id", state=STRING),
    "CallbackAnswer": {
        "type": "object",
        "required": ["run_id", "state", "stage", "changed", "message"],
        "properties": {
            "run_id": INTEGER,
            "state": STRING,
            "stage": OBJECT,
            "changed": {"type": "boolean"},
            "message": STRING,
        },
    },
    "ChangeHookAnswer": {
        "type": "object",
        "required": ["changed", "message"],
        "properties": {
            "run_id": INTEGER,
            "state": STRING,
            "changed": {"type": "boolean"},
            "message": STRING,
        },
    },
    "GateAnswer": {
        "type": "object",
        "required": ["approved", "model", "environment", "version"],
        "properties": {
            "approved": {"type": "boolean"},
            "model": STRING,
            "environment": {"enum": ["staging", "production"]},
            "version": STRING,
            "approved_by": STRING,
            "approved_at": STAMP,
            "reason": STRING,
            "freeze_override": _nullable("string"),
        },
    },
}

JSON_OBJECT = {
    "type": "object",
    "propertyNames": NO_NUL,
    "additionalProperties": ref("JsonValue"),
}
JSON_ARRAY = {"type": "array", "items": ref("JsonValue")}

# an upload's metadata, as services.metadata checks it
_CONTROLS = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
)
MODEL_NAME = {
    "type": "string",
    "maxLength": metadata.MAX_NAME,
    "pattern": f"^[^{_CONTROLS}]*[^\\s{_CONTROLS}][^{_CONTROLS}]*$",
    "description": "Not blank, no control or text-direction characters.",
}
VERSION = {"type": "string", "pattern": f"^{metadata.VERSION.pattern}$"}
SHA256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
FILENAME = {
    "type": "string",
    "pattern": "[A-Za-z0-9][^/\\\\]*$",
    "description": "Its last path component is kept, with a letter or digit.",
}
METADATA = {
    "type": "object",
    "properties": {
        "model": MODEL_NAME,
        "version": VERSION,
        "model_format": {"enum": [f for f, _label in MODEL_FORMATS]},
        "interface_type": {"enum": [i for i, _label in INTERFACE_TYPES]},
        "task_type": {"enum": [t for t, _label in TASK_TYPES]},
        "description": {
            "type": "string",
            "maxLength": metadata.MAX_TEXT_BYTES,
            "pattern": "^[^\\u0000]*$",
        },
        "parameters": JSON_OBJECT,
        "metrics": JSON_OBJECT,
        "lineage": {
            "type": "object",
            "properties": {
                key: {
                    "type": ["string", "null"],
                    "maxLength": metadata.MAX_LINEAGE,
                    "pattern": "^[^\\u0000]*$",
                }
                for key in metadata.LINEAGE_KEYS
                if key != "feedback_export"
            }
            | {
                "feedback_export": {
                    "description": "The finished feedback export of the same "
                    "model this version was trained on, by its id or URI "
                    "(another is a 409).",
                    "anyOf": [
                        {"type": "integer", "minimum": 1},
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": metadata.MAX_LINEAGE,
                            "pattern": "^[^\\u0000]*$",
                        },
                        {"type": "null"},
                    ],
                }
            },
            "additionalProperties": False,
        },
        "signature": {
            "type": "object",
            "properties": {
                key: {"anyOf": [JSON_OBJECT, {"type": "null"}]}
                for key in metadata.SIGNATURE_KEYS
            },
            "additionalProperties": False,
        },
        "personal_fields": {
            "type": ["array", "null"],
            "maxItems": metadata.MAX_PERSONAL,
            "items": {
                "type": "string",
                "pattern": f"^{metadata.PERSONAL_NAME}$",
            },
            "description": "Inputs, outputs and parameters the inference log "
            "never keeps.",
        },
    },
    "additionalProperties": False,
}

# bodies
REASON = {
    "reason": {
        "type": "string",
        "pattern": "^[^\\u0000]*\\S[^\\u0000]*$",
        "maxLength": 10000,
        "description": "Why: kept with your name, in the approval and the ledger. "
        "Required, with more than blanks (a deploy or a promotion without one "
        "is refused unless the approval_reason_optional setting is on; a "
        "rollback always needs one).",
    }
}
OVERRIDE_FREEZE = {
    "override_freeze": {
        "type": "string",
        "pattern": "^[^\\u0000]*\\S[^\\u0000]*$",
        "maxLength": 10000,
        "description": "An MLOps Manager's reason to go past a deploy freeze of "
        "the environment (kept on the approval and the ledger). While a freeze "
        "holds, the call is refused without it (409, naming the freeze and until "
        "when), and for anyone but a Manager with it (403).",
    }
}
REPLICAS = {
    "type": "integer",
    "minimum": 1,
    "maximum": 16,
    "description": "Model servers of the deployment. The local target runs one: "
    "any other count is refused there (422) with the reason.",
}
GATE_VERSION = {
    "type": "string",
    "pattern": "^[^\\u0000]*$",
    "maxLength": 64,
    "description": "The version asked about.",
}
BODIES = {
    "gate": {
        "type": "object",
        "description": "An Argo Rollouts web metric's body names the version; "
        "Flagger's webhook payload (name, namespace, phase, checksum, "
        "metadata, an object of strings) names it in metadata.version; name "
        "and phase are kept with the answer. Answered 200 when Odoo holds an "
        "approved promotion of that version for the environment; 403 (no such "
        "approval, or no version named) or 409 (the environment is frozen) "
        "otherwise, with approved false and the reason; every answer is kept.",
        "properties": {
            "version": GATE_VERSION,
            "name": STRING,
            "namespace": STRING,
            "phase": STRING,
            "checksum": STRING,
            "metadata": {
                "type": "object",
                "properties": {
                    "version": GATE_VERSION,
                    "api_key": {
                        **STRING,
                        "description": "The caller's Odoo API key when it sends "
                        "no Authorization header (Flagger's webhooks send none).",
                    },
                },
                "additionalProperties": STRING,
            },
        },
        "additionalProperties": False,
    },
    "deploy": {
        "type": "object",
        "properties": {
            "environment": {"enum": ["staging"]},
            "strategy": {"enum": ["rolling"]},
            "replicas": REPLICAS,
            "resources": ref("Resources"),
            "target": STRING,
            **REASON,
            **OVERRIDE_FREEZE,
        },
        "required": ["reason"],
        "additionalProperties": False,
    },
    "promote": {
        "type": "object",
        "properties": {
            "strategy": {"enum": ["blue_green", "canary"]},
            "canary_percent": {
                "type": "integer",
                "minimum": 1,
                "maximum": 99,
                "description": "The canary's first share (canary strategy only).",
            },
            "target": STRING,
            **REASON,
            **OVERRIDE_FREEZE,
        },
        "required": ["reason"],
        "dependentRequired": {"canary_percent": ["strategy"]},
        "if": {"required": ["canary_percent"]},
        "then": {"properties": {"strategy": {"const": "canary"}}},
        "additionalProperties": False,
    },
    "validate": {
        "type": "object",
        "properties": {
            "scan_types": {
                "type": "array",
                "minItems": 1,
                "items": {"enum": sorted(catalog.SPECS)},
                "description": "Only these scans; all of the format's policy when "
                "left out.",
            }
        },
        "additionalProperties": False,
    },
    "update": {
        "type": "object",
        "properties": {
            "replicas": REPLICAS,
            "canary_percent": {"type": "integer", "minimum": 1, "maximum": 99},
        },
        "minProperties": 1,
        "additionalProperties": False,
    },
    "rollback": {
        "type": "object",
        "properties": REASON,
        "required": ["reason"],
        "additionalProperties": False,
    },
    "upload": {
        "type": "object",
        "required": ["model", "version", "filename", "size", "metadata"],
        "properties": {
            "model": MODEL_NAME,
            "version": VERSION,
            "filename": FILENAME,
            "size": {
                "type": "integer",
                "minimum": 1,
                "description": "Bytes; at most the max_direct_upload_gb setting "
                "(the document states the current maximum).",
            },
            "content_type": {
                "type": "string",
                "pattern": f"^{metadata.CONTENT_TYPE_PATTERN}$",
            },
            "sha256": SHA256,
            "metadata": {
                **METADATA,
                "properties": {**METADATA["properties"], "sha256": SHA256},
                "required": ["model_format"],
            },
        },
        "additionalProperties": False,
    },
    "complete": {
        "type": "object",
        "required": ["parts"],
        "properties": {
            "parts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["part_number", "etag"],
                    "properties": {"part_number": INTEGER, "etag": STRING},
                    "propertyNames": NO_NUL,
                    "additionalProperties": ref("JsonValue"),
                },
            }
        },
        "additionalProperties": False,
    },
    "feedback": {
        "type": "object",
        "properties": {
            "version_id": ID,
            "deployment_id": ID,
            "rating": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
            "comment": {"type": ["string", "null"], "maxLength": 10000},
            "data": {
                "description": "What was asked and answered; empty is no data "
                "(send null or leave it out).",
                "anyOf": [
                    {**JSON_OBJECT, "minProperties": 1},
                    {**JSON_ARRAY, "minItems": 1},
                    {"type": "null"},
                ],
            },
            "generation_request_id": {"type": ["string", "null"], "maxLength": 200},
        },
        "anyOf": [{"required": ["version_id"]}, {"required": ["deployment_id"]}],
        "additionalProperties": False,
    },
    "feedback_export": {
        "type": "object",
        "required": ["model_id"],
        "description": "The model's feedback submitted in [since, until); "
        "until comes after since.",
        "properties": {
            "model_id": ID,
            "since": {"type": ["string", "null"], "format": "date-time"},
            "until": {"type": ["string", "null"], "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "experiment": {
        "type": "object",
        "required": ["model_id", "arms"],
        "properties": {
            "model_id": ID,
            "environment": {"enum": ["staging", "production"]},
            "arms": {
                "type": "array",
                "minItems": 2,
                "maxItems": 10,
                "description": "Versions of the model, each with its share of "
                "the traffic; the weights add up to 100, each version once. "
                "The first arm is the control.",
                "items": {
                    "type": "object",
                    "required": ["version_id", "weight"],
                    "properties": {
                        "version_id": ID,
                        "weight": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                    "additionalProperties": False,
                },
            },
            "metric": {"enum": ["rating", "error_rate", "latency_p95", "outcome"]},
            "outcome_name": {
                "type": ["string", "null"],
                "maxLength": 100,
                "pattern": "^[^\\u0000]*$",
                "description": "Needed (not empty) when the metric is outcome.",
            },
            "higher_is_better": {"type": "boolean"},
            "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
            "ends_at": {"type": ["string", "null"], "format": "date-time"},
            "name": {
                "type": ["string", "null"],
                "maxLength": 200,
                "pattern": "^[^\\u0000]*$",
            },
        },
        "additionalProperties": False,
    },
    "outcome": {
        "type": "object",
        "required": ["request_id", "name", "value"],
        "properties": {
            "request_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": "^[^\\u0000]*$",
                "description": "The X-Request-Id of the call the outcome is of.",
            },
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": "^[^\\u0000]*$",
            },
            "value": {"type": "number"},
        },
        "additionalProperties": False,
    },
    "callback": {
        "type": "object",
        "required": ["run_id", "stage", "status"],
        "properties": {
            "run_id": ID,
            "stage": STRING,
            "status": {"enum": ["running", "succeeded", "failed", "skipped"]},
            "endpoint_url": STRING,
            "image": STRING,
            "message": STRING,
        },
        # other fields are ignored, and kept as they came
        "propertyNames": NO_NUL,
        "additionalProperties": ref("JsonValue"),
    },
    # GitHub's pull_request event or GitLab's Merge Request Hook, as they
    # send it (docs/gitops/README.md)
    "change_hook": {
        "type": "object",
        "propertyNames": NO_NUL,
        "additionalProperties": ref("JsonValue"),
    },
}

PAGE = [
    ("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
    ("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
]
