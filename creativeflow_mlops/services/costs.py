"""What each deployment costs (docs/reference/monitoring.md), booked in
Odoo's analytic accounting: one analytic account per model, one analytic
line per deployment and booking.

- ``schedule`` (a cron, hourly) queues a ``book`` job for every deployment
  whose pods ran since it was last booked (identity: the deployment and
  the minute). A booking is the time in ``RUNNING`` states from its state
  changes (the event ledger, ``mlops.event``), times its replicas and
  resources (``adapters.costing``), priced at its target's hourly prices.
  The line carries the hours of each resource; the deployment keeps up to
  when it is booked (its row locked), so no minute is booked twice,
  whatever runs the job again.
- The model's analytic account is the one its owner chose, else one made
  for it in the project plan at its first booking.
- A model with a monthly budget passed this month: a note and an activity
  for its owner, once a month.
"""

from datetime import timedelta

from odoo import fields
from odoo.tools import SQL

from ..adapters import costing
from . import jobs
from .serving import KEEP_RUNNING

CHANNEL = "root.mlops.monitoring"
# the states in which a deployment's pods run (and cost)
RUNNING = ("deploying", *KEEP_RUNNING)
# a booking covers whole minutes up to the last one
STEP = timedelta(minutes=1)


def schedule(env, now=None):
    """Cron: a booking job per deployment whose pods ran since its last
    booking (identity: the deployment and the minute booked up to); the
    number queued."""
    now = (now or fields.Datetime.now()).replace(second=0, microsecond=0)
    Deployment = env["mlops.deployment"].sudo()
    # running now, or stopped since their last booking
    Deployment.flush_model(["state", "cost_booked_until"])
    env["mlops.event"].flush_model(["resource", "resource_id", "previous_state", "at"])
    env.cr.execute(
        SQL(
            """SELECT d.id FROM mlops_deployment d
                WHERE d.state IN %(running)s
                   OR EXISTS (
                        SELECT 1 FROM mlops_event e
                         WHERE e.resource = 'deployment' AND e.resource_id = d.id
                           AND e.previous_state IN %(running)s
                           AND (d.cost_booked_until IS NULL
                                OR e.at >= d.cost_booked_until))
                ORDER BY d.id""",
            running=RUNNING,
        )
    )
    due = Deployment.browse([row[0] for row in env.cr.fetchall()])
    for deployment in due:
        jobs.as_platform(deployment).with_delay(
            channel=CHANNEL,
            identity_key=f"mlops-cost-{deployment.id}-{now:%Y%m%d%H%M}",
            description=env._("Cost of %s", deployment.display_name),
        )._book_cost(now)
    return len(due)


def book(deployment, now):
    """Job: book what ``deployment``'s pods cost up to ``now``, then check
    its model's budget; what happened, as the job's result."""
    lines = book_deployment(deployment, now)
    if not lines:
        return "nothing ran since the last booking"
    warn_budgets(lines.mlops_model_id)
    return (
        f"{sum(lines.mapped('unit_amount')):.2f} h, "
        f"{-sum(lines.mapped('amount')):.2f} {lines[0].currency_id.name}"
    )


def _changes(deployment, start):
    """(its state at ``start``, [(at, state)...] from then on), from the
    ledger: the changes since ``start`` and the last one before it."""
    Event = deployment.env["mlops.event"].sudo()
    domain = [
        ("resource", "=", "deployment"),
        ("resource_id", "=", deployment.id),
        ("state", "!=", False),
    ]
    before = Event.search(
        [*domain, ("at", "<", start)], order="at desc, seq desc, id desc", limit=1
    )
    since = Event.search([*domain, ("at", ">=", start)], order="at, seq, id")
    if before:
        state = before.state
    elif since:
        state = since[0].previous_state or "requested"
    else:
        state = deployment.state
    changes = [(e.at, e.state) for e in since if e.state != e.previous_state]
    return state, changes


def book_deployment(deployment, now):
    """The analytic lines of what ``deployment`` cost from its last booking
    to ``now`` (none when its pods did not run), its booking moved on."""
    jobs.lock(deployment)
    lines = deployment.env["account.analytic.line"]
    start = deployment.cost_booked_until or deployment.create_date.replace(
        second=0, microsecond=0
    )
    if now - start < STEP:
        return lines
    state_before, changes = _changes(deployment, start)
    prices = deployment.target_id._cost_prices()
    for first, last in costing.months(start, now):
        seconds = costing.running_seconds(
            state_before, changes, first, last, frozenset(RUNNING)
        )
        if seconds > 0:
            used = costing.usage(
                seconds,
                deployment.replicas,
                deployment.gpu,
                deployment.cpu,
                deployment.memory,
            )
            amount = costing.cost(used, prices)
            lines |= _line(deployment, first, last, used, amount)
    deployment.write(
        {
            "cost_booked_until": now,
            # what was booked, in the currency's rounding
            "cost_total": deployment.cost_total - sum(lines.mapped("amount")),
        }
    )
    return lines


def _line(deployment, start, end, used, amount):
    env = deployment.env
    model = deployment.model_id
    account = model._cost_analytic_account()
    version = deployment.version_id
    return (
        env["account.analytic.line"]
        .sudo()
        .create(
            {
                "name": env._(
                    "%(model)s %(version)s (%(environment)s, deployment "
                    "%(deployment)s): %(hours).2f h",
                    model=model.name,
                    version=version.version,
                    environment=deployment.environment,
                    deployment=deployment.id,
                    hours=used.hours,
                ),
                account.plan_id._column_name(): account.id,
                # the day of its last instant (UTC): a period ending at
                # midnight is the day before's
                "date": (end - timedelta(microseconds=1)).date(),
                "amount": -amount,
                "unit_amount": used.hours,
                "company_id": deployment.company_id.id,
                "mlops_deployment_id": deployment.id,
                "mlops_period_start": start,
                "mlops_period_end": end,
                "mlops_gpu_hours": used.gpu_hours,
                "mlops_cpu_hours": used.cpu_hours,
                "mlops_memory_gib_hours": used.memory_gib_hours,
            }
        )
    )


def month_cost(models, today=None):
    """{model id: what its deployments cost this month (UTC, as lines are
    dated)}."""
    today = today or fields.Date.today()
    first = today.replace(day=1)
    groups = (
        models.env["account.analytic.line"]
        .sudo()
        ._read_group(
            [("mlops_model_id", "in", models.ids), ("date", ">=", first)],
            ["mlops_model_id"],
            ["amount:sum"],
        )
    )
    return {model.id: -amount for model, amount in groups}


def warn_budgets(models, today=None):
    """The owner of each model whose month passed its budget is told, once
    a month."""
    today = today or fields.Date.today()
    month = today.strftime("%Y-%m")
    budgeted = models.sudo().filtered(
        lambda m: m.cost_monthly_budget and m.cost_budget_warned != month
    )
    spent = month_cost(budgeted, today)
    for model in budgeted:
        if spent.get(model.id, 0.0) <= model.cost_monthly_budget:
            continue
        detail = model.env._(
            "%(model)s cost %(spent).2f %(currency)s this month, past its "
            "budget of %(budget).2f.",
            model=model.name,
            spent=spent[model.id],
            currency=model.cost_currency_id.name,
            budget=model.cost_monthly_budget,
        )
        model.write({"cost_budget_warned": month})
        jobs.tell(
            jobs.as_platform(model),
            detail,
            model.owner_id,
            kind="mail.mail_activity_data_warning",
        )
