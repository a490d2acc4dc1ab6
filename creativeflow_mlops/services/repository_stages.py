"""The stages of a deployment to a target that keeps its deployments in a
repository (``gitops``): ``commit`` (the colour written, with why:
``approval_of``), ``open_change`` (a pull or merge request where a review
is asked: the run waits, ``services.gitops`` hears the merge) and
``await_merge`` (nothing to await when no review was asked). Each is a
stage of ``services.deployment.run_stage``."""

from odoo import fields

from ..adapters.targets import Approval, Committed, StageNotRun
from .serving import plan


def approval_of(deployment):
    """Why ``deployment`` is made (``adapters.targets.Approval``): its
    approval, the version's checks, the ledger line it makes; a rollback
    names the commit that brought what it rolls back, when one did."""
    env = deployment.env
    approval = env["mlops.version.approval"].search(
        [("deployment_id", "=", deployment.id)], order="id desc", limit=1
    )
    version = deployment.version_id
    current = env["mlops.promotion"]._current(
        deployment.model_id, deployment.environment
    )
    kind = "rollback" if approval.stage == "rollback" else "promotion"
    revert = ""
    if kind == "rollback" and current.deployment_id.target_id == deployment.target_id:
        revert = current.deployment_id.run_ids[:1].change_commit or ""
    checks = version.validation_result_ids.sorted("id")
    latest = checks.filtered(lambda r: r.round == max(checks.mapped("round") or [0]))
    validation = "\n".join(
        f"- {r.scan_type}: {r.state}"
        + (f" ({r.summary.strip()[:200]})" if r.summary else "")
        for r in latest
    )
    before = current.version_after_id.version or env._("nothing")
    ledger = env._(
        "%(environment)s of %(model)s: %(before)s -> %(after)s (%(kind)s, "
        "%(strategy)s), approved by %(user)s",
        environment=deployment.environment,
        model=deployment.model_id.slug,
        before=before,
        after=version.version,
        kind=kind,
        strategy=deployment.strategy,
        user=approval.user_id.name or "?",
    )
    return Approval(
        kind=kind,
        approved_by=approval.user_id.name or "",
        approved_at=fields.Datetime.to_string(approval.date) if approval.date else "",
        reason=approval.reason or "",
        validation=validation,
        ledger=ledger,
        revert=revert,
    )


def commit(deployment):
    """The colour written where the target keeps it (its repository)."""
    committed = deployment.target_id._get_client().commit(
        plan(deployment), approval_of(deployment)
    )
    run = deployment.run_ids[:1]
    run.write(
        {
            "change_commit": committed.sha,
            "change_branch": committed.branch if committed.review else False,
        }
    )
    if committed.image and committed.image != deployment.image:
        deployment.write({"image": committed.image})
    return committed.log


def open_change(deployment):
    """A pull or merge request for the commit, where a review is asked:
    the run waits for it (``services.gitops`` hears the merge)."""
    run = deployment.run_ids[:1]
    committed = Committed(
        run.change_commit or "",
        run.change_branch or "",
        bool(run.change_branch),
        deployment.image or "",
    )
    opened = deployment.target_id._get_client().open_change(
        plan(deployment), approval_of(deployment), committed
    )
    run.write(
        {
            "change_number": opened.number,
            "change_url": opened.url,
            "state": "waiting",
            "waiting_since": fields.Datetime.now(),
        }
    )
    waiting = run.stage_ids.filtered(lambda s: s.name == "await_merge")
    waiting._start()
    waiting.log = run.env._("Waiting for the review of %s", opened.url)
    deployment.message_post(
        body=run.env._(
            "Waiting for the review of %(url)s (the reviewer merges it)",
            url=opened.url,
        ),
        subtype_xmlid="mail.mt_note",
    )
    return opened.log


def await_merge(deployment):
    raise StageNotRun(
        deployment.env._("nothing to review: committed to the branch itself")
    )
