# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The model and version answers read their related records without
applying the record rules again (``operations.readable_tree``): they must
say exactly what reading them under the caller's rules says, and refuse
what the caller's rules or rights refuse."""

from odoo.exceptions import AccessError
from odoo.tests import TransactionCase, new_test_user, tagged

from ..exceptions import NotFound
from ..lifecycle import USER
from ..services import operations, serializers


@tagged("post_install", "-at_install")
class TestReadableTree(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other = cls.env["res.company"].create({"name": "Tree Other Co"})
        cls.user = new_test_user(cls.env, login="tree_user", groups=USER)
        cls.stranger = new_test_user(cls.env, login="tree_stranger")
        cls.model = cls.env["mlops.model"].create({"name": "tree-model"})
        cls.foreign = cls.env["mlops.model"].create(
            {"name": "tree-foreign", "company_id": cls.other.id}
        )
        Version = cls.env["mlops.model.version"]
        cls.version = Version.create(
            {"model_id": cls.model.id, "version": "1.0.0", "model_format": "onnx"}
        )
        cls.child = Version.create(
            {
                "model_id": cls.model.id,
                "version": "1.1.0",
                "model_format": "onnx",
                "parent_version_id": cls.version.id,
            }
        )
        cls.foreign_version = Version.create(
            {"model_id": cls.foreign.id, "version": "1.0.0", "model_format": "onnx"}
        )

    def test_the_same_answers_as_under_the_rules(self):
        env = self.env(user=self.user)
        for version in (self.version, self.child):
            self.assertEqual(
                operations.run(env, "versions.get", {"id": version.id})[1],
                serializers.version(version.with_env(env), full=True),
            )
        self.assertEqual(
            operations.run(env, "models.get", {"id": self.model.id})[1],
            serializers.model(self.model.with_env(env), True),
        )
        listed = operations.run(env, "versions.list", {"model_id": self.model.id})[1]
        self.assertEqual(
            listed["items"],
            [serializers.version(v.with_env(env)) for v in (self.child, self.version)],
        )
        names = [m["name"] for m in operations.run(env, "models.list", {})[1]["items"]]
        self.assertIn("tree-model", names)
        self.assertNotIn("tree-foreign", names)

    def test_what_the_rules_or_rights_refuse_stays_refused(self):
        env = self.env(user=self.user)
        with self.assertRaises(NotFound):
            operations.run(env, "versions.get", {"id": self.foreign_version.id})
        with self.assertRaises(NotFound):
            operations.run(env, "models.get", {"id": self.foreign.id})
        with self.assertRaises(AccessError):
            operations.run(
                self.env(user=self.stranger), "versions.get", {"id": self.version.id}
            )
