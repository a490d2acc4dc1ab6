# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The event log: one event per state change, in the change's transaction;
bus notifications to the users who may read the record; GET /events by
cursor, by company; the retention cron."""

import contextlib
import json
from datetime import timedelta

from odoo import fields, sql_db
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged

from ..lifecycle import USER
from ..services import events

API = "/mlops/api/v1"


@tagged("post_install", "-at_install")
class TestEvents(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other_company = cls.env["res.company"].create({"name": "Other Co"})
        cls.reader = new_test_user(cls.env, login="ev_reader", groups=USER)
        cls.outsider = new_test_user(
            cls.env,
            login="ev_outsider",
            groups=USER,
            company_id=cls.other_company.id,
            company_ids=[(6, 0, [cls.other_company.id])],
        )
        cls.key = (
            cls.env["res.users.apikeys"]
            .with_user(cls.reader)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
        )
        cls.model = cls.env["mlops.model"].create({"name": "ev-model"})
        cls.foreign_model = cls.env["mlops.model"].create(
            {"name": "ev-foreign", "company_id": cls.other_company.id}
        )

    def _version(self, model=None, version="1.0.0"):
        return (
            self.env["mlops.model.version"]
            .sudo()
            .create(
                {
                    "model_id": (model or self.model).id,
                    "version": version,
                    "model_format": "onnx",
                    "artifact_sha256": "ab" * 32,
                }
            )
        )

    def _events(self, **query):
        answer = self.opener.get(
            f"{self.base_url()}{API}/events",
            params=query,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        return answer

    def _settle(self):
        """What the commit's hook does (a test never commits)."""
        return self.env["mlops.event"]._settle()

    def _cursor(self):
        self._settle()
        Event = self.env["mlops.event"].sudo()
        return Event.search([], order="seq desc", limit=1).seq or 0

    def test_each_change_is_one_event_in_its_transaction(self):
        start = (
            self.env["mlops.event"].sudo().search([], order="id desc", limit=1).id or 0
        )
        version = self._version()
        version.write({"state": "validating"})
        version.write({"state": "validated"})
        # a change rolled back leaves no event
        with contextlib.suppress(RuntimeError), self.env.cr.savepoint():
            version.write({"state": "archived"})
            raise RuntimeError("rolled back")
        logged = self.env["mlops.event"].sudo().search([("id", ">", start)])
        self.assertEqual(
            [(e.type, e.previous_state, e.state) for e in logged],
            [
                ("version.draft", False, "draft"),
                ("version.validating", "draft", "validating"),
                ("version.validated", "validating", "validated"),
            ],
        )
        self.assertEqual(logged.mapped("version_id"), version)
        self.assertEqual(logged[-1].data, {"model": "ev-model", "version": "1.0.0"})
        # the cursors come as the transaction commits, in the order written
        self.assertEqual(logged.mapped("seq"), [0, 0, 0])
        self.assertEqual(self._settle(), logged)
        cursors = logged.mapped("seq")
        self.assertTrue(all(cursors), cursors)
        self.assertEqual(cursors, sorted(cursors))
        self.assertEqual(events.serialize(logged[0])["id"], cursors[0])

    def test_the_bus_tells_the_users_who_may_read(self):
        self._settle()
        self.env.cr.precommit.run()  # what earlier changes queued for the bus
        self.env["bus.bus"].sudo().search([]).unlink()
        version = self._version()
        version.write({"state": "validating"})
        self._version(self.foreign_model)
        # told once the events have their cursors, written as that commits
        self._settle()
        self.env.cr.precommit.run()
        told = {}
        for message in self.env["bus.bus"].sudo().search([]):
            body = json.loads(message.message)
            if body["type"] == "mlops.event":
                channel = json.loads(message.channel)
                told.setdefault(tuple(channel[1:]), []).append(body["payload"])
        reader = told[("res.partner", self.reader.partner_id.id)]
        self.assertEqual(
            [(e["type"], e["model_id"]) for e in reader],
            [
                ("version.draft", self.model.id),
                ("version.validating", self.model.id),
            ],
        )
        self.assertEqual(reader[1]["version_id"], version.id)
        outsider = told[("res.partner", self.outsider.partner_id.id)]
        self.assertEqual(
            [(e["type"], e["model_id"]) for e in outsider],
            [("version.draft", self.foreign_model.id)],
        )

    def test_get_events_pages_by_cursor_and_company(self):
        start = self._cursor()
        version = self._version()
        version.write({"state": "validating"})
        self._version(self.foreign_model).write({"state": "validating"})
        version.write({"state": "validated"})
        self._settle()
        answer = self._events(since=start, limit=2)
        self.assertEqual(answer.status_code, 200, answer.text)
        first = answer.json()
        self.assertEqual(
            [e["type"] for e in first["items"]], ["version.draft", "version.validating"]
        )
        self.assertEqual(first["next"], first["items"][-1]["id"])
        event = first["items"][1]
        self.assertEqual(
            set(event),
            {
                "id",
                "type",
                "resource",
                "resource_id",
                "model_id",
                "version_id",
                "state",
                "previous_state",
                "at",
                "data",
            },
        )
        self.assertEqual(event["resource"], "version")
        self.assertEqual(event["resource_id"], version.id)
        self.assertEqual(event["previous_state"], "draft")
        self.assertTrue(event["at"].endswith("Z"))
        # the other company's events are not there
        rest = self._events(since=first["next"]).json()
        self.assertEqual([e["type"] for e in rest["items"]], ["version.validated"])
        self.assertEqual({e["model_id"] for e in rest["items"]}, {self.model.id})
        # nothing new: the same cursor back
        idle = self._events(since=rest["next"]).json()
        self.assertEqual(idle, {"items": [], "next": rest["next"]})
        # bad cursors and limits
        for query, status in (
            ({"since": rest["next"] + 1000}, 409),
            ({"since": -1}, 400),
            ({"since": "abc"}, 400),
            ({"limit": 0}, 400),
            ({"limit": 501}, 400),
        ):
            self.assertEqual(self._events(**query).status_code, status, query)
        # the same through JSON-RPC
        self.authenticate("ev_reader", "ev_reader")
        rpc = self.url_open(
            "/mlops/rpc/events.list",
            data=json.dumps(
                {"jsonrpc": "2.0", "params": {"since": start, "limit": 2}, "id": 1}
            ),
            headers={"Content-Type": "application/json"},
        ).json()
        self.assertEqual(rpc["result"], first)

    def test_one_versions_timeline(self):
        start = self._cursor()
        version = self._version()
        other = self._version(version="2.0.0")
        version.write({"state": "validating"})
        other.write({"state": "validating"})
        version.write({"state": "validated"})
        self._settle()
        answer = self._events(since=start, version_id=version.id)
        self.assertEqual(answer.status_code, 200, answer.text)
        items = answer.json()["items"]
        self.assertEqual(
            [(e["type"], e["version_id"]) for e in items],
            [
                ("version.draft", version.id),
                ("version.validating", version.id),
                ("version.validated", version.id),
            ],
        )
        # another company's version: no events, no error that tells it exists
        foreign = self._version(self.foreign_model)
        foreign.write({"state": "validating"})
        self._settle()
        answer = self._events(since=start, version_id=foreign.id)
        self.assertEqual(answer.json()["items"], [])
        for bad in ("abc", 0, -3):
            self.assertEqual(self._events(version_id=bad).status_code, 400, bad)

    def test_old_events_are_dropped(self):
        self._version(version="0.9.0")  # something read before
        before = self._cursor()
        version = self._version()
        self._settle()
        old = self.env["mlops.event"].sudo().search([("version_id", "=", version.id)])
        month_ago = fields.Datetime.now() - timedelta(days=31)
        old.write({"at": month_ago})
        hook = (
            self.env["mlops.webhook"]
            .sudo()
            .create({"name": "ev-hook", "url": "https://hooks.example.com/x"})
        )
        Attempt = self.env["mlops.webhook.attempt"].sudo()
        attempts = Attempt.create(
            [
                {"webhook_id": hook.id, "event_type": "t", "message_id": f"m{n}"}
                for n in range(2)
            ]
        )
        attempts[0].at = month_ago
        version.write({"state": "validating"})
        self._settle()
        dropped = old.seq
        self.env["mlops.event"]._cron_retention()
        kept = self.env["mlops.event"].sudo().search([("version_id", "=", version.id)])
        self.assertEqual(kept.mapped("type"), ["version.validating"])
        self.assertEqual(Attempt.search([("webhook_id", "=", hook.id)]), attempts[1])
        # a reader still before what was dropped is told, not skipped past
        stale = self._events(since=before)
        self.assertEqual(stale.status_code, 410, stale.text)
        error = stale.json()["error"]
        self.assertEqual(error["code"], "cursor_expired")
        self.assertEqual(error["details"]["dropped_through"], dropped)
        # from where the drop ends, or from the start, reading goes on
        resumed = self._events(since=dropped).json()
        self.assertEqual([e["id"] for e in resumed["items"]], [kept.seq])
        self.assertEqual(self._events().status_code, 200)


@tagged("post_install", "-at_install")
class TestEventCursors(TransactionCase):
    """The cursor against transactions committing out of order, on real
    connections of their own (the test's transaction sees none of this)."""

    INSERT = """
        INSERT INTO mlops_event (type, resource, resource_id, at)
        VALUES ('version.cursor-test', 'version', 0, now() AT TIME ZONE 'UTC')
        RETURNING id
    """

    def _committed(self, cr, query, params=()):
        cr.execute(query, params)
        rows = cr.fetchall()
        cr.commit()  # pylint: disable=invalid-commit
        return [row[0] for row in rows]

    def test_a_reader_misses_no_event_committed_late(self):
        db = sql_db.db_connect(self.env.cr.dbname)
        with db.cursor() as early, db.cursor() as late, db.cursor() as reader:
            try:
                for cr in (early, late):
                    cr.execute("SET lock_timeout = '10s'")
                # the early transaction writes first and commits last
                early.execute(self.INSERT)
                early_id = early.fetchone()[0]
                late.execute(self.INSERT)
                late_id = late.fetchone()[0]
                self.assertLess(early_id, late_id)
                events.draw(late)
                late.commit()
                # a reader polls between the two commits
                (seen,) = self._committed(
                    reader, "SELECT seq FROM mlops_event WHERE id = %s", [late_id]
                )
                self.assertTrue(seen)
                events.draw(early)
                early.commit()
                # its next poll, from the cursor it was given, has the early one
                after = self._committed(
                    reader, "SELECT id FROM mlops_event WHERE seq > %s", [seen]
                )
                # which paging on ids (since=late_id) would have stepped over
                self.assertEqual(after, [early_id])
            finally:
                reader.rollback()
                reader.execute(
                    "DELETE FROM mlops_event WHERE type = 'version.cursor-test'"
                )
                reader.commit()
