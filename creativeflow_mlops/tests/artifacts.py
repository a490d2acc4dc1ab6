# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Small artifacts made by the tests (nothing binary is committed)."""

import io
import os
import pickle

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_model(opset=17, external=None, rows=4, cols=2, seed=None):
    """A one-MatMul ONNX model, ``y = x @ W`` with a (rows, cols) weight of
    ones, or of random values from ``seed``; ``external`` moves the weight
    to external data at that location. (The system tests load this module
    by its path: it imports nothing of Odoo.)"""
    if seed is None:
        values = np.ones((rows, cols), dtype=np.float32)
    else:
        values = np.random.default_rng(seed).standard_normal((rows, cols))
    weight = numpy_helper.from_array(values.astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        f"matmul_{rows}x{cols}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cols])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if external:
        weight = model.graph.initializer[0]
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external
    return model


def onnx_mlp(sizes=(64, 256, 256, 10), seed=0, fail=False):
    """An MLP ``Gemm-Relu-...-Gemm`` with random weights (the benchmark's
    64-256-256-10). ``fail``: a model that passes validation (one row at a
    time) but fails every inference of more rows (a Reshape to one row),
    for a canary gone bad."""
    rng = np.random.default_rng(seed)
    nodes, weights, current = [], [], "x"
    for index, (rows, cols) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w, b = f"W{index}", f"B{index}"
        weights += [
            numpy_helper.from_array(
                (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32),
                w,
            ),
            numpy_helper.from_array(np.zeros(cols, dtype=np.float32), b),
        ]
        out = f"h{index}"
        nodes.append(helper.make_node("Gemm", [current, w, b], [out]))
        current = out
        if index < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"{out}r"]))
            current = f"{out}r"
    if fail:
        weights.append(
            numpy_helper.from_array(np.array([1, sizes[-1]], dtype=np.int64), "S")
        )
        nodes.append(helper.make_node("Reshape", [current, "S"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [1, sizes[-1]] if fail else ["batch", sizes[-1]]
            )
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    buffer = io.BytesIO()
    onnx.save(model, buffer)
    return buffer.getvalue()


def onnx_bytes():
    buffer = io.BytesIO()
    onnx.save(onnx_model(), buffer)
    return buffer.getvalue()


class _Payload:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def malicious_pickle_bytes():
    return pickle.dumps({"weights": [1.0], "hook": _Payload()}, protocol=4)


def benign_pickle_bytes():
    return pickle.dumps({"weights": np.arange(8, dtype=np.float32)}, protocol=4)
