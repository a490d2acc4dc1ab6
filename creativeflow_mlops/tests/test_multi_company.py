# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo.exceptions import AccessError
from odoo.tests.common import new_test_user

from ..lifecycle import APPROVER, USER
from .common import MlopsCase


class TestMultiCompany(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company_b = cls.env["res.company"].create({"name": "Studio B"})
        cls.approver_b = new_test_user(
            cls.env,
            login="mlops_approver_b",
            groups=APPROVER,
            company_id=cls.company_b.id,
            company_ids=[(6, 0, cls.company_b.ids)],
        )
        cls.uploader_b = new_test_user(
            cls.env,
            login="mlops_uploader_b",
            groups=USER,
            company_id=cls.company_b.id,
            company_ids=[(6, 0, cls.company_b.ids)],
        )
        cls.model_b = cls.env["mlops.model"].create(
            {
                "name": "sentiment",
                "company_id": cls.company_b.id,
                "owner_id": cls.approver_b.id,
            }
        )

    def test_same_name_in_two_companies(self):
        self.assertEqual(self.model_b.name, self.model.name)
        self.assertNotEqual(self.model_b.company_id, self.model.company_id)
        # the slug says nothing of the other company's model ("sentiment-2"
        # told company B that a "sentiment" exists elsewhere)
        self.assertEqual(self.model_b.slug, self.model.slug)
        self.assertEqual(
            self.env["mlops.model"]
            .with_company(self.company_b)
            .create({"name": "Sentiment!", "company_id": self.company_b.id})
            .slug,
            "sentiment-2",
        )

    def test_artifact_keys_are_per_company(self):
        backend = self.env.ref("creativeflow_mlops.storage_backend_local")
        key_a = self.model._artifact_key(backend, "1.0.0", "model.onnx")
        key_b = self.model_b._artifact_key(backend, "1.0.0", "model.onnx")
        self.assertEqual(
            key_a, f"models/c{self.model.company_id.id}/sentiment/1.0.0/model.onnx"
        )
        self.assertEqual(
            key_b, f"models/c{self.company_b.id}/sentiment/1.0.0/model.onnx"
        )

    def test_records_of_another_company_are_invisible(self):
        version_b = self._new_version(model=self.model_b, uploader=self.uploader_b)
        self.assertEqual(version_b.company_id, self.company_b)
        self._bring_to(version_b, "validated")
        for user in (self.approver, self.manager):
            with self.subTest(user=user.login):
                Version = self.env["mlops.model.version"].with_user(user)
                self.assertNotIn(version_b, Version.search([]))
                self.assertFalse(
                    self.env["mlops.model"]
                    .with_user(user)
                    .search([("id", "=", self.model_b.id)])
                )
                with self.assertRaises(AccessError):
                    version_b.with_user(user).read(["version"])
                with self.assertRaises(AccessError):
                    version_b.with_user(user).with_context(mlops_reason="x").write(
                        {"state": "staging_pending"}
                    )
        self.assertEqual(version_b.state, "validated")

    def test_company_b_works_in_its_own_company(self):
        version_b = self._version_in(
            "validated", model=self.model_b, uploader=self.uploader_b
        )
        self.assertNotIn(
            self.model, self.env["mlops.model"].with_user(self.approver_b).search([])
        )
        # the approval activity goes to an approver of company B
        activity = version_b.activity_ids
        self.assertEqual(activity.user_id, self.approver_b)
        # nobody of company A may approve it, the approver of B can
        version_b.with_user(self.approver_b).action_approve_staging(reason="ok for B")
        self.assertEqual(version_b.state, "staging_pending")
        self.assertEqual(version_b.approval_ids.company_id, self.company_b)
