"""Artifacts the system tests upload, made on the fly."""

import io
import os
import pickle

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_matmul(rows, cols, seed=0, external=None):
    """``y = x @ W`` with a (rows, cols) weight: distinct sizes and shapes
    from distinct arguments. ``external`` moves the weight to external data
    at that location (outside the model's folder, a format failure)."""
    weight = np.random.default_rng(seed).standard_normal((rows, cols))
    initializer = numpy_helper.from_array(weight.astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        f"matmul_{rows}x{cols}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cols])],
        [initializer],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        weight = model.graph.initializer[0]
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external
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
