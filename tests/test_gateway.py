"""The invoke-key gateway as a real HAProxy process in front of a server
that checks nothing (as Triton does not): the same 401, 403 and revocation
cases the local model servers pass, keys changed without a reload."""

import hashlib
import http.server
import json
import threading
import time

import pytest
import requests

from odoo.addons.creativeflow_mlops.adapters.gateway import KeyGateway, render_maps
from odoo.addons.creativeflow_mlops.adapters.processes import free_port

GOOD, OTHER, LATE = "ik_good-key", "ik_other-model", "ik_expired-key"


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def upstream():
    """A server that answers every call with the path it was given."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"path": self.path, "host": self.headers.get("Host")})
            body = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's names

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.fixture
def gateway(tmp_path):
    made = KeyGateway(tmp_path / "gateway", free_port())
    yield made
    made.stop()


def _table(now=None):
    now = now or time.time()
    return {
        "c1-mlp-production": (
            {_hash(GOOD): None, _hash(LATE): int(now) - 5},
            {_hash(OTHER)},
        ),
        "c1-other-production": ({_hash(OTHER): int(now) + 3600}, {_hash(GOOD)}),
    }


def _call(gateway, route, token=None, path="/v2/models/mlp/infer", headers=None):
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(
        f"{gateway.url}/m/{route}{path}", json={}, headers=headers, timeout=5
    )


def test_keys_are_checked_before_any_server_is_reached(gateway, upstream):
    address, seen = upstream
    routes = {"c1-mlp-production": address, "c1-other-production": address}
    assert gateway.apply(routes, _table()) == "started"
    route = "c1-mlp-production"
    refused = _call(gateway, route)
    assert refused.status_code == 401 and "invoke key" in refused.json()["error"]
    assert _call(gateway, route, "ik_nobody-knows").status_code == 401
    scope = _call(gateway, route, OTHER)
    assert scope.status_code == 403 and "does not cover" in scope.json()["error"]
    expired = _call(gateway, route, LATE)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    assert seen == []  # none of those reached the server
    good = _call(gateway, route, GOOD)
    assert good.status_code == 200
    # the route's prefix goes, the path below it stays
    assert good.json()["path"] == "/v2/models/mlp/infer"
    # the other model's key on its own route; the health routes need none
    assert _call(gateway, "c1-other-production", OTHER).status_code == 200
    assert _call(gateway, route, path="/v2/health/ready").status_code == 200
    assert requests.get(f"{gateway.url}/m/c1-nothing/v2", timeout=5).status_code == 404
    # a lowercase scheme is a bearer token too
    answer = requests.post(
        f"{gateway.url}/m/{route}/v2/models/mlp/infer",
        json={},
        headers={"Authorization": f"bearer {GOOD}"},
        timeout=5,
    )
    assert answer.status_code == 200


def test_a_revoked_key_is_refused_at_once_without_a_reload(gateway, upstream):
    address, _seen = upstream
    routes = {"c1-mlp-production": address}
    table = _table()
    del table["c1-other-production"]
    gateway.apply(routes, table)
    pids = gateway.pids()
    assert _call(gateway, "c1-mlp-production", GOOD).status_code == 200
    allowed, elsewhere = table["c1-mlp-production"]
    revoked = {
        "c1-mlp-production": (
            {h: e for h, e in allowed.items() if h != _hash(GOOD)},
            elsewhere,
        )
    }
    assert gateway.apply(routes, revoked) == "keys"
    assert _call(gateway, "c1-mlp-production", GOOD).status_code == 401
    # the same processes: keys swap through the runtime API
    assert gateway.pids() == pids
    # a new route reloads; the keys stay as published
    routes["c1-new-staging"] = address
    revoked["c1-new-staging"] = ({_hash(OTHER): None}, set())
    assert gateway.apply(routes, revoked) == "reloaded"
    assert _call(gateway, "c1-new-staging", OTHER).status_code == 200
    assert _call(gateway, "c1-mlp-production", GOOD).status_code == 401


def test_every_answer_names_its_call(gateway, upstream):
    """X-Request-Id on every answer, the server's or the gateway's own
    refusal: the caller's when plain, else one made by the gateway."""
    address, _seen = upstream
    gateway.apply({"c1-mlp-production": address}, _table())
    mine = _call(gateway, "c1-mlp-production", GOOD, headers={"X-Request-Id": "n8n-7"})
    assert mine.status_code == 200 and mine.headers["X-Request-Id"] == "n8n-7"
    made = _call(gateway, "c1-mlp-production", GOOD)
    assert len(made.headers["X-Request-Id"]) == 36  # a UUID
    odd = _call(gateway, "c1-mlp-production", GOOD, headers={"X-Request-Id": "a b"})
    assert len(odd.headers["X-Request-Id"]) == 36
    refused = _call(gateway, "c1-mlp-production", headers={"X-Request-Id": "no-key"})
    assert refused.status_code == 401 and refused.headers["X-Request-Id"] == "no-key"
    assert len(_call(gateway, "c1-mlp-production").headers["X-Request-Id"]) == 36


def test_the_cluster_gateway_resolves_names_as_it_runs(tmp_path, upstream):
    """On a cluster the upstreams are Services' names, asked of the DNS
    servers of resolv.conf as the gateway runs (a Service re-created after
    the gateway started is found again): HAProxy takes that configuration
    and serves with it (the address here a literal: this machine's DNS
    need not know any name)."""
    address, _seen = upstream
    made = KeyGateway(tmp_path / "named", free_port(), resolvers=True)
    try:
        made.apply({"c1-mlp-production": address}, _table())
        config = (tmp_path / "named" / "haproxy.cfg").read_text()
        assert "parse-resolv-conf" in config
        assert f"server s1 {address} init-addr last,libc,none resolvers system" in (
            config
        )
        answer = _call(made, "c1-mlp-production", GOOD)
        assert answer.status_code == 200, answer.text
        # the upstream's own name as Host: what a Knative ingress routes by
        assert answer.json()["host"] == address.rsplit(":", 1)[0]
        assert _call(made, "c1-mlp-production").status_code == 401
    finally:
        made.stop()


def test_the_maps_hold_hashes_only():
    maps = render_maps(_table(now=1000))
    text = "".join(maps.values())
    for token in (GOOD, OTHER, LATE):
        assert token not in text
    assert f"{_hash(GOOD)}:c1-mlp-production 1" in maps["grants.map"]
    assert f"{_hash(LATE)} 995" in maps["keys.map"]
