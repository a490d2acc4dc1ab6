# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""API keys without PBKDF2 on every request (services.apikeys), and
without weakening anything: a key deleted, expired or whose user is
archived fails on the very next request. And reads whose SQL does not grow
with what they list (no N+1)."""

from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.base.models.res_users import KEY_CRYPT_CONTEXT

from ..lifecycle import USER
from ..services import apikeys, endpoint_registry

API = "/mlops/api/v1"


@tagged("post_install", "-at_install")
class TestApiKeys(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="key_user", groups=USER)

    def _key(self, days=1):
        return (
            self.env["res.users.apikeys"]
            .with_user(self.user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=days))
        )

    def _get(self, key, path="/models"):
        return self.opener.get(
            f"{self.base_url()}{API}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def _verifications(self, key, times=3):
        """How many PBKDF2 verifications ``times`` requests cost."""
        calls = []

        class Counting:
            def verify(self, *args):
                calls.append(args)
                return KEY_CRYPT_CONTEXT.verify(*args)

        with patch.object(apikeys, "KEY_CRYPT_CONTEXT", Counting()):
            for _request in range(times):
                self.assertEqual(self._get(key).status_code, 200)
        return len(calls)

    def test_a_key_is_hashed_once_then_checked_every_time(self):
        key = self._key()
        self.assertEqual(self._verifications(key), 1)
        self.assertEqual(self._verifications(key), 0)
        # revoked: refused at once
        self.env["res.users.apikeys"].sudo().search(
            [("user_id", "=", self.user.id)]
        ).unlink()
        self.assertEqual(self._get(key).status_code, 401)

    def test_expiry_and_an_archived_user_hold(self):
        key = self._key()
        self.assertEqual(self._get(key).status_code, 200)
        row = (
            self.env["res.users.apikeys"]
            .sudo()
            .search([("user_id", "=", self.user.id)])
        )
        self.env.cr.execute(
            "UPDATE res_users_apikeys SET expiration_date = now() - interval '1 minute'"
            " WHERE id = %s",
            [row.id],
        )
        self.assertEqual(self._get(key).status_code, 401)
        other = self._key()
        self.assertEqual(self._get(other).status_code, 200)
        self.user.sudo().active = False
        self.assertEqual(self._get(other).status_code, 401)
        # a wrong key with the same index is no key
        self.user.sudo().active = True
        self.assertEqual(self._get(other[:8] + "x" * (len(other) - 8)).status_code, 401)

    def test_reads_cost_the_same_sql_for_5_or_50_versions(self):
        key = self._key()
        model = self.env["mlops.model"].create({"name": "n1-model"})
        versions = self.env["mlops.model.version"].sudo()
        for index in range(50):
            versions.create(
                {
                    "model_id": model.id,
                    "version": f"0.{index}.0",
                    "model_format": "onnx",
                    "metrics": {"f1": 0.9},
                }
            )
        self.env.flush_all()

        def queries(path):
            self._get(key, path)  # warm: the caches of a running server
            before = self.cr.sql_log_count
            answer = self._get(key, path)
            self.assertEqual(answer.status_code, 200, answer.text)
            return self.cr.sql_log_count - before

        few = queries(f"/models/{model.id}/versions?limit=5")
        many = queries(f"/models/{model.id}/versions?limit=50")
        self.assertLessEqual(many, few + 2, (few, many))
        registry_few = queries("/endpoints?environment=production")
        self.assertLess(registry_few, 40)


@tagged("post_install", "-at_install")
class TestRegistryCache(HttpCase):
    """GET /endpoints is built once and kept while the serving deployments,
    their versions, models and targets stay the same."""

    def _get(self, key, path="/endpoints"):
        return self.opener.get(
            f"{self.base_url()}{API}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def test_the_registry_follows_every_change(self):
        user = new_test_user(self.env, login="reg_user", groups=USER)
        key = (
            self.env["res.users.apikeys"]
            .with_user(user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
        )
        target = self.env.ref("creativeflow_mlops.deployment_target_local")
        deployments = self.env["mlops.deployment"]
        for index in range(3):
            model = self.env["mlops.model"].create({"name": f"cached-{index}"})
            version = (
                self.env["mlops.model.version"]
                .sudo()
                .create(
                    {"model_id": model.id, "version": "1.0.0", "model_format": "onnx"}
                )
            )
            deployments |= deployments.sudo().create(
                {
                    "version_id": version.id,
                    "environment": "production",
                    "strategy": "rolling",
                    "target_id": target.id,
                    "traffic_percent": 100,
                }
            )
        deployments.write({"state": "deploying"})
        deployments.write({"state": "active"})
        self.env.flush_all()

        def read():
            before = self.cr.sql_log_count
            answer = self._get(key, "/endpoints?environment=production")
            self.assertEqual(answer.status_code, 200, answer.text)
            return answer, self.cr.sql_log_count - before

        first, built = read()
        again, kept = read()
        self.assertEqual(first.json()["items"], again.json()["items"])
        self.assertEqual(first.headers["ETag"], again.headers["ETag"])
        self.assertLess(kept, built)
        # the kept JSON (encoded once) says what the entries say
        self.assertEqual(
            again.headers["Content-Type"], "application/json; charset=utf-8"
        )
        self.assertEqual(
            again.json()["items"],
            endpoint_registry.entries(self.env(user=user), "production"),
        )
        names = sorted(e["model"] for e in first.json()["items"])
        self.assertEqual(names[-3:], ["cached-0", "cached-1", "cached-2"])

        # what an entry is made of changes, in this very transaction (its
        # own change log row tells, services.registry_changes): the next
        # read says so
        deployments[0].model_id.name = "renamed-0 é"
        self.env.flush_all()
        moved, _queries = read()
        self.assertIn("renamed-0 é", [e["model"] for e in moved.json()["items"]])
        self.assertNotEqual(moved.headers["ETag"], first.headers["ETag"])
        deployments[1].write({"state": "deleted"})
        self.env.flush_all()
        gone, _queries = read()
        self.assertNotIn("cached-1", [e["model"] for e in gone.json()["items"]])
        # a user who loses the right to read is refused, cached answer or not
        user.groups_id = [(6, 0, [self.env.ref("base.group_user").id])]
        self.env.flush_all()
        refused = self._get(key, "/endpoints?environment=production")
        self.assertEqual(refused.status_code, 403, refused.text)
