# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Outbound webhooks: the events of a hook's types queued to it, signed
(verified with the ``standardwebhooks`` package), tried again with the same
``webhook-id``, every attempt kept, a failing hook disabled with an
activity; the secret shown once; private targets refused unless allowed."""

import json

import standardwebhooks
import testservers

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job

from ..lifecycle import MANAGER


@tagged("post_install", "-at_install")
class TestWebhooks(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = testservers.RecordingServer().start()
        cls.addClassCleanup(cls.receiver.stop)
        cls.manager = new_test_user(
            cls.env, login="wh_manager", groups=MANAGER, email="m@example.com"
        )
        cls.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.webhook_allow_private", "True"
        )
        cls.model = cls.env["mlops.model"].create({"name": "wh-model"})

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # the receiver is on loopback; Odoo's handler compares timeouts with 10
        from odoo.tests.common import _super_send  # noqa: PLC0415

        if r.url.startswith(cls.receiver.url):
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)

    def setUp(self):
        super().setUp()
        self.receiver.requests.clear()
        self.receiver.answers.clear()

    def _hook(self, **values):
        return (
            self.env["mlops.webhook"]
            .with_user(self.manager)
            .create(
                {
                    "name": "n8n",
                    "url": self.receiver.url + "/hook",
                    "event_types": "version.*",
                    **values,
                }
            )
        )

    def _version(self, model=None):
        return (
            self.env["mlops.model.version"]
            .sudo()
            .create(
                {
                    "model_id": (model or self.model).id,
                    "version": f"1.0.{len(self.model.version_ids)}",
                    "model_format": "onnx",
                }
            )
        )

    def _retried(self, job):
        """Perform ``job``, which asks to be tried again. Not assertRaises:
        Odoo's rolls the savepoint back, and the attempt it recorded with it
        (a real job's rollback leaves it: it is written apart)."""
        try:
            job.perform()
        except RetryableJobError as error:
            return error
        self.fail("the job did not ask to be tried again")

    def _jobs(self, hook):
        self.env["mlops.event"]._settle()  # what the commit's hook does
        records = self.env["queue.job"].search(
            [("model_name", "=", "mlops.webhook"), ("method_name", "=", "_deliver")],
            order="id",
        )
        return [Job.load(self.env, r.uuid) for r in records if r.records.id == hook.id]

    def test_events_are_delivered_signed_and_retried_with_the_same_id(self):
        hook = self._hook()
        secret = hook._secret()
        other = self._hook(name="deployments only", event_types="deployment.*")
        version = self._version()
        version.write({"state": "validating"})
        jobs = self._jobs(hook)
        self.assertEqual(len(jobs), 2)  # version.draft, version.validating
        self.assertFalse(self._jobs(other))
        self.assertEqual(jobs[0].channel, "root.mlops.webhooks")

        self.receiver.answer(503, b"busy")
        self._retried(jobs[1])
        self.receiver.answer(200, {"ok": True})
        jobs[1].perform()
        first, second = self.receiver.requests
        self.assertEqual(
            first["headers"]["webhook-id"], second["headers"]["webhook-id"]
        )
        payload = standardwebhooks.Webhook(secret).verify(
            second["body"], second["headers"]
        )
        event = self.env["mlops.event"].search(
            [("version_id", "=", version.id), ("type", "=", "version.validating")]
        )
        self.assertEqual(payload["type"], "version.validating")
        self.assertEqual(payload["data"]["id"], event.seq)
        self.assertEqual(payload["data"]["previous_state"], "draft")
        attempts = hook.attempt_ids.sorted("id")
        self.assertEqual(
            [(a.attempt, a.status_code, a.ok) for a in attempts],
            [(1, 503, False), (2, 200, True)],
        )
        self.assertEqual(attempts[0].excerpt, "busy")
        hook.invalidate_recordset()  # written in a transaction of its own
        self.assertEqual(hook.failure_count, 0)

    def test_a_hook_failing_in_a_row_is_disabled(self):
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.webhook_max_failures", "3"
        )
        hook = self._hook()
        version = self._version()
        (job,) = self._jobs(hook)
        for _attempt in range(2):
            self.receiver.answer(500, b"down")
            self._retried(job)
        self.receiver.answer(500, b"down")
        self.assertIn("gave up", job.perform())
        hook.invalidate_recordset()
        self.assertFalse(hook.active)
        self.assertEqual(hook.failure_count, 3)
        activity = hook.activity_ids.filtered(lambda a: a.user_id == self.manager)
        self.assertIn("disabled", activity.summary)
        # a disabled hook gets nothing more
        version.write({"state": "validating"})
        self.assertFalse(self._jobs(hook)[1:])
        self.assertEqual(len(self.receiver.requests), 3)

    def test_the_secret_is_shown_once_and_rotates(self):
        hook = self._hook()
        shown = hook.action_show_secret()["params"]["message"]
        self.assertTrue(shown.startswith("whsec_"))
        self.assertEqual(shown, hook._secret())
        with self.assertRaises(AccessError):
            hook.action_show_secret()
        hook.action_rotate_secret()
        again = hook.action_show_secret()["params"]["message"]
        self.assertNotEqual(again, shown)
        self.assertNotIn(again, json.dumps(hook.read()[0], default=str))
        # a test event, signed with the new secret
        notice = hook.action_send_test_event()
        self.assertEqual(notice["params"]["type"], "success", notice)
        (sent,) = self.receiver.requests
        payload = standardwebhooks.Webhook(again).verify(sent["body"], sent["headers"])
        self.assertEqual(payload["type"], "mlops.test")
        self.assertEqual(hook.attempt_ids.event_type, "mlops.test")

    def test_targets_and_rights(self):
        self.env["ir.config_parameter"].set_param(
            "creativeflow_mlops.webhook_allow_private", "False"
        )
        for url in (
            self.receiver.url,
            "http://localhost/x",
            "http://169.254.169.254/",
            "http://[::1]/",
            "ftp://example.com/",
        ):
            with self.assertRaises(ValidationError, msg=url):
                self._hook(url=url)
        hook = self._hook(url="https://hooks.example.com/mlops")
        approver = new_test_user(
            self.env,
            login="wh_approver",
            groups="creativeflow_mlops.group_mlops_approver",
        )
        with self.assertRaises(AccessError):
            hook.with_user(approver).read(["url"])
        with self.assertRaises(AccessError):
            self.env["mlops.webhook"].with_user(approver).create(
                {"name": "x", "url": "https://hooks.example.com/"}
            )
