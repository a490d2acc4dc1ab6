"""Validation rounds: plan a round, chain its jobs, settle its verdict, and
the watchdog that settles a round its jobs left behind.

A round is a queue_job graph::

    integrity  ->  group(format, security_*, functional_io, ...)  ->  settle

Every scan job records its own result and nothing else; the settle job,
which queue_job starts only once every scan of the round is done, decides
the verdict. queue_job releases a dependent job after the committing
transaction of each parent, so the last scan to finish always sees the
others done: exactly one settlement, whatever the interleaving. (Letting
the last scan settle could not work: two scans finishing together each read
the other's result as running under REPEATABLE READ, and nobody settled.)

When a job is lost (a worker killed past its retries, a job cancelled by
hand, a dependency released by a process that died between its commit and
the release), the watchdog cron finds the rounds with no job left to run
and settles them, or queues their missing scans again once.
"""

import logging
from datetime import datetime, timedelta, timezone

from markupsafe import Markup

from odoo.addons.queue_job.delay import chain, group

from ..scanners import catalog
from ..scanners.report import ScanReport
from . import jobs, settings

_logger = logging.getLogger(__name__)

DONE_STATES = ("passed", "failed", "warning", "skipped")
UNFINISHED = ("pending", "running")


def scan_identity(result):
    return f"mlops-scan-{result.id}"


def settle_identity(version, round_):
    return f"mlops-settle-{version.id}-{round_}"


def round_results(version, round_=None):
    round_ = version.validation_round if round_ is None else round_
    return version.validation_result_ids.filtered(lambda r: r.round == round_)


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def start_round(version, scan_types=None, integrity_report=None):
    """Open a new round on ``version`` (sudo, ``validating``): one result per
    scan the format's policy runs, or only ``scan_types`` plus the integrity
    check, which every round runs first. ``integrity_report``: the bytes
    were just read back (a direct upload's verification), which settles
    the round's integrity check here."""
    Result = version.env["mlops.validation.result"]
    version.validation_round += 1
    round_ = version.validation_round
    results = Result.browse()
    for scan_type, mode in version.env["mlops.validation.policy"]._get_plan(
        version.model_format
    ):
        wanted = not scan_types or scan_type in scan_types
        if mode == catalog.OFF or not (wanted or scan_type == catalog.FIRST):
            continue
        results |= Result.create(
            {
                "version_id": version.id,
                "scan_type": scan_type,
                "round": round_,
                "blocking": mode == catalog.BLOCK,
                "validated_by_id": version.env.uid,
            }
        )
    first = results.filtered(lambda r: r.scan_type == catalog.FIRST)
    if first and integrity_report is not None:
        first._record(integrity_report, first._store_report_quietly(integrity_report))
    queue_round(version, round_, results.filtered(lambda r: r.state == "pending"))


def queue_round(version, round_, results):
    """Queue ``results`` (pending, of ``round_``) as the round's graph, the
    settle job last; settle now when nothing is left to run. The jobs are
    the platform's: what they write, post and schedule is OdooBot's, while
    each result keeps who asked for the round (``validated_by_id``)."""
    if not results:
        settle(version, round_)
        return
    version = jobs.as_platform(version)
    results = results.with_env(version.env)
    first = results.filtered(lambda r: r.scan_type == catalog.FIRST)
    rest = results - first
    nodes = [first._scan_job()] if first else []
    if rest:
        nodes.append(group(*(result._scan_job() for result in rest)))
    nodes.append(version._settle_job(round_))
    chain(*nodes).delay()


# ---------------------------------------------------------------------------
# Settling
# ---------------------------------------------------------------------------


def settle(version, round_):
    """Decide the verdict of ``round_`` once every scan of it finished: the
    version becomes ``validated`` or ``validation_failed``, the chatter
    lists every scan, the uploader gets an activity. Idempotent: a round
    already settled, or replaced by a newer one, is left alone. The verdict
    is the platform's (OdooBot's), whoever's job settles it."""
    version = jobs.as_platform(version)
    jobs.lock(version)
    if version.state != "validating" or version.validation_round != round_:
        return f"round {round_} is no longer open"
    unfinished = round_results(version, round_).filtered(
        lambda r: r.state in UNFINISHED
    )
    if unfinished:
        # a scan job ended without recording (the watchdog takes it up)
        return f"waiting for {', '.join(unfinished.mapped('scan_type'))}"
    verdict = _verdict(version)
    version.write({"state": "validation_failed" if verdict.failed else "validated"})
    _post_verdict(version, verdict)
    return "validation failed" if verdict.failed else "validation passed"


class _Verdict:
    def __init__(self, results, blocking, never_run):
        self.results = results
        self.blocking = blocking
        self.never_run = never_run
        self.failed = bool(blocking or never_run)


def _verdict(version):
    """The verdict stands on the latest result of every scan the policy runs
    now, so a partial re-validation cannot clear a failure it did not run
    again, and a scan skipped because the integrity check failed counts as
    failed until it runs."""
    plan = {
        scan_type: mode
        for scan_type, mode in version.env["mlops.validation.policy"]._get_plan(
            version.model_format
        )
        if mode != catalog.OFF
    }
    latest = {}
    for result in version.validation_result_ids.sorted(lambda r: (r.round, r.id)):
        if result.scan_type in plan:
            latest[result.scan_type] = result
    results = version.env["mlops.validation.result"].union(*latest.values())
    blocking = results.filtered(
        lambda r: (
            plan[r.scan_type] == catalog.BLOCK and (r.state == "failed" or r.gated)
        )
    )
    never_run = [
        t for t, mode in plan.items() if mode == catalog.BLOCK and t not in latest
    ]
    return _Verdict(results, blocking, never_run)


def _post_verdict(version, verdict):
    env = version.env
    lines = Markup().join(
        Markup("<li>%s: %s%s - %s%s</li>")
        % (
            r.scan_type,
            r.state,
            " (blocking)" if r.blocking else "",
            r.summary or "",
            ""
            if r.round == version.validation_round
            else env._(" (from round %s)", r.round),
        )
        for r in verdict.results
    )
    if verdict.never_run:
        lines += Markup().join(
            Markup("<li>%s: %s</li>") % (scan_type, env._("never run"))
            for scan_type in verdict.never_run
        )
    title = env._("Validation failed") if verdict.failed else env._("Validation passed")
    version.message_post(
        body=Markup("<p>%s</p><ul>%s</ul>") % (title, lines),
        subtype_xmlid="mail.mt_note",
    )
    if version.uploaded_by_id:
        version.activity_schedule(
            "mail.mail_activity_data_todo",
            user_id=version.uploaded_by_id.id,
            summary=(
                env._(
                    "Fix and upload again: %s",
                    ", ".join(verdict.blocking.mapped("summary") + verdict.never_run),
                )[:250]
                if verdict.failed
                else env._("Validated: ready for staging approval")
            ),
        )


# ---------------------------------------------------------------------------
# Watchdog
# ---------------------------------------------------------------------------


def watchdog(env):
    """Cron: settle the validating versions whose round has no job left to
    run (see the module's docstring). Returns what it did, per version."""
    grace = timedelta(minutes=settings.get(env, "watchdog_grace_minutes"))
    done = {}
    for version in (
        env["mlops.model.version"].sudo().search([("state", "=", "validating")])
    ):
        try:
            with env.cr.savepoint():
                outcome = _watch(version, _utcnow() - grace)
        except Exception:  # noqa: BLE001 - one version never stops the others
            _logger.exception("watching the validation of %s", version.display_name)
            continue
        if outcome:
            done[version.id] = outcome
    return done


def _utcnow():
    """Now, to the microsecond (queue_job dates its jobs so, while Odoo's
    ``Datetime.now()`` drops them)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _round_jobs(version, round_):
    results = round_results(version, round_)
    keys = [scan_identity(r) for r in results] + [settle_identity(version, round_)]
    return results, version.env["queue.job"].sudo().search(
        [("identity_key", "in", keys)], order="id"
    )


def _watch(version, before):
    version = jobs.as_platform(version)
    round_ = version.validation_round
    results, round_jobs = _round_jobs(version, round_)
    if round_jobs.filtered(lambda j: j.state in jobs.LIVE_JOB_STATES):
        return None
    moments = [version.write_date]
    for job in round_jobs:  # queue.job keeps no write_date
        moments += [job.date_done, job.date_started, job.date_enqueued]
        moments += [job.date_cancelled, job.date_created]
    if max(m for m in moments if m) > before:
        return None  # too recent: a release may be on its way
    jobs.lock(version)
    if version.state != "validating" or version.validation_round != round_:
        return None
    env = version.env
    by_key = {job.identity_key: job for job in round_jobs}
    failed, lost = [], results.browse()
    for result in results.filtered(lambda r: r.state in UNFINISHED):
        job = by_key.get(scan_identity(result))
        if (job and job.state == "failed") or result.requeue_count:
            failed.append(result)
            reason = (
                env._("its job failed (%s)", job.exc_name or job.exc_message or "")
                if job and job.state == "failed"
                else env._("its job was lost twice")
            )
            result._record(
                ScanReport(
                    result.scan_type,
                    "failed",
                    env._("the scan did not run to its end: %s", reason),
                )
            )
        else:
            lost |= result
    # a blocking integrity failure just recorded skipped the others
    lost = lost.filtered(lambda r: r.state in UNFINISHED)
    waiting = round_jobs.filtered(lambda j: j.state == "wait_dependencies")
    if waiting:
        waiting.button_cancelled()
    if lost:
        lost.write({"requeue_count": 1, "state": "pending"})
        queue_round(version, round_, lost)
        message = env._(
            "Watchdog: the jobs of %(scans)s were lost; they are queued again.",
            scans=", ".join(lost.mapped("scan_type")),
        )
        outcome = "requeued"
    else:
        message = env._(
            "Watchdog: this round had no job left to run and was not settled; "
            "it is settled now%(failed)s.",
            failed=env._(
                " (%s did not finish and count as failed)",
                ", ".join(r.scan_type for r in failed),
            )
            if failed
            else "",
        )
        outcome = "settled"
    version.message_post(body=message, subtype_xmlid="mail.mt_note")
    if outcome == "settled":
        settle(version, round_)
    return outcome
