"""Peer: KServe's Python ModelServer with an onnxruntime model (run in a
virtualenv with the kserve package)."""

import sys

import kserve
import numpy as np
import onnxruntime


class Mlp(kserve.Model):
    def __init__(self, name, path):
        super().__init__(name)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options)
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, dict):  # v2 JSON as a dict
            tensor = payload["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        else:  # kserve.InferRequest
            x = payload.inputs[0].as_numpy().astype(np.float32)
        (y,) = self.session.run(None, {"x": x})
        return kserve.InferResponse(
            model_name=self.name,
            infer_outputs=[kserve.InferOutput("y", list(y.shape), "FP32", data=y)],
            response_id=str(id(payload)),
        )


if __name__ == "__main__":
    kserve.ModelServer(
        http_port=int(sys.argv[2]),
        grpc_port=int(sys.argv[3]),
        workers=1,
        enable_docs_url=False,
    ).start([Mlp("mlp", sys.argv[1])])
