# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import shutil

from odoo.tests.common import TransactionCase, new_test_user

from ..lifecycle import APPROVER, MANAGER, USER

# How to bring a fresh draft version to each state, one step after another:
# (target, who moves it) where who is 'system', 'approver' or 'manager'.
PATHS = {
    "draft": [],
    "validating": [("validating", "system")],
    "validation_failed": [("validating", "system"), ("validation_failed", "system")],
    "validated": [("validating", "system"), ("validated", "system")],
}
PATHS["staging_pending"] = PATHS["validated"] + [("staging_pending", "approver")]
PATHS["staging"] = PATHS["staging_pending"] + [("staging", "system")]
PATHS["production_pending"] = PATHS["staging"] + [("production_pending", "approver")]
PATHS["production"] = PATHS["production_pending"] + [("production", "system")]
PATHS["archived"] = [("archived", "manager")]


class MlopsCase(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, mail_notrack=False))
        cls.company = cls.env.company
        cls.uploader = new_test_user(
            cls.env, login="mlops_uploader", groups=USER, name="Uma Uploader"
        )
        cls.user = new_test_user(
            cls.env, login="mlops_user", groups=USER, name="Ugo User"
        )
        cls.approver = new_test_user(
            cls.env, login="mlops_approver", groups=APPROVER, name="Ada Approver"
        )
        cls.approver2 = new_test_user(
            cls.env, login="mlops_approver2", groups=APPROVER, name="Abe Approver"
        )
        cls.manager = new_test_user(
            cls.env, login="mlops_manager", groups=MANAGER, name="Mia Manager"
        )
        cls.outsider = new_test_user(
            cls.env, login="mlops_outsider", name="Otto Outsider"
        )
        cls.model = cls.env["mlops.model"].create(
            {
                "name": "sentiment",
                "task_type": "classification",
                "owner_id": cls.approver.id,
            }
        )
        cls._version_seq = 0

    @classmethod
    def _new_version(cls, model=None, uploader=None, **vals):
        cls._version_seq += 1
        uploader = uploader or cls.uploader
        values = {
            "model_id": (model or cls.model).id,
            "version": f"1.{cls._version_seq}.0",
            "model_format": "onnx",
            "interface_type": "kserve_v2",
            "artifact_filename": "model.onnx",
            "artifact_size": 3 * 1024**3,
            "artifact_sha256": "ab" * 32,
        }
        values.update(vals)
        # the artifact fields are the platform's, as when an upload stores it
        return (
            cls.env["mlops.model.version"]
            .with_user(uploader)
            .sudo()
            .create(values)
            .sudo(False)
        )

    def _move(self, version, target, who):
        """Move ``version`` to ``target`` the way the contract says ``who``
        does it: the platform (superuser), an approver or a manager."""
        if who == "system":
            version.sudo().write({"state": target})
            return
        actor = (
            self.approver2 if version.uploaded_by_id == self.approver else self.approver
        )
        if who == "manager":
            actor = self.manager
        version.with_user(actor).with_context(mlops_reason="tested")._lifecycle_move(
            target
        )

    def _bring_to(self, version, state):
        if state == "deprecated":
            self._bring_to(version, "production")
            self._bring_to(self._new_version(model=version.model_id), "production")
            self.assertEqual(version.state, "deprecated")
            return version
        for target, who in PATHS[state]:
            self._move(version, target, who)
        self.assertEqual(version.state, state)
        return version

    def _version_in(self, state, **vals):
        return self._bring_to(self._new_version(**vals), state)


def invoke_headers(env, manager, name):
    """Headers with a new invoke key for every model and environment, made
    by ``manager``."""
    _key, token = (
        env["mlops.invoke.key"]
        .with_user(manager)
        ._generate({"name": name, "environment": "all"})
    )
    return {"Authorization": f"Bearer {token}"}


class LocalTargetCleanup:
    """Mixed into a test case that runs deployments on the local target:
    whatever model servers and router a test started are stopped after it."""

    def setUp(self):
        super().setUp()
        self.addCleanup(self._take_local_target_down)

    def _take_local_target_down(self):
        client = self.env.ref(
            "creativeflow_mlops.deployment_target_local"
        )._get_client()
        client.stop_watchdog()
        for key in list(client.runtime.running()):
            client.runtime.stop(key, timeout=5)
        client.router.stop()
        # what the stopped servers left of their inference logs
        shutil.rmtree(client.log_folder(""), ignore_errors=True)
