"""Peer: the leanest ASGI app under uvicorn (uvloop, httptools) that answers
OIP v2 infer with onnxruntime on one intra-op thread: no metrics, no keys."""

import json
import sys

import numpy as np
import onnxruntime
import uvicorn

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
SESSION = onnxruntime.InferenceSession(sys.argv[1], options)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    tensor = json.loads(body)["inputs"][0]
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
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


uvicorn.run(
    app,
    host="127.0.0.1",
    port=int(sys.argv[2]),
    loop="uvloop",
    http="httptools",
    log_level="warning",
    access_log=False,
)
