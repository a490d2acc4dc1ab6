"""A deployment's compute resources, as ``versions.deploy`` takes them:
``{"gpu": 1, "gpu_type": "NVIDIA-A10G", "cpu": "4", "memory": "16Gi"}``,
every key optional. ``parse`` checks them (GPUs a count from 0 to 16, CPU in
cores or millicores, memory a Kubernetes quantity, the GPU type a node
label's value) and refuses unknown keys, naming each field that is wrong;
``values`` are the deployment's fields; ``of`` reads them back, for the
target's plan, the pipeline and the API. Production is promoted with what
staging ran (``deployment.staged_resources``).
"""

import re

from ..exceptions import InvalidInput

KEYS = ("gpu", "gpu_type", "cpu", "memory")
MAX_GPU = 16
# resource.Quantity of Kubernetes: a decimal number and a decimal or binary
# suffix ("512Mi", "8Gi", "1G", bytes as a number)
# (no "m" for memory: 512m is half a byte, never what was meant)
# a positive decimal: a nonzero digit before or after the point; ASCII
# digits only (Python's \d takes any script's, JSON Schema's does not)
POSITIVE = r"(?:[0-9]*[1-9][0-9]*(?:\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)"
QUANTITY_PATTERN = POSITIVE + r"(?:[KMGTPE]i|[kMGTPE])?"
# CPUs: cores or millicores ("2", "0.5", "500m")
CPU_PATTERN = POSITIVE + "m?"
# a label value (nvidia.com/gpu.product): 63 characters at most
GPU_TYPE_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
MAX_QUANTITY = 32


def _quantity(value, problems, key):
    pattern = CPU_PATTERN if key == "cpu" else QUANTITY_PATTERN
    if (
        not isinstance(value, str)
        or len(value) > MAX_QUANTITY
        or not re.fullmatch(pattern, value)
    ):
        problems[f"resources.{key}"] = (
            "a positive number of CPUs, e.g. 2, 0.5 or 500m (a string)"
            if key == "cpu"
            else "a positive Kubernetes quantity, e.g. 512Mi or 8Gi (a string)"
        )
        return None
    return value


def parse(value):
    """The resources asked for, checked: {key: value} with only the keys
    given (GPUs an int, the others strings), or ``InvalidInput`` naming
    every field that is wrong."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("resources is an object: gpu, gpu_type, cpu, memory")
    problems = {
        f"resources.{key}": "unknown field" for key in sorted(set(value) - set(KEYS))
    }
    checked = {}
    if "gpu" in value:
        gpu = value["gpu"]
        if isinstance(gpu, int) and not isinstance(gpu, bool) and 0 <= gpu <= MAX_GPU:
            checked["gpu"] = gpu
        else:
            problems["resources.gpu"] = f"an integer from 0 to {MAX_GPU}"
    if "gpu_type" in value:
        gpu_type = value["gpu_type"]
        if isinstance(gpu_type, str) and re.fullmatch(GPU_TYPE_PATTERN, gpu_type):
            checked["gpu_type"] = gpu_type
        else:
            problems["resources.gpu_type"] = (
                "a GPU product name as nodes label it (letters, digits, . _ -; "
                "63 at most), e.g. NVIDIA-A10G"
            )
    for key in ("cpu", "memory"):
        if key in value:
            quantity = _quantity(value[key], problems, key)
            if quantity is not None:
                checked[key] = quantity
    if checked.get("gpu_type") and not checked.get("gpu"):
        problems.setdefault(
            "resources.gpu_type", "a GPU type is asked with gpu of 1 or more"
        )
    if problems:
        error = InvalidInput(
            "Invalid resources: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
        )
        error.details = problems
        raise error
    return checked


def values(resources):
    """The deployment's fields for checked ``resources``."""
    return {
        "gpu": resources.get("gpu", 0),
        "gpu_type": resources.get("gpu_type") or False,
        "cpu": resources.get("cpu") or False,
        "memory": resources.get("memory") or False,
    }


def of(deployment):
    """What ``deployment`` asked for, as ``parse`` gives it (only the keys
    set)."""
    found = {
        "gpu": deployment.gpu or None,
        "gpu_type": deployment.gpu_type or None,
        "cpu": deployment.cpu or None,
        "memory": deployment.memory or None,
    }
    return {key: value for key, value in found.items() if value is not None}
