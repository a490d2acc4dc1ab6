# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""No path around the services: Odoo's generic ``call_kw`` (JSON-RPC) and
XML-RPC reach every model, so every field the lifecycle owns is tried there,
by every role, and must be refused as an access error with nothing changed.

The test is generated from the registry: every model this addon defines,
every field it defines on them, every role. A model is either guarded
(``mlops.guarded.mixin``: its ``_guarded_user_fields`` are what users may
set, the rest is the platform's) or configuration that managers edit in
forms (named below); a new model that is neither fails here, and a new
field of a guarded model is refused without editing this file.
"""

import base64
import json
import xmlrpc.client

from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import APPROVER, MANAGER, USER

ADDON = "creativeflow_mlops"

# edited by managers in forms; their access rights say who (ir.model.access)
CONFIGURATION = {
    "mlops.storage.backend",
    "mlops.deployment.target",
    "mlops.ci.provider",
    "mlops.validation.policy",
    "mlops.model.tag",
    "mlops.slo",
    "mlops.deploy.freeze",
}
# magic columns Odoo sets itself on every model
PASSWORD = "guarded-fields-pass"
MAGIC = {"id", "create_uid", "create_date", "write_uid", "write_date", "display_name"}


def forged_value(record, field):
    """A value of ``field``'s type that differs from what ``record`` holds."""
    current = record[field.name]
    kind = field.type
    if kind in ("char", "text", "html"):
        return "forged"
    if kind == "integer":
        return (current or 0) + 7
    if kind == "float":
        return (current or 0.0) + 7.5
    if kind == "boolean":
        return not current
    if kind == "datetime":
        return "2031-01-02 03:04:05"
    if kind == "date":
        return "2031-01-02"
    if kind == "json":
        return {"forged": True}
    if kind == "binary":
        return base64.b64encode(b"forged").decode()
    if kind == "selection":
        values = [v for v, _label in field._description_selection(record.env)]
        return next((v for v in values if v != current), values[0])
    if kind == "many2one":
        other = (
            record.env[field.comodel_name]
            .sudo()
            .search([("id", "!=", current.id)], limit=1)
        )
        return (other or current).id or False
    if kind == "many2many":
        return [[6, 0, []]]
    if kind == "one2many":
        return [[5, 0, 0]]
    raise AssertionError(f"no forged value for a {kind} field ({field})")


@tagged("post_install", "-at_install")
class TestNoPathAroundTheServices(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        groups = {
            "user": USER,
            "approver": APPROVER,
            "manager": MANAGER,
            "administrator": f"{MANAGER},base.group_system",
        }
        cls.roles = {
            role: new_test_user(
                cls.env, login=f"g_{role}", password=PASSWORD, groups=group
            )
            for role, group in groups.items()
        }
        cls._make_one_of_each()

    @classmethod
    def _make_one_of_each(cls):
        """A record of every model, made the way the platform makes them."""
        env = cls.env
        model = env["mlops.model"].create({"name": "guarded"})
        version = env["mlops.model.version"].create(
            {"model_id": model.id, "version": "1.0.0", "state": "validating"}
        )
        version.write({"state": "validated"})
        env["mlops.validation.result"].create(
            {"version_id": version.id, "scan_type": "format", "state": "passed"}
        )
        deployment = env["mlops.deployment"].create({"version_id": version.id})
        env["mlops.deployment.metric"].create(
            {"deployment_id": deployment.id, "at": "2026-01-01 00:00:00"}
        )
        batch = env["mlops.inference.batch"].create(
            {
                "name": "b1",
                "deployment_id": deployment.id,
                "source": "runtime",
                "storage_backend_id": env["mlops.storage.backend"]._get_default().id,
                "object_key": "inference-log/b1.jsonl",
            }
        )
        env["mlops.inference.record"].create(
            {
                "batch_id": batch.id,
                "deployment_id": deployment.id,
                "company_id": deployment.company_id.id,
                "request_id": "r1",
            }
        )
        env["mlops.experiment"].create(
            {
                "name": "ab",
                "model_id": model.id,
                "arm_ids": [(0, 0, {"version_id": version.id, "weight": 100})],
            }
        )
        env["mlops.outcome"].create(
            {
                "request_id": "r1",
                "name": "conversion",
                "value": 1.0,
                "company_id": env.company.id,
            }
        )
        env["mlops.inference.event"].create(
            {"deployment_id": deployment.id, "request_id": "r1", "kind": "request"}
        )
        env["mlops.drift.report"].create(
            {
                "deployment_id": deployment.id,
                "feature_ids": [(0, 0, {"name": "x[0]", "method": "ks", "value": 0.5})],
            }
        )
        run = env["mlops.pipeline.run"].create({"deployment_id": deployment.id})
        env["mlops.pipeline.delivery"].create({"run_id": run.id, "signature": "ab"})
        env["mlops.version.approval"].create(
            {
                "version_id": version.id,
                "stage": "staging",
                "decision": "approved",
                "user_id": cls.roles["approver"].id,
                "deployment_id": deployment.id,
            }
        )
        env["mlops.promotion"].create(
            {
                "model_id": model.id,
                "environment": "staging",
                "version_after_id": version.id,
                "deployment_id": deployment.id,
                "live_from": "2026-01-01 00:00:00",
            }
        )
        env["mlops.gate.check"].create(
            {"model_id": model.id, "environment": "production", "version": "1"}
        )
        env["mlops.feedback"].create({"version_id": version.id, "rating": 3})
        env["mlops.feedback.export"].create({"model_id": model.id})
        account = model._cost_analytic_account()
        env["account.analytic.line"].create(
            {
                "name": "cost",
                account.plan_id._column_name(): account.id,
                "amount": -1.0,
                "mlops_deployment_id": deployment.id,
            }
        )
        env["mlops.invoke.key"].with_user(cls.roles["manager"])._generate(
            {"name": "n8n"}
        )
        hook = env["mlops.webhook"].create(
            {"name": "hook", "url": "https://hooks.example.com/in"}
        )
        env["mlops.webhook.attempt"].create(
            {"webhook_id": hook.id, "event_type": "x", "message_id": "m"}
        )
        env["mlops.upload"].create(
            {
                "storage_backend_id": env["mlops.storage.backend"]._get_default().id,
                "object_key": "k",
                "s3_upload_id": "u",
                "expires_at": "2031-01-01 00:00:00",
            }
        )

    # ------------------------------------------------------------------
    # The two generic faces
    # ------------------------------------------------------------------

    def _call_kw(self, model, method, args):
        """(refused as an access error?, what the server said)."""
        response = self.url_open(
            f"/web/dataset/call_kw/{model}/{method}",
            data=json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "call",
                    "id": 1,
                    "params": {
                        "model": model,
                        "method": method,
                        "args": args,
                        "kwargs": {},
                    },
                }
            ),
            headers={"Content-Type": "application/json"},
        )
        body = response.json()
        if "error" not in body:
            return False, body.get("result")
        name = body["error"]["data"]["name"]
        return "AccessError" in name, name

    def _xmlrpc(self, user, model, method, args):
        try:
            result = self.xmlrpc_object.execute_kw(
                self.env.cr.dbname, user.id, PASSWORD, model, method, args
            )
        except xmlrpc.client.Fault as fault:
            return fault.faultCode == 4, fault.faultString[:200]
        return False, result

    def _both_faces(self, user, model, calls):
        for method, args in calls:
            yield "call_kw", method, self._call_kw(model, method, args)
            yield "xmlrpc", method, self._xmlrpc(user, model, method, args)

    def _as(self, role):
        user = self.roles[role]
        self.authenticate(user.login, PASSWORD)
        return user

    # ------------------------------------------------------------------
    # What is guarded
    # ------------------------------------------------------------------

    def _addon_models(self):
        names = (
            self.env["ir.model"]
            .sudo()
            .search([])
            .filtered(lambda m: ADDON in (m.modules or "").split(", "))
            .mapped("model")
        )
        return sorted(
            name
            for name in names
            if name in self.env
            and not self.env[name]._abstract
            and not self.env[name]._transient
        )

    def _platform_fields(self, Model):
        """The stored or writable fields this addon defines on ``Model`` that
        users may not set."""
        user_fields = Model._guarded_user_fields
        return [
            field
            for name, field in Model._fields.items()
            if field._module == ADDON
            and name not in MAGIC
            and name not in user_fields
            and (field.store or field.inverse)
        ]

    def test_every_model_is_guarded_or_configuration(self):
        models = self._addon_models()
        self.assertIn("mlops.deployment", models)
        unclassified = [
            name
            for name in models
            if name not in CONFIGURATION and not hasattr(self.env[name], "_guard_check")
        ]
        self.assertEqual(unclassified, [], "neither guarded nor configuration")

    def test_platform_fields_refused_to_every_role_on_both_faces(self):
        tried = 0
        for model_name in self._addon_models():
            if model_name in CONFIGURATION:
                continue
            Model = self.env[model_name].sudo()
            record = Model.with_context(active_test=False).search([], limit=1)
            self.assertTrue(record, f"no {model_name} to try: make one above")
            owned = self._platform_fields(Model)
            before = record.read([f.name for f in owned])
            for role in self.roles:
                user = self._as(role)
                for field in owned:
                    vals = {field.name: forged_value(record, field)}
                    calls = [("write", [record.ids, vals])]
                    # the states a record is created in are the lifecycle
                    # table's (test_lifecycle)
                    if field.name != getattr(Model, "_lifecycle_state_field", None):
                        calls.append(("create", [vals]))
                    for face, method, (refused, said) in self._both_faces(
                        user, model_name, calls
                    ):
                        tried += 1
                        self.assertTrue(
                            refused,
                            f"{role} {method} {model_name}.{field.name} "
                            f"through {face}: {said}",
                        )
                if not Model._guarded_user_fields:
                    # records wholly the platform's are not deleted by hand
                    for face, _method, (refused, said) in self._both_faces(
                        user, model_name, [("unlink", [record.ids])]
                    ):
                        tried += 1
                        self.assertTrue(
                            refused,
                            f"{role} deleted {model_name} through {face}: {said}",
                        )
            record.invalidate_recordset()
            self.assertTrue(record.exists())
            self.assertEqual(record.read([f.name for f in owned]), before, model_name)
        # 15 guarded models, 4 roles, 2 faces: thousands of calls
        self.assertGreater(tried, 1000)

    def test_user_fields_still_written_through_call_kw(self):
        """The guard refuses what the platform owns, not what users edit."""
        self._as("user")
        model = self.env["mlops.model"].sudo().search([("name", "=", "guarded")])
        refused, said = self._call_kw(
            "mlops.model", "write", [model.ids, {"description": "edited by hand"}]
        )
        self.assertFalse(refused, said)
        self.assertEqual(model.description, "edited by hand")
