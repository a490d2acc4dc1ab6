"""Events (docs/reference/events.md): every state change of a version, a
deployment or a pipeline run is one ``mlops.event``, written in the same
transaction as the change; the Odoo bus tells the users allowed to read the
record (``mlops.event`` notifications, sent on commit); ``GET /events`` pages
through them by cursor; a cron drops those older than
``event_retention_days``, and a cursor from before what it dropped is
refused (410, as Kubernetes answers a watch too old): following on from it
would skip events without a word.

The cursor is not the row's id. Ids are drawn when rows are inserted and
transactions commit in another order: a reader paging on ids would step over
an event whose transaction committed after a later one's. An event is
written without a cursor; once its transaction has committed, a short
transaction of its own (a post-commit hook, and a cron for any a crash left
behind) gives every event without one its ``seq`` under a transaction-level
advisory lock, tells the bus and queues the webhooks. Those settling
transactions hold the lock to their COMMIT, so cursors are handed out in
commit order: a reader that sees cursor n sees every cursor below n that
will ever exist. The lock never covers a writer's work: a validation job
scanning for minutes never holds it.
"""

import logging
from datetime import timedelta

from odoo import SUPERUSER_ID, api, fields
from odoo.tools import SQL

from ..exceptions import CursorAhead, CursorExpired
from . import serializers, settings

_logger = logging.getLogger(__name__)

MAX_LIMIT = 500
FINISHED = ("succeeded", "failed", "cancelled")
READER_GROUP = "creativeflow_mlops.group_mlops_user"
PENDING = "creativeflow_mlops.events"  # postcommit data: a settle is due
SEQUENCE = "mlops_event_cursor_seq"
# pg_advisory_xact_lock key of the cursor: "mlopsevt" read as an int8
CURSOR_LOCK = int.from_bytes(b"mlopsevt", "big")
# the newest cursor retention has dropped (ir.config_parameter)
DROPPED = "creativeflow_mlops.event_dropped_through"


def event_type(resource, state):
    if resource == "pipeline_run" and state not in ("queued", "waiting"):
        return "pipeline_run.finished" if state in FINISHED else "pipeline_run.started"
    return f"{resource}.{state}"


def record(changes):
    """Log ``changes``, ``[(record, previous_state)]`` of records that
    carry ``_event_resource`` and ``_event_values()``; once the transaction
    has committed they get their cursors and reach the bus and the hooks."""
    if not changes:
        return None
    env = changes[0][0].env
    values = []
    for changed, previous in changes:
        state = changed[changed._lifecycle_state_field]
        values.append(
            {
                "type": event_type(changed._event_resource, state),
                "resource": changed._event_resource,
                "resource_id": changed.id,
                "state": state,
                "previous_state": previous,
                **changed._event_values(),
            }
        )
    return _log(env, values)


def record_happening(changed, what, data, event_type=None):
    """Log what happened to ``changed`` without a change of its state (a
    deployment drifted, an SLO breached): type ``<resource>.<what>`` (or
    ``event_type``), its state as it is, ``data`` added to the record's
    own."""
    state = changed[changed._lifecycle_state_field]
    values = changed._event_values()
    return _log(
        changed.env,
        [
            {
                "type": event_type or f"{changed._event_resource}.{what}",
                "resource": changed._event_resource,
                "resource_id": changed.id,
                "state": state,
                "previous_state": state,
                **values,
                "data": {**(values.get("data") or {}), **data},
            }
        ],
    )


def _log(env, values):
    logged = env["mlops.event"].sudo().create(values)
    postcommit = env.cr.postcommit
    if PENDING not in postcommit.data:
        postcommit.data[PENDING] = True
        postcommit.add(lambda: settle_apart(env.registry))
    return logged


def settle_apart(registry):
    """Settle in a transaction of its own (after a commit, from the cron):
    read committed, so what it sees is what committed before it took the
    lock."""
    try:
        with registry.cursor() as cr:
            if not registry.in_test_mode():  # a test's cursor is mid-transaction
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            api.Environment(cr, SUPERUSER_ID, {})["mlops.event"]._settle()
    except Exception:  # noqa: BLE001 - the change committed; the cron settles
        _logger.exception("giving events their cursors")


def settle(env):
    """Give the events ``env`` sees without a cursor their cursors, in the
    order they were written, and tell the bus; returns them. Holds the
    cursor lock to COMMIT: run it in a short transaction."""
    Event = env["mlops.event"].sudo()
    ids = draw(env.cr)
    Event.invalidate_model(["seq"])
    settled = Event.browse(ids).sorted("seq")
    notify(settled)
    return settled


def draw(cr):
    """The cursors themselves: the ids of the events given one."""
    cr.execute("SELECT 1 FROM mlops_event WHERE seq IS NULL LIMIT 1")
    if not cr.fetchone():
        return []
    cr.execute("SELECT pg_advisory_xact_lock(%s)", [CURSOR_LOCK])
    cr.execute(
        """
        WITH pending AS (
            SELECT id, nextval(%s) AS seq
              FROM (SELECT id FROM mlops_event WHERE seq IS NULL ORDER BY id) AS p
        )
        UPDATE mlops_event e SET seq = pending.seq FROM pending WHERE e.id = pending.id
        RETURNING e.id
        """,
        [SEQUENCE],
    )
    return [row[0] for row in cr.fetchall()]


def install(cr):
    """The cursor's sequence; events from before cursors existed get theirs
    (at install, nothing else runs: no lock needed)."""
    cr.execute(SQL("CREATE SEQUENCE IF NOT EXISTS %s", SQL.identifier(SEQUENCE)))
    cr.execute(
        """
        UPDATE mlops_event e SET seq = p.seq
          FROM (SELECT id, nextval(%s) AS seq
                  FROM (SELECT id FROM mlops_event WHERE seq IS NULL ORDER BY id) o
               ) AS p
         WHERE e.id = p.id
        """,
        [SEQUENCE],
    )


def serialize(event):
    return {
        "id": event.seq,
        "type": event.type,
        "resource": event.resource,
        "resource_id": event.resource_id,
        "model_id": event.model_id.id or None,
        "version_id": event.version_id.id or None,
        "state": event.state,
        "previous_state": event.previous_state or None,
        "at": serializers.timestamp(event.at),
        "data": event.data or {},
    }


def readers(env, company):
    """The internal users who may read a record of ``company``: the MLOps
    users of that company (record rules here go by company)."""
    group = env.ref(READER_GROUP)
    return (
        env["res.users"]
        .sudo()
        .search(
            [
                ("groups_id", "in", group.id),
                ("share", "=", False),
                ("company_ids", "in", company.id),
            ]
        )
    )


def notify(logged):
    by_company = {}
    for event in logged:
        by_company.setdefault(event.company_id, []).append(event)
    for company, company_events in by_company.items():
        users = readers(logged.env, company)
        for event in company_events:
            users._bus_send("mlops.event", serialize(event))


def page(env, since=None, limit=100, version_id=None):
    """``{"items", "next"}``: the caller's events after the cursor
    ``since`` (0: from the oldest kept), those of one version when
    ``version_id`` is given (its state timeline). A cursor never given out
    (past the newest event) is refused."""
    Event = env["mlops.event"]
    since = since or 0
    newest = Event.sudo().search([], order="seq desc", limit=1).seq or 0
    if since > newest:
        raise CursorAhead(
            env._(
                "The cursor %(since)s was never given out: use a cursor from an "
                "earlier answer's next.",
                since=since,
            )
        )
    dropped = int(env["ir.config_parameter"].sudo().get_param(DROPPED) or 0)
    if 0 < since < dropped:
        error = CursorExpired(
            env._(
                "The events after the cursor %(since)s up to %(dropped)s are past "
                "their retention and were dropped: read the current state again, "
                "then follow on from since=%(dropped)s.",
                since=since,
                dropped=dropped,
            )
        )
        error.details = {"since": since, "dropped_through": dropped}
        raise error
    Event.check_access("read")
    domain = [("seq", ">", since)]
    if version_id:
        domain.append(("version_id", "=", version_id))
    found = Event.search(domain, order="seq", limit=limit)
    return {
        "items": [serialize(e) for e in found],
        # the newest seen: where the next call starts, or where it stands
        "next": found[-1:].seq or max(since, 0),
    }


def purge(env):
    """Cron: drop the events older than the retention, and the webhook
    attempts as old; returns how many events. The newest cursor dropped is
    kept: a reader still before it is told (``page``)."""
    before = fields.Datetime.now() - timedelta(
        days=settings.get(env, "event_retention_days")
    )
    env["mlops.webhook.attempt"].sudo().search([("at", "<", before)]).unlink()
    # an event without its cursor yet is left for the settling to come
    old = env["mlops.event"].sudo().search([("at", "<", before), ("seq", "!=", False)])
    if not old:
        return 0
    params = env["ir.config_parameter"].sudo()
    newest = max(old.mapped("seq"))
    if newest > int(params.get_param(DROPPED) or 0):
        params.set_param(DROPPED, str(newest))
    count = len(old)
    old.unlink()
    return count
