# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /gitops/<target>/hooks/<provider>`` over HTTP, as GitHub, GitLab
and Argo CD send it: the signature or token checked before anything is
read, each refusal a JSON error with its status, and nothing recorded
when no run waits (test_gitops_target.py drives the runs themselves)."""

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

from odoo.tests import HttpCase

from ..adapters import git_hosting
from .common import MlopsCase

API = "/mlops/api/v1"
SECRET = "route-hook-secret"  # noqa: S105 (a test's hook secret)
VARIABLE = "MLOPS_TARGET_HOOKS_HOOK_SECRET"


class TestGitopsHookRoute(MlopsCase, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._saved = os.environ.get(VARIABLE)
        os.environ[VARIABLE] = SECRET
        cls.target = cls.env["mlops.deployment.target"].create(
            {
                "name": "Hooks",
                "code": "hooks",
                "kind": "gitops",
                "options": {
                    "repository": "https://git.example.com/acme/ops.git",
                    "provider": "github",
                    "project": "acme/ops",
                    "public_url": "https://models.example.com",
                    "cluster": {
                        "registry": "registry.example.com/mlops",
                        "base_image": "registry.example.com/base/busybox:1",
                    },
                },
            }
        )

    @classmethod
    def tearDownClass(cls):
        if cls._saved is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = cls._saved
        super().tearDownClass()

    def _post(self, path, body, headers):
        return self.opener.post(
            f"{self.base_url()}{API}{path}",
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=30,
        )

    def _github(self, secret=SECRET, **pull):
        body = json.dumps(
            {
                "action": "closed",
                "number": 7,
                "pull_request": {
                    "number": 7,
                    "merged": True,
                    "closed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "merge_commit_sha": "b" * 40,
                    "head": {"ref": "mlops/production-x-d9-abc", "sha": "a" * 40},
                    **pull,
                },
                "repository": {"full_name": "acme/ops"},
            }
        ).encode()
        return body, {
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": git_hosting.github_signature(secret, body),
        }

    def _deliveries(self):
        return self.env["mlops.pipeline.delivery"].sudo().search_count([])

    def test_a_signed_hook_no_run_waits_for_changes_nothing(self):
        before = self._deliveries()
        answer = self._post("/gitops/hooks/hooks/github", *self._github())
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertEqual(answer.json()["changed"], False)
        self.assertIn("no run waits for change 7", answer.json()["message"])
        self.assertEqual(self._deliveries(), before)

    def test_refusals_are_json_errors_and_change_nothing(self):
        before = self._deliveries()
        body, headers = self._github(secret="forged")
        stale = datetime.now(UTC) - timedelta(hours=2)
        cases = (
            ("/gitops/hooks/hooks/github", body, headers, 401),
            (
                "/gitops/hooks/hooks/github",
                *self._github(closed_at=stale.strftime("%Y-%m-%dT%H:%M:%SZ")),
                401,
            ),
            ("/gitops/nope/hooks/github", *self._github(), 404),
            ("/gitops/n%00pe/hooks/github", *self._github(), 400),
            ("/gitops/hooks/hooks/bitbucket", *self._github(), 404),
            ("/gitops/hooks/hooks/gitlab", *self._github(), 404),
            (
                "/gitops/hooks/hooks/argocd",
                b'{"path": "production/x"}',
                {"X-MLOps-Token": "wrong"},
                401,
            ),
            (
                "/gitops/hooks/hooks/argocd",
                json.dumps(
                    {"sent_at": datetime.now(UTC).isoformat(), "images": []}
                ).encode(),
                {"X-MLOps-Token": SECRET},
                422,
            ),
            (
                "/gitops/hooks/hooks/github",
                b"{" + b" " * (git_hosting.MAX_HOOK_BYTES + 10) + b"}",
                headers,
                413,
            ),
        )
        for path, body, headers, status in cases:
            with self.subTest(path=path, status=status):
                answer = self._post(path, body, headers)
                self.assertEqual(answer.status_code, status, answer.text)
                self.assertIn("error", answer.json())
        self.assertEqual(self._deliveries(), before)
