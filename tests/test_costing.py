"""What a deployment costs: Kubernetes quantities, the time spent in the
states whose pods run, and the price of the hours."""

from datetime import datetime, timedelta

import pytest

from odoo.addons.creativeflow_mlops.adapters import costing

T0 = datetime(2026, 3, 1, 12, 0)
RUNNING = frozenset({"deploying", "active", "inactive_bluegreen"})


def at(minutes):
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("cpu", "expected"), [("2", 2.0), ("500m", 0.5), ("0.25", 0.25), (None, 0.0)]
)
def test_cores(cpu, expected):
    assert costing.cores(cpu) == expected


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("8Gi", 8.0),
        ("512Mi", 0.5),
        ("1Ti", 1024.0),
        ("1G", 10**9 / 2**30),
        (str(2**30), 1.0),
        ("", 0.0),
    ],
)
def test_gib(memory, expected):
    assert costing.gib(memory) == pytest.approx(expected)


@pytest.mark.parametrize("wrong", ["-1", "x", "NaNGi", "8Qi"])
def test_a_wrong_quantity_is_refused(wrong):
    with pytest.raises(ValueError):
        costing.gib(wrong)


def test_running_time_follows_the_state_changes():
    changes = [
        (at(0), "deploying"),
        (at(2), "active"),
        (at(30), "inactive_bluegreen"),
        (at(45), "rolled_back"),
        (at(50), "active"),  # not a real move: the ledger is what counts
    ]
    seconds = costing.running_seconds("requested", changes, at(0), at(60), RUNNING)
    assert seconds == (45 + 10) * 60
    # a window cut inside: the state before it holds at its start
    assert costing.running_seconds("requested", changes, at(10), at(40), RUNNING) == (
        30 * 60
    )
    # nothing happened in the window: the state at its start holds to its end
    assert (
        costing.running_seconds("requested", changes, at(55), at(65), RUNNING)
        == 10 * 60
    )
    # windows that follow each other add up to the whole: nothing counted twice
    parts = [(at(0), at(17)), (at(17), at(33)), (at(33), at(60))]
    assert (
        sum(
            costing.running_seconds("requested", changes, a, b, RUNNING)
            for a, b in parts
        )
        == seconds
    )
    assert costing.running_seconds("active", [], at(5), at(5), RUNNING) == 0.0


def test_a_period_is_cut_at_each_months_first_day():
    start, end = datetime(2026, 11, 30, 23, 30), datetime(2027, 1, 1, 0, 30)
    assert costing.months(start, end) == [
        (start, datetime(2026, 12, 1)),
        (datetime(2026, 12, 1), datetime(2027, 1, 1)),
        (datetime(2027, 1, 1), end),
    ]
    inside = (datetime(2026, 12, 1), datetime(2026, 12, 31, 23, 59))
    assert costing.months(*inside) == [inside]
    # up to midnight of the first: nothing of the next month
    assert costing.months(start, datetime(2026, 12, 1)) == [
        (start, datetime(2026, 12, 1))
    ]


def test_usage_and_cost():
    used = costing.usage(5400, replicas=2, gpu=1, cpu="500m", memory="8Gi")
    assert used == costing.Usage(
        hours=1.5, gpu_hours=3.0, cpu_hours=1.5, memory_gib_hours=24.0
    )
    prices = costing.Prices(gpu_hour=2.5, cpu_hour=0.04, memory_gib_hour=0.005)
    assert costing.cost(used, prices) == pytest.approx(3 * 2.5 + 1.5 * 0.04 + 0.12)
    assert costing.cost(costing.usage(3600, 0, 4, "8", "64Gi"), prices) == 0.0
