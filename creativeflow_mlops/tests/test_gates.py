# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /gates/<model>/<environment>`` asked as Flagger's confirm webhooks
and an Argo Rollouts web metric ask it: the request shapes are built from
the examples in docs/gitops (the Canary's webhooks, the AnalysisTemplate's
web provider), as those tools would send them."""

import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

import yaml

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..adapters.ci import callback_signature
from ..lifecycle import USER
from .common import MlopsCase

API = "/mlops/api/v1"
GITOPS = Path(__file__).resolve().parents[2] / "docs" / "gitops"


@tagged("post_install", "-at_install")
class TestGates(MlopsCase, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bot = new_test_user(cls.env, login="gate_bot", groups=USER, name="Gate Bot")
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.bot)
            ._generate(None, "gate", fields.Datetime.now() + timedelta(days=1))
        )
        cls.canary = yaml.safe_load((GITOPS / "flagger-canary.yaml").read_text())
        cls.template = yaml.safe_load(
            (GITOPS / "argo-analysis-template.yaml").read_text()
        )

    def _post(self, path, body, headers=None):
        return self.opener.post(
            f"{self.base_url()}{path}", json=body, headers=headers or {}, timeout=30
        )

    def _flagger(self, webhook=0, key=None):
        """What Flagger POSTs for the Canary's webhook: its payload (name,
        namespace, phase, checksum, metadata) to the webhook's URL, with no
        header of its own: the key rides in the metadata."""
        hook = self.canary["spec"]["analysis"]["webhooks"][webhook]
        payload = {
            "name": self.canary["metadata"]["name"],
            "namespace": self.canary["metadata"]["namespace"],
            "phase": "Progressing",
            "checksum": "85d557f47b",
            "metadata": {**hook["metadata"], "api_key": key or self.key},
        }
        return self._post(hook["url"].split("example.com", 1)[1], payload)

    def _argo(self, version, environment="production"):
        """What the AnalysisTemplate's web provider sends with its args
        given, and its metric's result (``jsonPath``) and success."""
        args = {
            "model": "sentiment",
            "environment": environment,
            "version": version,
            "odoo-api-key": self.key,
        }

        def fill(text):
            return re.sub(r"\{\{args\.([\w-]+)\}\}", lambda m: args[m.group(1)], text)

        (metric,) = self.template["spec"]["metrics"]
        web = metric["provider"]["web"]
        answer = self.opener.request(
            web["method"],
            f"{self.base_url()}{fill(web['url']).split('example.com', 1)[1]}",
            data=fill(web["body"]).encode(),
            headers={h["key"]: fill(h["value"]) for h in web["headers"]},
            timeout=30,
        )
        self.assertEqual(web["jsonPath"], "{$.approved}")
        result = answer.json().get("approved")
        return answer, result is True and metric["successCondition"] == "result == true"

    def _checks(self):
        return self.env["mlops.gate.check"].search(
            [("model_id", "=", self.model.id)], order="id"
        )

    def test_flagger_goes_on_only_with_an_approved_promotion(self):
        version = self._version_in("staging", version="2.0.0")
        answer = self._flagger()
        self.assertEqual(answer.status_code, 403, answer.text)
        body = answer.json()
        self.assertIs(body["approved"], False)
        self.assertEqual(body["error"]["code"], "not_approved")
        self.assertIn("no approved production promotion", body["error"]["message"])
        self._move(version, "production_pending", "approver")
        answer = self._flagger(webhook=1)
        self.assertEqual(answer.status_code, 200, answer.text)
        body = answer.json()
        self.assertIs(body["approved"], True)
        self.assertEqual(body["version"], "2.0.0")
        approval = version.approval_ids.sorted("id")[-1]
        self.assertEqual(body["approved_by"], approval.user_id.name)
        self.assertEqual(body["reason"], "tested")
        # both answers kept, with who asked and what Flagger said it was at
        refused, approved = self._checks()
        self.assertEqual((refused.status, refused.approved), (403, False))
        self.assertEqual((approved.status, approved.approved), (200, True))
        self.assertEqual(approved.version_id, version)
        self.assertEqual(approved.caller_id, self.bot)
        self.assertEqual(
            (approved.phase, approved.source), ("Progressing", "sentiment")
        )
        # the key is never kept
        self.assertNotIn(self.key, str(approved.read()))

    def test_argo_rollouts_web_metric_and_a_freeze(self):
        version = self._version_in("production", version="2.0.0")
        answer, success = self._argo("2.0.0")
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertTrue(success)
        line = self.env["mlops.promotion"]._current(self.model, "production")
        self.assertEqual(self._checks()[-1].promotion_id, line)
        # staging: the version went past it; asked there, it is not approved
        answer, success = self._argo("2.0.0", environment="staging")
        self.assertEqual(answer.status_code, 403)
        self.assertFalse(success)
        now = fields.Datetime.now()
        self.env["mlops.deploy.freeze"].create(
            {
                "name": "Launch week",
                "environment": "production",
                "date_start": now - timedelta(hours=1),
                "date_end": now + timedelta(hours=1),
            }
        )
        answer, success = self._argo("2.0.0")
        self.assertEqual(answer.status_code, 409, answer.text)
        self.assertEqual(answer.json()["error"]["code"], "frozen")
        self.assertIn("“Launch week”", answer.json()["error"]["message"])
        self.assertFalse(success)
        self.assertEqual(self._checks()[-1].status, 409)
        self.assertEqual(version.state, "production")

    def test_a_rollback_approval_opens_the_gate(self):
        version = self._version_in("deprecated", version="2.0.0")
        answer, _success = self._argo("2.0.0")
        self.assertEqual(answer.status_code, 403)
        version.with_user(self.approver).with_context(
            mlops_reason="back to what worked"
        )._lifecycle_move("production_pending")
        answer, success = self._argo("2.0.0")
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertTrue(success)

    def test_refusals(self):
        path = f"{API}/gates/sentiment/production"
        before = len(self._checks())
        # no key, a wrong key: 401, nothing kept
        self.assertEqual(self._post(path, {"version": "1.0.0"}).status_code, 401)
        answer = self._post(path, {"metadata": {"api_key": "nope", "version": "x"}})
        self.assertEqual(answer.status_code, 401)
        self.assertEqual(len(self._checks()), before)
        auth = {"Authorization": f"Bearer {self.key}"}
        # what does not exist
        self.assertEqual(
            self._post(f"{API}/gates/nope/production", {}, auth).status_code, 404
        )
        self.assertEqual(
            self._post(f"{API}/gates/sentiment/qa", {}, auth).status_code, 404
        )
        # no version named, an unknown one, a version that is not a string
        for body in ({}, {"version": "9.9.9"}):
            answer = self._post(path, body, auth)
            self.assertEqual(answer.status_code, 403, answer.text)
            self.assertIs(answer.json()["approved"], False)
        # what neither Flagger nor the web metric sends: 422, nothing kept
        for body in (
            {"version": 3},
            {"metadata": {"version": 3}},
            {"metadata": "2.0.0"},
            {"verison": "2.0.0"},
        ):
            answer = self._post(path, body, auth)
            self.assertEqual(answer.status_code, 422, body)
        self.assertEqual(len(self._checks()), before + 2)

    def test_a_request_signed_with_the_gate_secret(self):
        """HMAC instead of a key: the gate secret from the environment, the
        signature of /ci/callback's shape, five minutes' window."""
        self._version_in("production", version="2.0.0")
        path = f"{API}/gates/sentiment/production"
        raw = json.dumps({"version": "2.0.0"}).encode()

        def signed(secret, sent=None, tamper=b""):
            sent = str(int(sent if sent is not None else time.time()))
            return self.opener.post(
                f"{self.base_url()}{path}",
                data=raw + tamper,
                headers={
                    "Content-Type": "application/json",
                    "X-MLOps-Timestamp": sent,
                    "X-MLOps-Signature": callback_signature(secret, sent, raw),
                },
                timeout=30,
            )

        before = len(self._checks())
        with patch.dict(os.environ, {"MLOPS_GATE_SECRET": ""}):
            answer = signed("s3cret")
            self.assertEqual(answer.status_code, 401)
            self.assertIn("No gate secret", answer.json()["error"]["message"])
        with patch.dict(os.environ, {"MLOPS_GATE_SECRET": "s3cret"}):
            answer = signed("s3cret")
            self.assertEqual(answer.status_code, 200, answer.text)
            self.assertIs(answer.json()["approved"], True)
            self.assertEqual(self._checks()[-1].caller_id.id, 1)
            for refused in (
                signed("other"),
                signed("s3cret", sent=time.time() - 600),
                signed("s3cret", tamper=b" "),
            ):
                self.assertEqual(refused.status_code, 401, refused.text)
        self.assertEqual(len(self._checks()), before + 1)
