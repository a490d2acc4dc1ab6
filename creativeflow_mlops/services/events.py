"""Events (shared/contract/api.md): every state change of a version, a
deployment or a pipeline run is one ``mlops.event``, written in the same
transaction as the change; the Odoo bus tells the users allowed to read the
record (``mlops.event`` notifications, sent on commit); ``GET /events`` pages
through them by cursor; a cron drops those older than
``event_retention_days``.

Types are ``<resource>.<state>`` (``version.validated``,
``deployment.active``...), a record's creation included (``version.draft``,
``deployment.requested``, ``pipeline_run.queued``), but a pipeline run's
later ones: ``pipeline_run.started`` and ``pipeline_run.finished`` (its
``state`` says how).
"""

from datetime import timedelta

from odoo import fields

from ..exceptions import InvalidInput
from . import serializers, settings

MAX_LIMIT = 500
FINISHED = ("succeeded", "failed", "cancelled")
READER_GROUP = "creativeflow_mlops.group_mlops_user"


def event_type(resource, state):
    if resource == "pipeline_run" and state != "queued":
        return "pipeline_run.finished" if state in FINISHED else "pipeline_run.started"
    return f"{resource}.{state}"


def record(changes):
    """Log ``changes``, ``[(record, previous_state)]`` of records that
    carry ``_event_resource`` and ``_event_values()``, and tell the bus."""
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
    logged = env["mlops.event"].sudo().create(values)
    notify(logged)
    return logged


def serialize(event):
    return {
        "id": event.id,
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
    newest = Event.sudo().search([], order="id desc", limit=1).id or 0
    if since > newest:
        raise InvalidInput(
            env._(
                "The cursor %(since)s is past the newest event (%(newest)s): use a "
                "cursor from an earlier answer's next.",
                since=since,
                newest=newest,
            )
        )
    Event.check_access("read")
    domain = [("id", ">", since)]
    if version_id:
        domain.append(("version_id", "=", version_id))
    found = Event.search(domain, order="id", limit=limit)
    return {
        "items": [serialize(e) for e in found],
        # the newest seen: where the next call starts, or where it stands
        "next": found[-1:].id or max(since, 0),
    }


def purge(env):
    """Cron: drop the events older than the retention; returns how many."""
    before = fields.Datetime.now() - timedelta(
        days=settings.get(env, "event_retention_days")
    )
    old = env["mlops.event"].sudo().search([("at", "<", before)])
    count = len(old)
    old.unlink()
    return count
