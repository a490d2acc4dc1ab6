"""The endpoint registry n8n reads (shared/contract/api.md, "The endpoint
registry read by n8n"): one entry per model and environment that has a live
deployment, read with the caller's rights. Never a secret."""

import hashlib
import json

from . import deployment as deploy_service
from .serializers import timestamp

PROTOCOL = "kserve_v2"


def entries(env, environment=None, model=None):
    domain = [("state", "in", deploy_service.SERVING)]
    if environment:
        domain.append(("environment", "=", environment))
    if model:
        domain.append(("model_id.name", "=", model))
    serving = env["mlops.deployment"].search(domain, order="model_id, environment, id")
    grouped = {}
    for deployment in serving:
        grouped.setdefault((deployment.model_id, deployment.environment), []).append(
            deployment
        )
    return [_entry(deployments) for deployments in grouped.values()]


def _entry(deployments):
    # the one taking most of the traffic names the entry (a canary's
    # previous version, until it is promoted)
    main = max(deployments, key=lambda d: (d.traffic_percent, d.id))
    version, model = main.version_id, main.model_id
    client = main.target_id.sudo()._get_client()
    infer = f"/v2/models/{model.slug}/infer"
    # the target's stable route, or where its pipeline said it serves
    base = client.route_url(deploy_service.plan(main).route) or (
        main.endpoint_url or ""
    ).removesuffix(infer)
    invoke_url = f"{base}{infer}"
    example_input = {
        "inputs": [
            {
                "name": i.get("name", "input"),
                "shape": i.get("shape", [1]),
                "datatype": i.get("datatype", "FP32"),
                "data": [0],
            }
            for i in (version.input_schema or [{}])
            if isinstance(i, dict)
        ]
    }
    updated = max(d.write_date for d in deployments)
    return {
        "slug": f"{model.slug}-{main.environment}",
        "model": model.name,
        "model_id": model.id,
        "version": version.version,
        "version_id": version.id,
        "environment": main.environment,
        "state": main.state,
        "protocol": PROTOCOL,
        "invoke_url": invoke_url,
        "health_url": f"{base}/v2/health/ready",
        "metadata_url": f"{base}/v2/models/{model.slug}",
        # an invoke key (Configuration > Invoke Keys), never shown here
        "auth": {"type": "bearer", "header": "Authorization"},
        "input_schema": version.input_schema or {},
        "output_schema": version.output_schema or {},
        "traffic": [
            {"version": d.version_id.version, "percent": d.traffic_percent}
            for d in sorted(deployments, key=lambda d: -d.traffic_percent)
        ],
        "updated_at": timestamp(updated),
        "curl_example": (
            f"curl -X POST {invoke_url} -H 'Authorization: Bearer <invoke key>' "
            "-H 'Content-Type: application/json' "
            f"-d '{json.dumps(example_input)}'"
        ),
    }


def etag(items):
    """A strong validator of the entries (not of ``generated_at``)."""
    digest = hashlib.sha256(
        json.dumps(items, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f'"{digest[:32]}"'
