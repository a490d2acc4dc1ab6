"""What every queued job of the addon shares.

- ``lock``: the row lock that serializes the jobs working on one record;
- ``as_platform``: who the platform's own messages and activities come from;
- ``tell``: a note in a chatter, and an activity for whoever must act;
- ``attempt``: the error policy. A transient backend failure is retried by
  queue_job (paced by the job function's retry pattern in XML) until the
  last try, which settles what the job was for instead; a database
  concurrency error goes back to queue_job, which retries it; anything else
  fails closed with a message, never leaving a record half-way.
"""

import logging

import psycopg2

from odoo import SUPERUSER_ID
from odoo.service.model import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.tools import SQL

from odoo.addons.queue_job.exception import RetryableJobError

from ..adapters.storage import StorageRefused
from . import errors

_logger = logging.getLogger(__name__)

# queue_job states in which a job will still run without anybody's help
LIVE_JOB_STATES = ("pending", "enqueued", "started")


def lock(records):
    """``SELECT ... FOR UPDATE`` the rows of ``records``, in id order, and
    drop their cache so that what is read next is what is committed. Under
    REPEATABLE READ, a row that another transaction changed since this one
    began raises a serialization failure instead, which queue_job (or
    Odoo's dispatcher) retries: two jobs never act on the same stale row."""
    if records:
        records.env.cr.execute(
            SQL(
                "SELECT id FROM %s WHERE id IN %s ORDER BY id FOR UPDATE",
                SQL.identifier(records._table),
                tuple(records.ids),
            )
        )
        records.invalidate_recordset()
    return records


def as_platform(records):
    """``records`` as the platform itself (OdooBot, the superuser) sees them:
    what a job decides (a verdict, its chatter message, its tracking, the
    activity it schedules) is the platform's, not the user whose upload
    queued the job."""
    return records.with_user(SUPERUSER_ID).sudo()


def tell(note_on, message, user, activity_on=None, kind="mail.mail_activity_data_todo"):
    """``message`` as a note on ``note_on``, and as an activity of ``kind``
    for ``user`` (when there is one) on ``activity_on`` (``note_on`` unless
    said): where the person who must act looks."""
    note_on.message_post(body=message, subtype_xmlid="mail.mt_note")
    if user:
        (activity_on or note_on).activity_schedule(
            kind, user_id=user.id, summary=message[:250]
        )


def is_last_attempt(env):
    """Whether the queue_job running now (``job_uuid`` in the context) has no
    retry left: then a transient failure must settle what the job was for
    instead of asking to be retried."""
    uuid = env.context.get("job_uuid")
    if not uuid:
        return False
    job = env["queue.job"].sudo().search([("uuid", "=", uuid)], limit=1)
    return bool(job.max_retries) and job.retry + 1 >= job.max_retries


def attempt(env, work, what):
    """``(work(), None)``, or ``(None, problem)`` when ``work`` failed for
    good; ``work`` runs in a savepoint, so a failure leaves nothing of it.

    Raises ``RetryableJobError`` while a backend is unreachable and tries
    remain, and database concurrency errors as they are (queue_job retries
    both). ``what`` names the work in the problem's sentence."""
    try:
        with env.cr.savepoint():
            return work(), None
    except RetryableJobError:
        raise
    except errors.TRANSIENT as error:
        if not is_last_attempt(env):
            raise RetryableJobError(
                f"{what}: the backend is unreachable: {errors.describe(error)}"
            ) from error
        return None, f"{what}: the backend stayed unreachable: {errors.describe(error)}"
    except StorageRefused as error:
        return None, f"{what}: the store refused: {errors.describe(error)}"
    except psycopg2.Error as error:
        if error.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
            raise
        _logger.exception("%s failed in the database", what)
        return None, f"{what} failed in the database ({error.pgcode})"
    except Exception as error:  # noqa: BLE001 - fail closed, never hang
        _logger.exception("%s failed", what)
        return None, (
            f"{what} stopped with an error ({type(error).__name__}: "
            f"{errors.describe(error)[:200]})"
        )
