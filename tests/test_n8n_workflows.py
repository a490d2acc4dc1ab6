"""The n8n workflows of docs/n8n: well-formed (every connection names a
node, the Code nodes carry the .js files beside them, no secret inside),
and their Code nodes run under Node.js as n8n runs them: the signature
check accepts what the addon's webhook adapter sends and refuses a
tampered, stale or foreign delivery; the endpoint picker finds the
production entry in a registry answer. (tests/system/test_n8n.py runs them
in a real n8n.)"""

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import testservers

from odoo.addons.creativeflow_mlops.adapters import webhooks

DOCS = Path(__file__).resolve().parent.parent / "docs" / "n8n"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (a test's secret)
NODE = shutil.which("node")
# the harness gives a Code node what n8n gives it: $input, $env, $ (another
# node's items), require
HARNESS = """
const fs = require('fs');
const given = JSON.parse(fs.readFileSync(0, 'utf8'));
const items = (list) => ({ all: () => list, first: () => list[0] });
const $input = items(given.items);
const $env = given.env;
const $ = (name) => items(given.nodes[name]);
const code = given.code;
const run = new Function('$input', '$env', '$', 'require', code);
try {
  process.stdout.write(JSON.stringify({ out: run($input, $env, $, require) }));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: error.message }));
}
"""


def _flows():
    return {path.name: json.loads(path.read_text()) for path in DOCS.glob("*.json")}


def _run(code, items, env=None, nodes=None):
    answer = subprocess.run(
        [NODE, "-e", HARNESS],
        input=json.dumps(
            {"code": code, "items": items, "env": env or {}, "nodes": nodes or {}}
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(answer.stdout)


def test_workflows_are_well_formed():
    flows = _flows()
    assert set(flows) == {"call-production-model.json", "receive-webhooks.json"}
    for name, flow in flows.items():
        names = [node["name"] for node in flow["nodes"]]
        assert len(names) == len(set(names)), name
        assert all(node["type"].startswith("n8n-nodes-base.") for node in flow["nodes"])
        for source, outputs in flow["connections"].items():
            assert source in names, (name, source)
            for branch in outputs["main"]:
                for link in branch:
                    assert link["node"] in names, (name, link)
        text = json.dumps(flow)
        # no secret, no key: they live in n8n's credentials and variables
        assert not re.search(r"whsec_[A-Za-z0-9+/=]{16,}", text), name
        assert not re.search(r"mik_[A-Za-z0-9_-]{8,}", text), name
        # n8n's Variables ($vars) need a paid licence: a Settings node instead
        assert "$vars" not in text, name
    scripts = {
        node["name"]: node["parameters"]["jsCode"]
        for flow in flows.values()
        for node in flow["nodes"]
        if node["type"] == "n8n-nodes-base.code"
    }
    assert scripts["Verify the signature"] == (DOCS / "verify-signature.js").read_text()
    assert scripts["Pick the model's production entry"] == (
        (DOCS / "pick-endpoint.js").read_text()
    )
    assert scripts["Build the request"] == (DOCS / "build-request.js").read_text()


@pytest.mark.skipif(not NODE, reason="no node")
def test_the_signature_check_accepts_ours_and_refuses_the_rest():
    code = (DOCS / "verify-signature.js").read_text()
    with testservers.RecordingServer() as receiver:
        event = {"id": 5, "type": "deployment.active", "state": "active"}
        webhooks.deliver(
            receiver.url, SECRET, "msg_x_5", "deployment.active", event, True
        )
        (sent,) = receiver.requests

    def item(headers, body):
        return {
            "json": {"headers": headers, "body": {}},
            "binary": {"data": {"data": base64.b64encode(body).decode()}},
        }

    headers = sent["headers"]
    body = sent["body"]
    stale = dict(headers, **{"webhook-timestamp": str(int(time.time()) - 400)})
    items = [
        item(headers, body),
        item(headers, body.replace(b"active", b"failed")),
        item(stale, body),
        item({k: v for k, v in headers.items() if k != "webhook-signature"}, body),
    ]
    result = _run(code, items, env={"MLOPS_WEBHOOK_SECRET": SECRET})
    good, tampered, old, unsigned = [r["json"] for r in result["out"]]
    assert good == {
        "valid": True,
        "id": "msg_x_5",
        "type": "deployment.active",
        "event": event,
    }
    assert tampered == {"valid": False, "reason": "signature does not match"}
    assert old["reason"] == "timestamp outside the 5-minute window"
    assert unsigned["valid"] is False
    foreign = _run(code, items[:1], env={"MLOPS_WEBHOOK_SECRET": webhooks.new_secret()})
    assert foreign["out"][0]["json"]["valid"] is False


def _settings(model):
    return {"Settings": [{"json": {"odoo_url": "http://odoo:8069", "model": model}}]}


@pytest.mark.skipif(not NODE, reason="no node")
def test_the_endpoint_picker_finds_production():
    code = (DOCS / "pick-endpoint.js").read_text()
    base = "http://r/m/c1-sentiment"
    registry = {
        "items": [
            {
                "model": "sentiment",
                "environment": "staging",
                "state": "active",
                "invoke_url": f"{base}-staging/v2/models/sentiment/infer",
                "metadata_url": f"{base}-staging/v2/models/sentiment",
                "version": "1.5.0",
            },
            {
                "model": "sentiment",
                "environment": "production",
                "state": "active",
                "invoke_url": f"{base}-production/v2/models/sentiment/infer",
                "metadata_url": f"{base}-production/v2/models/sentiment",
                "version": "1.4.0",
            },
        ]
    }
    result = _run(code, [{"json": registry}], nodes=_settings("sentiment"))
    (picked,) = result["out"]
    assert picked["json"] == {
        "invoke_url": f"{base}-production/v2/models/sentiment/infer",
        "metadata_url": f"{base}-production/v2/models/sentiment",
        "version": "1.4.0",
    }
    missing = _run(code, [{"json": registry}], nodes=_settings("nope"))
    assert "no live production endpoint for nope" in missing["error"]


@pytest.mark.skipif(not NODE, reason="no node")
def test_the_request_is_shaped_by_the_model_servers_metadata():
    code = (DOCS / "build-request.js").read_text()
    picked = {
        "invoke_url": "http://r/m/c1-s-production/v2/models/s/infer",
        "version": "2",
    }
    metadata = {
        "name": "s",
        "inputs": [
            {"name": "x", "shape": [-1, 4], "datatype": "FP32"},
            {"name": "mask", "shape": [2], "datatype": "BOOL"},
        ],
    }
    result = _run(
        code,
        [{"json": metadata}],
        nodes={"Pick the model's production entry": [{"json": picked}]},
    )
    (built,) = result["out"]
    assert built["json"] == {
        "invoke_url": picked["invoke_url"],
        "version": "2",
        "request": {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4},
                {"name": "mask", "shape": [2], "datatype": "BOOL", "data": [0, 0]},
            ]
        },
    }
