"""The JSON objects of the contract (docs/reference/api.md)."""

from . import resources


def timestamp(value):
    return value.isoformat().replace("+00:00", "") + "Z" if value else None


def artifact(version):
    return {
        "uri": version.artifact_uri or None,
        "sha256": version.artifact_sha256 or None,
        "size": version.artifact_size or None,
        "filename": version.artifact_filename or None,
        # through Odoo: the bytes for a local store, a presigned URL for S3
        "download_url": f"/mlops/artifacts/{version.id}/download"
        if version.artifact_object_key
        else None,
        # when the integrity check last found these bytes in the store
        "verified_at": timestamp(version.artifact_verified_at),
    }


def model(record, with_versions=False):
    data = {
        "id": record.id,
        "name": record.name,
        "slug": record.slug,
        "task_type": record.task_type,
        "description": record.description or None,
        "owner": record.owner_id.login or None,
        "tags": record.tag_ids.mapped("name"),
        "production_version": record.production_version_id.version or None,
        "created_at": timestamp(record.create_date),
    }
    if with_versions:
        data["versions"] = [
            {"id": v.id, "version": v.version, "state": v.state}
            for v in record.version_ids
        ]
    return data


def version(record, full=False):
    data = {
        "id": record.id,
        "model_id": record.model_id.id,
        "model": record.model_id.name,
        "version": record.version,
        "state": record.state,
        "model_format": record.model_format,
        "interface_type": record.interface_type,
        "description": record.description or None,
        "artifact": artifact(record),
        "parameters": record.parameters or {},
        "metrics": record.metrics or {},
        "signature": {
            "inputs": record.input_schema or None,
            "outputs": record.output_schema or None,
        },
        "lineage": {
            "source_run": record.source_run or None,
            "dataset": record.dataset or None,
            "git_commit": record.git_commit or None,
            "parent_version": record.parent_version_id.version or None,
            "feedback_export": record.feedback_export_id.id or None,
        },
        "created_by": record.uploaded_by_id.login or None,
        "created_at": timestamp(record.create_date),
    }
    if full:
        data["validations"] = [validation(r) for r in record.validation_result_ids]
        data["deployments"] = [deployment(d) for d in record.deployment_ids]
    return data


def validation(record):
    return {
        "id": record.id,
        "scan_type": record.scan_type,
        "state": record.state,
        "blocking": record.blocking,
        "round": record.round,
        "summary": record.summary or None,
        "report_uri": record.report_uri or None,
        "started_at": timestamp(record.started_at),
        "finished_at": timestamp(record.finished_at),
    }


def deployment(record, full=False):
    data = {
        "id": record.id,
        "version_id": record.version_id.id,
        "version": record.version_id.version,
        "environment": record.environment,
        "strategy": record.strategy,
        "state": record.state,
        "replicas": record.replicas,
        "resources": resources.of(record),
        "traffic_percent": record.traffic_percent,
        "endpoint_url": record.endpoint_url or None,
        "target": record.target or None,
        "message": record.message or None,
        "drift": record.drift,
        "drift_detail": record.drift_detail or None,
        "image": record.image or None,
        "created_at": timestamp(record.create_date),
    }
    if full:
        run = record.run_ids[:1]
        data["pipeline_run"] = (
            {
                "id": run.id,
                "provider": run.provider,
                "state": run.state,
                "external_id": run.external_id or None,
                "external_url": run.external_url or None,
                "image": run.image or None,
                # gitops: the commit, and the pull request under review
                "change": {
                    "commit": run.change_commit or None,
                    "branch": run.change_branch or None,
                    "number": run.change_number or None,
                    "url": run.change_url or None,
                }
                if run.change_commit
                else None,
                "stages": [
                    {
                        "name": stage.name,
                        "state": stage.state,
                        "started_at": timestamp(stage.started_at),
                        "finished_at": timestamp(stage.finished_at),
                        "log": stage.log or None,
                    }
                    for stage in run.stage_ids.sorted("sequence")
                ],
            }
            if run
            else None
        )
        data["live"] = record._live_status()
    return data


def feedback(record):
    return {
        "id": record.id,
        "version_id": record.version_id.id,
        "deployment_id": record.deployment_id.id or None,
        "model_id": record.model_id.id,
        "rating": record.rating or None,
        "comment": record.comment or None,
        "data": record.data or None,
        "generation_request_id": record.generation_request_id or None,
        "user": record.user_id.login,
        "submitted_at": timestamp(record.submitted_at),
    }
