# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The endpoint registry's change log (``services.registry_changes``): the
triggers record exactly the changes the registry is made of, and a build is
stale for a transaction exactly when that transaction sees a change its
snapshot did not. The transactions of the second half are real ones, on
their own connections, as concurrent requests have them."""

from contextlib import closing, contextmanager

from odoo.sql_db import db_connect
from odoo.tests import tagged

from ..services import registry_changes as changes
from .common import MlopsCase

# a statement that changes nothing and still fires the targets' trigger
# (statement level): another transaction's change, without data to undo
TOUCH = "UPDATE mlops_deployment_target SET name = name WHERE false"


@tagged("post_install", "-at_install")
class TestRegistryTriggers(MlopsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.serving = cls._new_version()
        cls.idle = cls._new_version()
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        cls.deployment = (
            cls.env["mlops.deployment"]
            .sudo()
            .create(
                {
                    "version_id": cls.serving.id,
                    "environment": "production",
                    "target_id": cls.target.id,
                    "traffic_percent": 100,
                }
            )
        )
        cls.deployment.write({"state": "deploying"})

    def _seq(self):
        """This transaction's change row's sequence number, or None."""
        self.env.flush_all()
        return changes.now(self.env.cr).seq

    def _moved(self, change):
        before = self._seq()
        change()
        after = self._seq()
        return after is not None and after != before

    def test_what_the_registry_is_made_of_is_recorded(self):
        # entering a serving state is a change; a deployment that is not
        # serving changes nothing the registry says
        self.assertFalse(self._moved(lambda: self.deployment.write({"replicas": 2})))
        self.assertTrue(self._moved(lambda: self.deployment.write({"state": "active"})))
        self.assertTrue(self._moved(lambda: self.deployment.write({"replicas": 3})))
        # the serving version and its model, not another version
        self.assertTrue(
            self._moved(lambda: self.serving.write({"description": "changed"}))
        )
        self.assertFalse(
            self._moved(lambda: self.idle.write({"description": "changed"}))
        )
        self.assertTrue(
            self._moved(lambda: self.serving.model_id.write({"name": "renamed"}))
        )
        self.assertTrue(self._moved(lambda: self.target.write({"name": "Local 2"})))
        # leaving a serving state is a change too
        self.assertTrue(
            self._moved(lambda: self.deployment.write({"state": "deleted"}))
        )

    def test_a_build_seeing_its_own_changes_holds_until_the_next_one(self):
        self.deployment.write({"state": "active"})
        self.env.flush_all()
        built = changes.now(self.env.cr)
        self.assertTrue(built.own)
        self.assertEqual(changes.stale(self.env.cr, built), (False, built.own))
        self.serving.write({"description": "again"})
        self.env.flush_all()
        self.assertEqual(changes.stale(self.env.cr, built), (True, built.own))

    def test_uninstalling_leaves_nothing(self):
        cr = self.env.cr
        changes.uninstall(cr)  # rolled back with the test
        cr.execute(
            "SELECT to_regclass('mlops_registry_change'),"
            " to_regclass('mlops_registry_horizon'),"
            " to_regclass('mlops_registry_change_seq'),"
            " (SELECT count(*) FROM pg_trigger"
            "  WHERE tgname LIKE 'mlops%%registry_changed'),"
            " (SELECT count(*) FROM pg_proc WHERE proname LIKE 'mlops%%registry%%')"
        )
        self.assertEqual(cr.fetchone(), (None, None, None, 0, 0))


@tagged("post_install", "-at_install")
class TestRegistryStaleness(MlopsCase):
    """Builds and reads in their own transactions (REPEATABLE READ, as
    Odoo's cursors), committed or not."""

    @contextmanager
    def _transaction(self, commit=True):
        with closing(db_connect(self.env.cr.dbname).cursor()) as cr:
            yield cr
            if commit:
                # its own connection, not the test's
                cr.commit()  # pylint: disable=invalid-commit
            else:
                cr.rollback()

    def _built(self):
        with self._transaction() as cr:
            built = changes.now(cr)
        self.assertIsNone(built.own)
        return built

    def _stale(self, built):
        with self._transaction() as cr:
            is_stale, own = changes.stale(cr, built)
        self.assertIsNone(own)
        return is_stale

    def test_no_change_since_the_build(self):
        self.assertFalse(self._stale(self._built()))

    def test_a_change_committed_after_the_build(self):
        built = self._built()
        with self._transaction() as cr:
            cr.execute(TOUCH)
        self.assertTrue(self._stale(built))
        self.assertFalse(self._stale(self._built()))

    def test_a_change_begun_before_the_build_and_committed_after(self):
        # what a latest write date misses: the change carries the older time
        with self._transaction() as writer:
            writer.execute(TOUCH)
            built = self._built()
            self.assertFalse(self._stale(built))  # not committed: not seen
        self.assertTrue(self._stale(built))

    def test_a_change_rolled_back(self):
        built = self._built()
        with self._transaction(commit=False) as cr:
            cr.execute(TOUCH)
        self.assertFalse(self._stale(built))

    def test_a_reader_older_than_the_build(self):
        # it serves what a later snapshot saw: committed, and newer
        with self._transaction() as reader:
            reader.execute("SELECT 1")  # its snapshot, taken now
            with self._transaction() as cr:
                cr.execute(TOUCH)
            built = self._built()
            self.assertEqual(changes.stale(reader, built), (False, None))

    def test_a_build_older_than_the_pruned_log_is_stale(self):
        with self._transaction() as cr:
            changes.prune(cr)
            cr.execute("SELECT horizon::text::bigint FROM mlops_registry_horizon")
            horizon = cr.fetchone()[0]
        with self._transaction() as cr:
            cr.execute(
                "SELECT count(*) FROM mlops_registry_change WHERE xid < %s::text::xid8",
                [str(horizon)],
            )
            self.assertEqual(cr.fetchone()[0], 0)
        # snapshots that saw every transaction below ``far``, so that the
        # log does not tell them apart: the horizon does
        far = horizon + 10**9
        before = changes.Built(f"{horizon - 1}:{far}:", None, None)
        self.assertTrue(self._stale(before))
        self.assertFalse(self._stale(before._replace(snapshot=f"{horizon}:{far}:")))
