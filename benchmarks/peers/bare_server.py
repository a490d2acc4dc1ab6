"""Baseline: the stdlib's threaded HTTP server with TCP_NODELAY, HTTP/1.1
keep-alive, onnxruntime on one intra-op thread; OIP v2 infer only."""

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
SESSION = onnxruntime.InferenceSession(sys.argv[1], options)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        (y,) = SESSION.run(None, {tensor["name"]: x})
        answer = json.dumps(
            {
                "model_name": "mlp",
                "outputs": [
                    {
                        "name": "y",
                        "shape": list(y.shape),
                        "datatype": "FP32",
                        "data": y.ravel().tolist(),
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
