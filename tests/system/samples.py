"""Artifacts the system tests upload, made on the fly."""

import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import onnx


def _addon_artifacts():
    """The addon's test artifacts module, by its path: it imports nothing
    of Odoo, and the system tier imports no part of the addon."""
    path = Path(__file__).resolve().parents[2] / "creativeflow_mlops/tests/artifacts.py"
    spec = importlib.util.spec_from_file_location("mlops_test_artifacts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ARTIFACTS = _addon_artifacts()


def onnx_matmul(rows, cols, seed=0, external=None):
    """``y = x @ W`` with a random (rows, cols) weight: distinct sizes and
    shapes from distinct arguments. ``external`` moves the weight to
    external data at that location (outside the model's folder, a format
    failure)."""
    model = _ARTIFACTS.onnx_model(rows=rows, cols=cols, seed=seed, external=external)
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


class _Touch:
    """Unpickling this creates ``path``: proof that a payload ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def malicious_pickle(marker, protocol=4):
    return pickle.dumps({"weights": [1.0, 2.0], "hook": _Touch(marker)}, protocol)


def benign_pickle(seed=0):
    rng = np.random.default_rng(seed)
    return pickle.dumps({"weights": rng.standard_normal(16).astype(np.float32)}, 4)


def onnx_mlp(seed=0, fail=False):
    """The benchmark's MLP (64-256-256-10) with weights from ``seed``."""
    return _ARTIFACTS.onnx_mlp(seed=seed, fail=fail)
