"""Outbound webhooks (docs/reference/events.md): each event goes to the
active hooks of its company whose types match, one queued job per hook and
event on ``root.mlops.webhooks`` (identity: the hook and the event), with
exponential backoff from the job's retry pattern; ``webhook-id`` is the
event's, the same on every retry. Every attempt is kept, written in a
transaction of its own so that a failed attempt stays recorded when the job
rolls back to try again. ``webhook_max_failures`` failed attempts in a row
disable the hook, with an activity for its Managers.
"""

import fnmatch
import secrets
import uuid

from odoo import fields

from odoo.addons.queue_job.exception import RetryableJobError

from ..adapters import webhooks as adapter
from . import events, jobs, settings

MAX_TRIES = 8


def new_nonce():
    return secrets.token_hex(16)


def matches(hook, event_type):
    patterns = [p.strip() for p in (hook.event_types or "").split(",") if p.strip()]
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def enqueue(logged):
    """Queue the deliveries of the events just logged."""
    if not logged:
        return
    env = logged.env
    hooks = env["mlops.webhook"].sudo().search([])
    for event in logged:
        for hook in hooks:
            if hook.company_id == event.company_id and matches(hook, event.type):
                hook.with_delay(
                    channel="root.mlops.webhooks",
                    identity_key=f"mlops-webhook-{hook.id}-{event.id}",
                    max_retries=MAX_TRIES,
                    description=env._(
                        "Webhook %(hook)s: %(type)s", hook=hook.name, type=event.type
                    ),
                )._deliver(event.id)


def describe(attempt):
    if attempt.ok:
        return f"{attempt.status} in {attempt.duration_ms} ms"
    return f"{attempt.error or attempt.status} in {attempt.duration_ms} ms" + (
        f": {attempt.excerpt[:200]}" if attempt.excerpt else ""
    )


def _keep(hook, event, message_id, number, attempt):
    """Record the attempt and the hook's failure count in their own
    transaction (committed whatever the job does next); returns the count."""
    with hook.pool.cursor() as cr:
        env = hook.env(cr=cr, su=True)
        own = env["mlops.webhook"].browse(hook.id)
        env["mlops.webhook.attempt"].create(
            {
                "webhook_id": own.id,
                "event_id": event.id if event else False,
                "event_type": event.type if event else "mlops.test",
                "message_id": message_id,
                "attempt": number,
                "status_code": attempt.status,
                "ok": attempt.ok,
                "duration_ms": attempt.duration_ms,
                "excerpt": attempt.excerpt,
                "error": attempt.error or False,
            }
        )
        if attempt.ok:
            # only when there is something to reset: two deliveries of one
            # hook at once would otherwise both update its row, and the one
            # that lost (a serialization failure) would fail its job, which
            # would send the event again
            cr.execute(
                "UPDATE mlops_webhook SET failure_count = 0 "
                "WHERE id = %s AND failure_count <> 0",
                [own.id],
            )
            return 0
        cr.execute(
            "UPDATE mlops_webhook SET failure_count = COALESCE(failure_count, 0) + 1 "
            "WHERE id = %s RETURNING failure_count",
            [own.id],
        )
        count = cr.fetchone()[0]
        if own.active and count >= settings.get(env, "webhook_max_failures"):
            own.active = False
            own.message_post(
                body=env._(
                    "Disabled after %(count)s failed attempts in a row; the last: "
                    "%(last)s",
                    count=count,
                    last=describe(attempt),
                )
            )
            managers = env.ref("creativeflow_mlops.group_mlops_manager").users
            company = own.company_id
            for manager in managers.filtered(lambda u: company in u.company_ids):
                own.activity_schedule(
                    "mail.mail_activity_data_todo",
                    user_id=manager.id,
                    summary=env._("Webhook %s was disabled", own.name)[:250],
                    note=describe(attempt),
                )
        return count


def deliver(hook, event_id):
    """Queued job: the event to the hook; a failed attempt is tried again
    (RetryableJobError) until the last try."""
    hook = hook.sudo()
    event = hook.env["mlops.event"].sudo().browse(event_id).exists()
    if not event:
        return "the event is gone (retention)"
    if not hook.active:
        return "the hook is disabled"
    message_id = adapter.message_id(
        hook.env["ir.config_parameter"].sudo().get_param("database.uuid"), event.seq
    )
    number = (
        hook.env["mlops.webhook.attempt"].search_count(
            [("webhook_id", "=", hook.id), ("event_id", "=", event.id)]
        )
        + 1
    )
    allow = settings.get(hook.env, "webhook_allow_private")
    try:
        attempt = adapter.deliver(
            hook.url,
            hook._secret(),
            message_id,
            event.type,
            events.serialize(event),
            allow_private=allow,
        )
    except adapter.UnsafeUrl as refused:
        attempt = adapter.Attempt(0, False, "", 0, str(refused))
        _keep(hook, event, message_id, number, attempt)
        return f"refused: {refused}"
    failures = _keep(hook, event, message_id, number, attempt)
    if attempt.ok:
        return describe(attempt)
    hook.invalidate_recordset()
    if hook.active and not jobs.is_last_attempt(hook.env):
        raise RetryableJobError(f"attempt {number}: {describe(attempt)}")
    return f"gave up after {number} attempts ({failures} failures in a row)"


def send_test(hook):
    """*Send Test Event*: an ``mlops.test`` event, now, in this request."""
    message_id = f"msg_test_{uuid.uuid4().hex}"
    data = {
        "id": 0,
        "type": "mlops.test",
        "at": fields.Datetime.now().isoformat() + "Z",
        "data": {"webhook": hook.name},
    }
    try:
        attempt = adapter.deliver(
            hook.url,
            hook._secret(),
            message_id,
            "mlops.test",
            data,
            allow_private=settings.get(hook.env, "webhook_allow_private"),
        )
    except adapter.UnsafeUrl as refused:
        attempt = adapter.Attempt(0, False, "", 0, str(refused))
    hook.env["mlops.webhook.attempt"].sudo().create(
        {
            "webhook_id": hook.id,
            "event_type": "mlops.test",
            "message_id": message_id,
            "status_code": attempt.status,
            "ok": attempt.ok,
            "duration_ms": attempt.duration_ms,
            "excerpt": attempt.excerpt,
            "error": attempt.error or False,
        }
    )
    return attempt
