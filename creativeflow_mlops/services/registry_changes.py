"""When the endpoint registry must be built again: a change log written by
PostgreSQL triggers, read in one cheap statement.

The registry (``services.endpoint_registry``) is made of the serving deployments,
their versions, models and targets. Comparing their count and latest write
dates joined 1,000 deployments to their rows on every request (about
1.5 ms of the database's time), and was not exact: a transaction that
started earlier and committed later carries an older write date.

Exact instead, and by snapshot: every transaction that changes one of those
rows leaves its transaction id in ``mlops_registry_change`` (one row per
transaction, with a sequence number moved on at each change), whatever path
it wrote through (the ORM, SQL, another process). A build is kept with the
snapshot it was read in; it still holds for a reader that sees no change row
of a transaction that snapshot did not see. A transaction's own writes
(a test, a request that writes then reads) are told by the sequence number,
and a build that saw them is kept for that transaction alone, since it may
still roll back. The log is pruned below a horizon, and a build made before
the horizon is built again once.
"""

from collections import namedtuple

from odoo.tools import SQL

from .serving import SERVING

# what a build is kept with: the snapshot it read, and when the building
# transaction had written changes itself, its id and sequence number then
Built = namedtuple("Built", "snapshot own seq")

MIN_SERVER_VERSION = 130000  # xid8, pg_current_snapshot()
SETUP = """
CREATE TABLE IF NOT EXISTS mlops_registry_change (
    xid xid8 PRIMARY KEY,
    seq bigint NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS mlops_registry_change_seq;
CREATE TABLE IF NOT EXISTS mlops_registry_horizon (horizon xid8 NOT NULL);
INSERT INTO mlops_registry_horizon (horizon)
    SELECT '0' WHERE NOT EXISTS (SELECT FROM mlops_registry_horizon);
CREATE OR REPLACE FUNCTION mlops_registry_record() RETURNS void
LANGUAGE sql AS $$
    INSERT INTO mlops_registry_change (xid, seq)
    VALUES (pg_current_xact_id(), nextval('mlops_registry_change_seq'))
    ON CONFLICT (xid) DO UPDATE SET seq = EXCLUDED.seq
$$;
"""

# the trigger function of each table: when one of its rows changes what the
# registry says (%(serving)s: the serving states, as an SQL array literal)
FUNCTIONS = {
    # a deployment entering, leaving or changing in a serving state
    "mlops_deployment": """
        IF (TG_OP <> 'INSERT' AND OLD.state = ANY(%(serving)s))
           OR (TG_OP <> 'DELETE' AND NEW.state = ANY(%(serving)s)) THEN
            PERFORM mlops_registry_record();
        END IF;
    """,
    # a version or model a serving deployment is made of
    "mlops_model_version": """
        IF EXISTS (SELECT FROM mlops_deployment
                   WHERE version_id = OLD.id AND state = ANY(%(serving)s)) THEN
            PERFORM mlops_registry_record();
        END IF;
    """,
    "mlops_model": """
        IF EXISTS (SELECT FROM mlops_deployment
                   WHERE model_id = OLD.id AND state = ANY(%(serving)s)) THEN
            PERFORM mlops_registry_record();
        END IF;
    """,
    # targets are few and seldom written: any change
    "mlops_deployment_target": """
        PERFORM mlops_registry_record();
    """,
}
EVENTS = {
    "mlops_deployment": "INSERT OR UPDATE OR DELETE",
    "mlops_model_version": "UPDATE OR DELETE",
    "mlops_model": "UPDATE OR DELETE",
    "mlops_deployment_target": "INSERT OR UPDATE OR DELETE",
}
TRIGGER = """
CREATE OR REPLACE FUNCTION %(function)s() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
%(body)s
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS %(function)s ON %(table)s;
CREATE TRIGGER %(function)s AFTER %(events)s ON %(table)s
    FOR EACH %(level)s EXECUTE FUNCTION %(function)s();
"""

# this transaction's snapshot, and its own change row if it wrote one
NOW = """
SELECT pg_current_snapshot()::text, c.xid::text, c.seq
FROM (SELECT pg_current_xact_id_if_assigned() AS own) t
LEFT JOIN mlops_registry_change c ON c.xid = t.own
"""
# this transaction's id if it wrote changes, and whether a build made at
# %(snapshot)s is stale for it
STALE = """
SELECT pg_current_xact_id_if_assigned()::text, EXISTS (
        SELECT FROM mlops_registry_change
        WHERE xid >= pg_snapshot_xmin(%(snapshot)s::pg_snapshot)
          AND NOT pg_visible_in_snapshot(xid, %(snapshot)s::pg_snapshot)
          AND xid IS DISTINCT FROM %(own)s::xid8
    ) OR EXISTS (
        SELECT FROM mlops_registry_change
        WHERE xid = %(own)s::xid8 AND seq > %(seq)s
    ) OR (SELECT max(horizon) FROM mlops_registry_horizon)
        > pg_snapshot_xmin(%(snapshot)s::pg_snapshot)
"""
UNINSTALL = """
DROP FUNCTION IF EXISTS %(functions)s CASCADE;
DROP TABLE IF EXISTS mlops_registry_change, mlops_registry_horizon;
DROP SEQUENCE IF EXISTS mlops_registry_change_seq;
"""
PRUNE = """
DELETE FROM mlops_registry_change
    WHERE xid < pg_snapshot_xmin(pg_current_snapshot());
UPDATE mlops_registry_horizon SET horizon = pg_snapshot_xmin(pg_current_snapshot());
"""


def install(cr, table, serving=SERVING):
    """The change log and ``table``'s trigger (an addon's ``init()``: on
    install and on every update, so a change of ``serving`` is applied by
    updating the addon)."""
    if cr.connection.server_version < MIN_SERVER_VERSION:
        raise RuntimeError(
            "creativeflow_mlops needs PostgreSQL 13 or later (xid8 snapshots),"
            f" this server is {cr.connection.server_version}"
        )
    cr.execute(SETUP)
    cr.execute(
        SQL(
            TRIGGER,
            function=SQL.identifier(_function(table)),
            table=SQL.identifier(table),
            # the states are written into the function, as an array literal
            body=SQL(FUNCTIONS[table], serving=list(serving)),
            events=SQL(EVENTS[table]),
            level=SQL("STATEMENT" if table == "mlops_deployment_target" else "ROW"),
        )
    )


def uninstall(cr):
    """Drop the change log, its functions and the triggers."""
    names = [*map(_function, FUNCTIONS), "mlops_registry_record"]
    functions = SQL(", ").join(SQL("%s()", SQL.identifier(name)) for name in names)
    cr.execute(SQL(UNINSTALL, functions=functions))


def _function(table):
    return f"{table}_registry_changed"


def now(cr):
    """The ``Built`` a build made now in this transaction is kept with."""
    cr.execute(NOW)
    return Built(*cr.fetchone())


def stale(cr, built):
    """Whether what was built at ``built`` may no longer hold for this
    transaction, and this transaction's id if it has written changes (what
    it builds is kept for it alone), in one statement."""
    cr.execute(STALE, built._asdict())
    own, is_stale = cr.fetchone()
    return is_stale, own


def prune(cr):
    """Drop the change rows every running transaction already sees (builds
    made before are built again once)."""
    cr.execute(PRUNE)
