# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Random input to every REST route: whatever arrives, the answer is the
contract's JSON, never a 5xx, and nothing changes in the database or the
store. The routes come from Odoo's routing map, so a new one is covered the
day it is added."""

import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odoo import fields
from odoo.http import _generate_routing_rules
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from ..controllers.framework import ROUTES
from ..lifecycle import USER

API = "/mlops/api/v1"
# routes whose success is text (Prometheus' exposition), by their rule
TEXT_ANSWERS = {
    f"{API}{route['path']}": route["answer"][1].split(";")[0]
    for route in ROUTES
    if isinstance(route["answer"][1], str)
}
# what a request could change
TABLES = (
    "mlops_model",
    "mlops_model_version",
    "mlops_upload",
    "mlops_validation_result",
    "mlops_version_approval",
    "mlops_deployment",
    "mlops_feedback",
    "mlops_experiment",
    "mlops_outcome",
    "mlops_inference_event",
    "queue_job",
    "mail_message",
    "mail_activity",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)
# objects shaped like the routes' bodies, with random values
shaped = st.fixed_dictionaries(
    {},
    optional={
        key: json_values
        for key in (
            "model",
            "version",
            "filename",
            "size",
            "metadata",
            "parts",
            "scan_types",
            "model_format",
        )
    },
)
bodies = st.one_of(
    st.none(),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2048),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
        "\u00e9/\u00e8",
    ]
)
path_ints = st.one_of(st.integers(0, 2**31), st.integers(2**31, 10**30))
path_texts = st.text(min_size=1, max_size=40).map(lambda t: quote(t, safe=""))
queries = st.dictionaries(
    st.sampled_from(["limit", "offset", "q", "state", "since", "model_id"])
    | st.text(max_size=10),
    st.text(max_size=30) | st.integers(-(10**25), 10**25).map(str),
    max_size=4,
)


@tagged("post_install", "-at_install")
class TestApiProperties(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # a plain User: every write route needs more, or a record it
        # cannot have, so that no random request may rightly change a thing
        cls.user = new_test_user(cls.env, login="fuzz_user", groups=USER)
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.user)
            ._generate(None, "fuzz", fields.Datetime.now() + timedelta(days=1))
        )
        cls.rules = sorted(
            {
                (url, method)
                for url, endpoint in _generate_routing_rules(
                    ["creativeflow_mlops"], nodb_only=False
                )
                if url.startswith(API)
                for method in (endpoint.routing.get("methods") or METHODS)
                if method in METHODS
            }
        )
        assert len(cls.rules) > 10, cls.rules
        # records the routes can find: the user's own model and version,
        # validated (re-validating it takes a Manager)
        model = cls.env["mlops.model"].create({"name": "fuzz-model"})
        version = (
            cls.env["mlops.model.version"]
            .with_user(cls.user)
            .create({"model_id": model.id, "version": "1.0.0", "model_format": "onnx"})
        )
        version.sudo().write({"state": "validating"})
        version.sudo().write({"state": "validated"})
        cls.known_ids = [model.id, version.id]
        cls.store_root = (
            cls.env.ref("creativeflow_mlops.storage_backend_local")._get_store().root
        )

    def _snapshot(self):
        self.env.flush_all()
        counts = {}
        for table in TABLES:
            self.env.cr.execute(f"SELECT count(*), max(id) FROM {table}")  # noqa: S608
            counts[table] = self.env.cr.fetchone()
        files = (
            sorted(str(p) for p in Path(self.store_root).rglob("*") if p.is_file())
            if Path(self.store_root).exists()
            else []
        )
        return counts, files

    def _path(self, data, rule):
        def fill(match):
            converter = match.group(1) or "default"
            if converter == "int":
                return str(data.draw(st.sampled_from(self.known_ids) | path_ints))
            return data.draw(path_texts)

        return _CONVERTER.sub(fill, rule)

    @mute_logger("odoo.http", "odoo.addons.creativeflow_mlops.controllers.framework")
    @settings(
        max_examples=250,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def test_random_requests_get_json_4xx_and_change_nothing(self, data):
        rule, method = data.draw(st.sampled_from(self.rules))
        if rule.endswith("<path:_rest>"):
            method = data.draw(st.sampled_from(METHODS))
        path = self._path(data, rule)
        auth = data.draw(st.sampled_from([None, "bad", "key"]))
        headers = {}
        if auth == "bad":
            headers["Authorization"] = data.draw(
                st.sampled_from(["Bearer nope", "Basic abc", "Bearer ", "bearer x y"])
            )
        elif auth == "key":
            headers["Authorization"] = f"Bearer {self.key}"
        content_type = data.draw(content_types)
        if content_type:
            headers["Content-Type"] = content_type
        body = data.draw(bodies) if method != "GET" else None
        params = data.draw(queries)
        before = self._snapshot()
        response = self.opener.request(
            method,
            f"{self.base_url()}{path}",
            params=params,
            data=body,
            headers=headers,
            timeout=60,
            allow_redirects=False,
        )
        what = (
            f"{method} {path} {params} {body[:80] if body else body!r}: "
            f"{response.status_code} {response.headers.get('Location')}"
        )
        self.assertLess(response.status_code, 500, f"{what}: {response.text[:300]}")
        self.assertEqual(
            response.headers.get("Content-Type", "").split(";")[0],
            TEXT_ANSWERS.get(rule, "application/json")
            if response.status_code < 400
            else "application/json",
            what,
        )
        if response.status_code >= 400:
            error = response.json()["error"]
            self.assertRegex(error["code"], r"^[a-z][a-z0-9_]*$", what)
            self.assertIsInstance(error["message"], str, what)
            self.assertTrue(error["message"], what)
            self.assertIsInstance(error.get("details", {}), dict, what)
            if response.status_code == 401:
                # the CI callback and the local store's part URLs are
                # signed, not authenticated by a key; the payload logger's
                # route takes a target's key, not an Odoo API key
                challenge = (
                    'HMAC-SHA256 realm="mlops"'
                    if rule.endswith("/ci/callback") or "/uploads/parts/" in rule
                    else 'Bearer realm="inference-log"'
                    if rule.endswith("/inference-log")
                    else "Bearer"
                )
                self.assertEqual(
                    response.headers.get("WWW-Authenticate"), challenge, what
                )
        else:
            self.assertEqual(method, "GET", f"{what} was accepted: {response.text}")
        self.assertEqual(self._snapshot(), before, what)
