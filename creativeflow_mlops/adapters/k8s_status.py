"""Reading Kubernetes objects back: a Deployment's rollout, an
InferenceService's conditions, how a live workload differs from what was
applied, GPU quantities. Plain Python on the API's dicts: no client, no
Odoo."""

import json
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from . import k8s_manifests as manifests
from .targets import Observed, ServeStatus

# managers that write a spec on their own, as the cluster works
CONTROLLERS = {"kube-controller-manager", manifests.MANAGER}


def gpu_count(quantities):
    try:
        return int(quantities.get(manifests.GPU, 0))
    except (TypeError, ValueError):
        return 0


def pod_gpus(pod):
    spec = pod.get("spec", {})
    return sum(
        gpu_count(c.get("resources", {}).get("requests", {}))
        for c in spec.get("containers", [])
    )


def epoch(timestamp):
    if not timestamp:
        return 0.0
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _conditions(obj):
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def deployment_status(obj):
    spec, status = obj.get("spec", {}), obj.get("status", {})
    wanted = spec.get("replicas", 1)
    conditions = _conditions(obj)
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return ServeStatus(False, progressing.get("message", ""), failed=True)
    current = status.get("observedGeneration", 0) >= obj["metadata"].get(
        "generation", 0
    )
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    available = conditions.get("Available", {}).get("status") == "True"
    message = f"{ready}/{wanted} ready, {updated} updated" + (
        "" if current else " (the controller has not seen the last change yet)"
    )
    return ServeStatus(
        current and available and ready >= wanted and updated >= wanted,
        message,
        details={"ready": ready, "replicas": wanted},
    )


def inference_service_status(obj):
    status = obj.get("status", {})
    conditions = _conditions(obj)
    failure = status.get("modelStatus", {}).get("lastFailureInfo")
    if failure:
        return ServeStatus(
            False,
            f"{failure.get('reason', 'failed')}: {failure.get('message', '')}",
            failed=True,
        )
    ready = conditions.get("Ready", {})
    if ready.get("status") == "True":
        return ServeStatus(True, "InferenceService ready", details=status)
    pending = [
        f"{name}: {c.get('message') or c.get('reason') or c.get('status')}"
        for name, c in conditions.items()
        if c.get("status") != "True"
    ]
    return ServeStatus(False, "; ".join(pending) or "not ready yet")


def compare(plan, workload, scales_itself=False):
    """How the live workload differs from what was applied: a spec another
    field manager changed, another replica count (unless an autoscaler
    owns it), or another image."""
    for manager, fields_changed in foreign_managers(workload).items():
        return Observed(
            "drifted",
            f"{manager} changed {', '.join(fields_changed[:5]) or 'the spec'}",
        )
    annotations = workload["metadata"].get("annotations", {})
    applied = annotations.get(manifests.REPLICAS_ANNOTATION)
    if applied and int(applied) != plan.replicas:
        return Observed(
            "drifted",
            f"applied for {applied} replicas where {plan.replicas} are wanted",
        )
    wanted = annotations.get(manifests.SCALED_ANNOTATION) or applied
    replicas = workload.get("spec", {}).get("replicas")
    if (
        not scales_itself
        and wanted
        and replicas is not None
        and replicas != int(wanted)
    ):
        return Observed("drifted", f"{replicas} replicas where {wanted} were applied")
    if plan.image:
        images = json.dumps(workload.get("spec", {}))
        if plan.image not in images:
            return Observed("drifted", f"it no longer runs {plan.image}")
    return Observed("in_sync")


def triton_counters(text):
    """{"success", "failure", "p95"} of a Triton server's Prometheus text:
    its inference counters summed over its models, and the largest of its
    models' 0.95 latency quantiles in seconds (None without the summary)."""
    success = failure = 0.0
    p95 = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # the parser names a counter's samples with _total
            name = sample.name.removesuffix("_total")
            if name == "nv_inference_request_success":
                success += sample.value
            elif name == "nv_inference_request_failure":
                failure += sample.value
            elif (
                sample.name == "nv_inference_request_summary_us"
                and sample.labels.get("quantile") == "0.95"
                and sample.value == sample.value  # NaN: no request yet
            ):
                p95 = max(p95 or 0.0, sample.value / 1e6)
    return {"success": success, "failure": failure, "p95": p95}


def pods_window(before, after):
    """(requests, failures, p95 seconds or None) between two readings of a
    colour's pods ({pod: counters}); a pod that started since counts from
    zero, one that went takes its requests with it."""
    total = errors = 0.0
    p95 = None
    for pod, now in after.items():
        then = before.get(pod, {"success": 0.0, "failure": 0.0})
        # a restarted server's counters start again: what it has counted
        success = now["success"] - then["success"]
        failure = now["failure"] - then["failure"]
        if success < 0 or failure < 0:
            success, failure = now["success"], now["failure"]
        total += success + failure
        errors += failure
        if now["p95"] is not None:
            p95 = max(p95 or 0.0, now["p95"])
    return total, errors, p95


def foreign_managers(obj):
    """{manager: [spec fields]} of the managers other than Odoo and the
    cluster's controllers that hold fields of ``obj``'s spec (or a
    Secret's data)."""
    found = {}
    for entry in obj["metadata"].get("managedFields", []):
        manager = entry.get("manager", "")
        touched = entry.get("fieldsV1", {})
        if manager in CONTROLLERS:
            continue
        for top in ("spec", "data", "stringData"):
            if f"f:{top}" in touched:
                found.setdefault(manager, []).extend(
                    sorted(_leaves(touched[f"f:{top}"], f".{top}"))
                )
    return found


def _leaves(tree, prefix):
    for key, value in tree.items():
        name = key[2:] if key.startswith(("f:", "k:", "v:")) else key
        if key == ".":
            continue
        path = f"{prefix}.{name}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        else:
            yield path
