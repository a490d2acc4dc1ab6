# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The JSON-RPC face: each operation answers what its REST twin answers,
for the same user; errors carry the REST error in ``data``; a call without
a session, malformed or of another kind changes nothing."""

import json
from datetime import timedelta

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import APPROVER, USER

API = "/mlops/api/v1"


@tagged("post_install", "-at_install")
class TestRpc(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.uploader = new_test_user(
            cls.env, login="rpc_uploader", groups=USER, email="up@example.com"
        )
        cls.approver = new_test_user(
            cls.env, login="rpc_approver", groups=APPROVER, email="ap@example.com"
        )
        cls.keys = {
            user: cls.env["res.users.apikeys"]
            .with_user(user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
            for user in (cls.uploader, cls.approver)
        }
        cls.model = cls.env["mlops.model"].create(
            {"name": "rpc-model", "task_type": "classification"}
        )
        cls.version = (
            cls.env["mlops.model.version"]
            .with_user(cls.uploader)
            .sudo()
            .create(
                {
                    "model_id": cls.model.id,
                    "version": "1.0.0",
                    "model_format": "onnx",
                    "interface_type": "kserve_v2",
                    "artifact_filename": "model.onnx",
                    "artifact_size": 1024,
                    "artifact_sha256": "ef" * 32,
                }
            )
        )
        cls.version.sudo().write({"state": "validating"})
        cls.version.sudo().write({"state": "validated"})
        other = cls.env["res.company"].create({"name": "Elsewhere"})
        cls.foreign = cls.env["mlops.model"].create(
            {"name": "foreign-model", "company_id": other.id}
        )

    def _rpc(self, operation, params=None, raw=None, content_type="application/json"):
        body = (
            raw
            if raw is not None
            else json.dumps(
                {"jsonrpc": "2.0", "method": "call", "params": params or {}, "id": 7}
            )
        )
        answer = self.url_open(
            f"/mlops/rpc/{operation}",
            data=body,
            headers={"Content-Type": content_type},
        )
        self.assertEqual(answer.status_code, 200, answer.text)
        return answer.json()

    def _rest(self, method, path, user, **kwargs):
        return self.opener.request(
            method,
            f"{self.base_url()}{API}{path}",
            headers={"Authorization": f"Bearer {self.keys[user]}"},
            timeout=60,
            **kwargs,
        )

    def _rpc_error(self, answer, status, code):
        self.assertNotIn("result", answer, answer)
        self.assertEqual(answer["error"]["code"], status, answer)
        self.assertEqual(answer["error"]["data"]["code"], code, answer)
        self.assertEqual(answer["error"]["data"]["http_status"], status, answer)
        return answer["error"]["data"]

    def test_reads_answer_what_rest_answers(self):
        self.authenticate("rpc_uploader", "rpc_uploader")
        for operation, params, path in (
            ("models.list", {"q": "rpc-"}, "/models?q=rpc-"),
            ("models.get", {"id": self.model.id}, f"/models/{self.model.id}"),
            (
                "versions.list",
                {"model_id": self.model.id, "limit": 5},
                f"/models/{self.model.id}/versions?limit=5",
            ),
            ("versions.get", {"id": self.version.id}, f"/versions/{self.version.id}"),
            ("deployments.list", {}, "/deployments"),
        ):
            answer = self._rpc(operation, params)
            self.assertEqual(answer["id"], 7)
            rest = self._rest("GET", path, self.uploader)
            self.assertEqual(rest.status_code, 200, rest.text)
            self.assertEqual(answer["result"], rest.json(), operation)
        endpoints = self._rpc("endpoints.list", {"environment": "staging"})
        self.assertEqual(
            endpoints["result"]["items"],
            self._rest("GET", "/endpoints?environment=staging", self.uploader).json()[
                "items"
            ],
        )

    def test_errors_carry_the_rest_error(self):
        self.authenticate("rpc_uploader", "rpc_uploader")
        # the same refusal, the same words
        cases = (
            ("versions.list", {"model_id": self.model.id, "state": "bogus"},
             "GET", f"/models/{self.model.id}/versions?state=bogus", 422),
            ("models.get", {"id": self.foreign.id},
             "GET", f"/models/{self.foreign.id}", 404),
            ("models.list", {"limit": 0}, "GET", "/models?limit=0", 400),
            ("versions.deploy", {"id": self.version.id, "reason": "mine"},
             "POST", f"/versions/{self.version.id}/deploy", 403),
            # a typo never passes for the default: refused before anything runs
            ("versions.deploy", {"id": self.version.id, "replicaz": 3},
             "POST", f"/versions/{self.version.id}/deploy", 422),
            ("deployments.rollback", {"id": 999999, "force": True},
             "POST", "/deployments/999999/rollback", 422),
        )  # fmt: skip
        for operation, params, method, path, status in cases:
            data = self._rpc_error(
                self._rpc(operation, params),
                status,
                self._rest(method, path, self.uploader, json=params).json()["error"][
                    "code"
                ],
            )
            rest = self._rest(method, path, self.uploader, json=params).json()["error"]
            self.assertEqual(data["message"], rest["message"], operation)
        self.assertEqual(self.version.state, "validated")
        self.assertFalse(self.version.deployment_ids)
        # wrong types, unknown operations, envelopes that are not JSON-RPC
        self._rpc_error(
            self._rpc("models.get", {"id": "seven"}), 400, "invalid_request"
        )
        self._rpc_error(self._rpc("models.delete", {}), 404, "not_found")
        self._rpc_error(
            self._rpc("feedback.create", {"version_id": self.version.id, "x": 1}),
            422,
            "invalid_input",
        )
        answer = self._rpc("models.list", raw="{not json")
        self.assertEqual(answer["error"]["code"], -32700)
        answer = self._rpc("models.list", raw='{"jsonrpc": "1.0", "params": {}}')
        self.assertEqual(answer["error"]["code"], -32600)
        answer = self._rpc("models.list", raw='{"jsonrpc": "2.0", "params": [1]}')
        self.assertEqual(answer["error"]["code"], -32600)
        self._rpc_error(self._rpc("models.list", raw="[]"), 400, "invalid_request")
        self._rpc_error(
            self._rpc("models.list", {}, content_type="text/plain"),
            415,
            "unsupported_media_type",
        )
        huge = json.dumps({"jsonrpc": "2.0", "params": {"q": "x" * 2_000_000}})
        self._rpc_error(self._rpc("models.list", raw=huge), 413, "payload_too_large")
        # and a REST body as big: refused, nothing kept
        big = {"version_id": self.version.id, "data": {"blob": "x" * 2_000_000}}
        answer = self._rest("POST", "/feedback", self.uploader, json=big)
        self.assertEqual(answer.status_code, 413, answer.text)
        self.assertEqual(answer.json()["error"]["code"], "payload_too_large")
        self.assertFalse(
            self.env["mlops.feedback"].search([("version_id", "=", self.version.id)])
        )

    def test_without_a_session(self):
        answer = self._rpc("models.list", {})
        self._rpc_error(answer, 401, "unauthorized")
        answer = self._rpc("versions.deploy", {"id": self.version.id, "reason": "x"})
        self._rpc_error(answer, 401, "unauthorized")
        self.assertEqual(self.version.state, "validated")

    def test_what_no_operation_takes_is_json_too(self):
        for method, path, status in (
            ("GET", "/mlops/rpc/models.list", 405),
            ("POST", "/mlops/rpc/..%2F..", 404),
            ("POST", "/mlops/rpc/a/b", 404),
            ("GET", "/mlops/rpc", 404),
        ):
            with self.subTest(method=method, path=path):
                answer = self.opener.request(
                    method, self.base_url() + path, json={}, timeout=10
                )
                self.assertEqual(answer.status_code, status, answer.text[:200])
                self.assertEqual(answer.headers["Content-Type"], "application/json")
                self.assertIn("error", answer.json())
        answer = self.opener.get(self.base_url() + "/mlops/rpc/models.list")
        self.assertEqual(answer.headers["Allow"], "POST")

    def test_actions_and_feedback_as_the_session_user(self):
        self.authenticate("rpc_approver", "rpc_approver")
        deployed = self._rpc(
            "versions.deploy", {"id": self.version.id, "reason": "holdout F1 0.93"}
        )
        self.assertEqual(deployed["result"]["state"], "requested", deployed)
        self.assertEqual(self.version.state, "staging_pending")
        approval = self.version.approval_ids
        self.assertEqual(approval.user_id, self.approver)
        self.assertEqual(approval.reason, "holdout F1 0.93")
        # the same again: the state machine says no, on both faces alike
        data = self._rpc_error(
            self._rpc("versions.deploy", {"id": self.version.id}),
            409,
            "transition_not_allowed",
        )
        self.assertIn("Staging Pending", data["message"])
        # feedback on the version, listed by either face
        created = self._rpc(
            "feedback.create",
            {
                "version_id": self.version.id,
                "rating": 4,
                "comment": "good captions",
                "data": {"latency_ok": True},
                "generation_request_id": "gen-17",
            },
        )["result"]
        self.assertEqual(created["rating"], 4)
        self.assertEqual(created["user"], "rpc_approver")
        listed = self._rpc("feedback.list", {"id": self.version.id})["result"]
        self.assertEqual([f["id"] for f in listed["items"]], [created["id"]])
        rest = self._rest("GET", f"/versions/{self.version.id}/feedback", self.approver)
        self.assertEqual(rest.json(), listed)
        for bad in ({"rating": 6}, {"rating": "5"}, {"data": "text"}):
            self._rpc_error(
                self._rpc("feedback.create", {"version_id": self.version.id, **bad}),
                422,
                "invalid_input",
            )
        posted = self._rest(
            "POST",
            "/feedback",
            self.approver,
            json={"version_id": self.version.id, "rating": 2},
        )
        self.assertEqual(posted.status_code, 201, posted.text)
        self.assertEqual(len(self.version.feedback_ids), 2)
