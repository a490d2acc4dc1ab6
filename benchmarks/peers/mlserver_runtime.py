"""Peer: a custom MLServer runtime serving the ONNX model with onnxruntime
(loaded by MLServer from the model folder, in a virtualenv with mlserver)."""

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    async def load(self):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            self.settings.parameters.uri, options
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        (y,) = self.session.run(None, {"x": x})
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)]
        )
