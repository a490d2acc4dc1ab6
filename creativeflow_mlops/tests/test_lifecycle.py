# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import base64
from unittest.mock import patch

from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import mute_logger

from ..exceptions import LifecycleAccessError, TransitionNotAllowed
from ..lifecycle import (
    APPROVER,
    DEPLOYMENT_TRANSITIONS,
    MANAGER,
    SYSTEM,
    VERSION_STATES,
    VERSION_TRANSITIONS,
    find_transition,
)
from ..models import mlops_model_version as version_module
from .common import MlopsCase

ALL_STATES = [state for state, _label in VERSION_STATES]


class TestLifecycle(MlopsCase):
    def test_every_allowed_transition(self):
        who = {SYSTEM: "system", APPROVER: "approver", MANAGER: "manager"}
        for transition in VERSION_TRANSITIONS:
            with self.subTest(source=transition.source, target=transition.target):
                version = self._version_in(transition.source)
                self._move(version, transition.target, who[transition.actor])
                self.assertEqual(version.state, transition.target)

    def test_every_refused_transition_changes_nothing(self):
        # one version per state, each of its own model so that no version
        # reaching production deprecates another; even the superuser cannot
        # leave the table
        versions = {
            state: self._version_in(
                state, model_id=self.env["mlops.model"].create({"name": state}).id
            )
            for state in ALL_STATES
        }
        refused = 0
        for source in ALL_STATES:
            for target in ALL_STATES:
                if source == target or find_transition(
                    VERSION_TRANSITIONS, source, target
                ):
                    continue
                version = versions[source]
                with self.subTest(source=source, target=target):
                    with self.assertRaises(TransitionNotAllowed) as caught:
                        version.sudo().write({"state": target})
                    self.assertIn("cannot go from", str(caught.exception))
                    version.invalidate_recordset()
                    self.assertEqual(version.state, source)
                    refused += 1
        # 10 states, 19 moves in the table (9 of them to archived)
        self.assertEqual(refused, 10 * 9 - len(VERSION_TRANSITIONS))

    def test_system_transitions_need_the_platform(self):
        version = self._new_version()
        with self.assertRaisesRegex(LifecycleAccessError, "done by the platform"):
            version.with_user(self.manager)._lifecycle_move("validating")
        # and no caller writes a state by hand, whatever the table allows
        with self.assertRaisesRegex(LifecycleAccessError, "set by the platform"):
            version.with_user(self.manager).write({"state": "validating"})
        self.assertEqual(version.state, "draft")

    def test_create_only_in_initial_states(self):
        Version = self.env["mlops.model.version"]
        vals = {"model_id": self.model.id, "version": "9.0.0", "state": "production"}
        with self.assertRaises(TransitionNotAllowed):
            Version.with_user(self.manager).create(vals)
        with self.assertRaises(TransitionNotAllowed):
            Version.sudo().create(vals)
        # the upload service creates versions already validating
        with self.assertRaises(LifecycleAccessError):
            Version.with_user(self.manager).create(dict(vals, state="validating"))
        version = Version.sudo().create(dict(vals, state="validating"))
        self.assertEqual(version.state, "validating")

    def test_import_cannot_set_a_state(self):
        result = (
            self.env["mlops.model.version"]
            .with_user(self.manager)
            .load(["model_id/id", "version", "state"], [["", "7.0.0", "production"]])
        )
        self.assertFalse(result["ids"])
        self.assertTrue(result["messages"])

    def test_new_production_deprecates_previous(self):
        old = self._version_in("production")
        self.assertEqual(self.model.production_version_id, old)
        new = self._version_in("production")
        self.assertEqual(old.state, "deprecated")
        self.assertEqual(self.model.production_version_id, new)
        self.assertIn("Replaced in production", old.message_ids[0].body)
        # rollback: the deprecated version goes back through a rollout
        old.with_user(self.approver).action_rollback(reason="1.x regressed")
        self.assertEqual(old.state, "production_pending")
        self._move(old, "production", "system")
        self.assertEqual(new.state, "deprecated")
        self.assertEqual(self.model.production_version_id, old)

    def test_versions_never_write_their_model_row(self):
        """Concurrent uploads and rounds of one model must not conflict on
        its row: creating a version or moving its state writes nothing on
        mlops_model, and the model still says which version is where."""
        Model = self.env["mlops.model"]
        statements = []
        execute = type(self.env.cr).execute

        def record(cr, query, *args, **kwargs):
            statements.append(str(query))
            return execute(cr, query, *args, **kwargs)

        with patch.object(type(self.env.cr), "execute", autospec=True) as spy:
            spy.side_effect = record
            version = self._new_version()
            self._bring_to(version, "production")
            self.env.flush_all()
        self.assertTrue(statements)
        self.assertFalse([q for q in statements if 'UPDATE "mlops_model"' in q])
        self.model.invalidate_recordset()
        self.assertEqual(self.model.production_version_id, version)
        self.assertEqual(self.model.latest_version_id, version)
        self.assertIn(
            self.model, Model.search([("production_version_id", "!=", False)])
        )
        newer = self._new_version()
        self.model.invalidate_recordset()
        self.assertEqual(self.model.latest_version_id, newer)
        self.assertNotIn(
            self.model, Model.search([("production_version_id", "=", False)])
        )

    def test_promote_and_rollback_start_from_their_own_states(self):
        deprecated = self._version_in("deprecated")
        with self.assertRaisesRegex(TransitionNotAllowed, "only versions in Staging"):
            deprecated.with_user(self.approver).action_promote(reason="no")
        staging = self._version_in("staging")
        with self.assertRaisesRegex(
            TransitionNotAllowed, "only versions in Deprecated"
        ):
            staging.with_user(self.approver).action_rollback(reason="no")
        self.assertEqual(staging.state, "staging")

    def test_archive_undeploys_and_keeps_artifact(self):
        version = self._version_in("staging")
        deployment = self.env["mlops.deployment"].create(
            {"version_id": version.id, "environment": "staging"}
        )
        deployment.sudo().write({"state": "deploying"})
        deployment.sudo().write({"state": "active"})
        version.with_user(self.manager).action_archive_version()
        self.assertEqual(version.state, "archived")
        self.assertEqual(deployment.state, "deleted")
        self.assertEqual(version.artifact_sha256, "ab" * 32)

    def test_where_an_artifact_lives_is_the_platforms_to_say(self):
        version = self._new_version()
        for values in (
            {"artifact_object_key": "models/other/1.0.0/model.onnx"},
            {"artifact_uri": "s3://bucket/models/other/1.0.0/model.onnx"},
            {
                "storage_backend_id": self.env.ref(
                    "creativeflow_mlops.storage_backend_local"
                ).id
            },
        ):
            with self.assertRaisesRegex(AccessError, "set by the platform"):
                version.with_user(self.uploader).write(values)
            with self.assertRaisesRegex(AccessError, "set by the platform"):
                self.env["mlops.model.version"].with_user(self.uploader).create(
                    {"model_id": self.model.id, "version": "8.0.0", **values}
                )

    def test_form_upload_is_limited(self):
        version = self._new_version(artifact_sha256=False, artifact_size=False)
        with (
            patch.object(version_module, "FORM_UPLOAD_LIMIT", 10),
            self.assertRaisesRegex(UserError, "POST /mlops/api/v1/uploads"),
        ):
            version.with_user(self.uploader).artifact_upload = base64.b64encode(
                b"x" * 11
            )
        self.assertFalse(version.artifact_object_key)

    def test_artifact_is_immutable_after_draft(self):
        version = self._new_version()
        version.with_user(self.uploader).write({"model_format": "safetensors"})
        self._bring_to(version, "validated")
        with self.assertRaisesRegex(UserError, "can no longer change"):
            version.with_user(self.manager).write({"model_format": "onnx"})
        # what the artifact is, the platform says in every state
        with self.assertRaisesRegex(AccessError, "set by the platform"):
            version.with_user(self.manager).write({"artifact_sha256": "ef" * 32})
        version.with_user(self.manager).write({"description": "still editable"})
        self.assertEqual(version.model_format, "safetensors")
        self.assertEqual(version.artifact_sha256, "ab" * 32)

    def test_version_values_are_checked(self):
        with self.assertRaisesRegex(ValidationError, "is not valid"):
            self._new_version(version="1.0 beta")
        with self.assertRaisesRegex(ValidationError, "is not valid"):
            self._new_version(version="../1")
        with self.assertRaisesRegex(ValidationError, "SHA-256"):
            self._new_version(artifact_sha256="XYZ")
        self._new_version(version="2.0.0-rc.1+build.5")

    @mute_logger("odoo.sql_db")
    def test_version_unique_per_model(self):
        self._new_version(version="3.0.0")
        with self.assertRaises(IntegrityError), self.env.cr.savepoint():
            self._new_version(version="3.0.0")
        other = self.env["mlops.model"].create({"name": "captioner"})
        self._new_version(model=other, version="3.0.0")

    @mute_logger("odoo.sql_db")
    def test_model_name_unique_per_company(self):
        with self.assertRaises(IntegrityError), self.env.cr.savepoint():
            self.env["mlops.model"].create({"name": "sentiment"})
        self.assertEqual(self.model.slug, "sentiment")
        spaced = self.env["mlops.model"].create({"name": "Style Transfer / v2"})
        self.assertEqual(spaced.slug, "style-transfer-v2")
        # slugs name artifact keys and cluster objects: unique across names
        # and renames in a company
        self.assertEqual(
            self.env["mlops.model"].create({"name": "Sentiment!"}).slug, "sentiment-2"
        )
        self.assertEqual(self.env["mlops.model"].create({"name": "模型"}).slug, "model")
        spaced.name = "Renamed"
        self.assertEqual(spaced.slug, "style-transfer-v2")

    def test_json_fields_edit_as_text(self):
        version = self._new_version()
        version.with_user(self.uploader).parameters_text = '{"lr": 0.001, "epochs": 3}'
        self.assertEqual(version.parameters, {"lr": 0.001, "epochs": 3})
        with self.assertRaisesRegex(ValidationError, "not valid JSON"):
            version.with_user(self.uploader).metrics_text = "{accuracy: 0.9"
        self.assertFalse(version.metrics)

    def test_delete_guards(self):
        live = self._version_in("validated")
        with self.assertRaisesRegex(UserError, "Only draft, failed or archived"):
            live.with_user(self.manager).unlink()
        with self.assertRaisesRegex(UserError, "still has versions in use"):
            self.model.with_user(self.manager).unlink()
        draft = self._new_version()
        draft.with_user(self.manager).unlink()
        self.assertFalse(draft.exists())

    def test_deployment_table(self):
        version = self._version_in("staging")
        Deployment = self.env["mlops.deployment"]
        with self.assertRaises(AccessError):
            Deployment.with_user(self.approver).create({"version_id": version.id})
        deployment = (
            Deployment.with_user(self.approver)
            .sudo()
            .create({"version_id": version.id})
        )
        with self.assertRaises(TransitionNotAllowed):
            deployment.sudo().write({"state": "active"})
        with self.assertRaisesRegex(LifecycleAccessError, "done by the platform"):
            deployment.with_user(self.manager)._lifecycle_move("deploying")
        for target in (
            "deploying",
            "rolling_out_canary",
            "active",
            "inactive_bluegreen",
        ):
            deployment.sudo().write({"state": target})
        with self.assertRaisesRegex(UserError, "Undeploy"):
            deployment.unlink()
        deployment.with_user(self.approver)._lifecycle_move("deleted")
        self.assertTrue(find_transition(DEPLOYMENT_TRANSITIONS, "active", "deleted"))
        # the history of what served is kept: nobody deletes it by hand
        with self.assertRaises(AccessError):
            deployment.with_user(self.manager).unlink()
        deployment.unlink()
