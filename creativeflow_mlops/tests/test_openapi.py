# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""/openapi.json: a valid OpenAPI 3.1 document (openapi-spec-validator)
with every REST route, and real answers that conform to it."""

from datetime import timedelta

import jsonschema
from openapi_spec_validator import validate

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..controllers import framework
from ..controllers.openapi import _path
from ..controllers.openapi_schemas import BODIES
from ..lifecycle import USER
from ..services.operations import OPERATIONS

API = "/mlops/api/v1"


@tagged("post_install", "-at_install")
class TestOpenApi(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="oa_user", groups=USER)
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
        )
        model = cls.env["mlops.model"].create({"name": "oa-model"})
        cls.version = (
            cls.env["mlops.model.version"]
            .with_user(cls.user)
            .create({"model_id": model.id, "version": "1.0.0", "model_format": "onnx"})
        )
        cls.model = model

    def _document(self):
        answer = self.url_open(f"{API}/openapi.json")
        self.assertEqual(answer.status_code, 200)
        return answer.json()

    def test_the_document_is_valid_and_complete(self):
        document = self._document()
        validate(document)
        self.assertEqual(document["openapi"], "3.1.0")
        self.assertTrue(document["servers"][0]["url"].endswith(API))
        for route in framework.ROUTES:
            path = _path(route["path"])[0]
            for method in route["methods"]:
                self.assertIn(method.lower(), document["paths"].get(path, {}), path)
        # every link names an operation of the document and its parameters
        operations = {
            operation["operationId"]: operation
            for item in document["paths"].values()
            for operation in item.values()
        }
        links = [
            link
            for operation in operations.values()
            for answer in operation["responses"].values()
            for link in answer.get("links", {}).values()
        ]
        self.assertGreater(len(links), 20)
        for link in links:
            target = operations[link["operationId"]]
            names = {p["name"] for p in target["parameters"] if p["in"] == "path"}
            self.assertEqual(set(link["parameters"]), names, link)
        deploy = document["paths"]["/versions/{version_id}/deploy"]["post"]
        self.assertIn("409", deploy["responses"])
        self.assertEqual(
            deploy["parameters"][0],
            {
                "name": "version_id",
                "in": "path",
                "required": True,
                # the server reads ids as PostgreSQL integers
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            },
        )
        callback = document["paths"]["/ci/callback"]["post"]
        self.assertEqual(callback["security"], [{"signature": []}])

    def test_the_bodies_declared_are_the_fields_taken(self):
        """What the document says a body may carry is what the operation
        accepts, and nothing else passes either."""
        for body, operation in (
            ("deploy", "versions.deploy"),
            ("promote", "versions.promote"),
            ("validate", "versions.validate"),
            ("update", "deployments.update"),
            ("rollback", "deployments.rollback"),
            ("upload", "uploads.create"),
            ("complete", "uploads.complete"),
        ):
            _func, _status, accepted = OPERATIONS[operation]
            self.assertEqual(set(BODIES[body]["properties"]), accepted - {"id"}, body)
            self.assertIs(BODIES[body]["additionalProperties"], False, body)

    def _conforms(self, document, path, status, answer):
        template = next(
            p
            for p in document["paths"]
            if p.count("/") == path.count("/")
            and all(
                a == b or a.startswith("{")
                for a, b in zip(
                    p.split("/"), path.split("?")[0].split("/"), strict=True
                )
            )
        )
        schema = document["paths"][template]["get"]["responses"][str(status)][
            "content"
        ]["application/json"]["schema"]
        jsonschema.Draft202012Validator(
            {**schema, "components": document["components"]}
        ).validate(answer)

    def test_answers_conform(self):
        document = self._document()
        headers = {"Authorization": f"Bearer {self.key}"}
        for path in (
            "/models",
            f"/models/{self.model.id}",
            f"/models/{self.model.id}/versions",
            f"/versions/{self.version.id}",
            "/deployments",
            "/endpoints",
            "/events",
            f"/versions/{self.version.id}/feedback",
        ):
            answer = self.url_open(f"{API}{path}", headers=headers)
            self.assertEqual(answer.status_code, 200, f"{path}: {answer.text}")
            self._conforms(document, path, 200, answer.json())
        missing = self.url_open(f"{API}/versions/999999", headers=headers)
        self._conforms(document, "/versions/999999", 404, missing.json())
