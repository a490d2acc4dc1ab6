"""The statistics of A/B experiments (adapters/experiment_stats.py): known
differences reach the right verdict, the tests agree with scipy's, and over
many A/A runs looked at again and again the false-winner rate of the
always-valid p-value stays at or under alpha (where the fixed-horizon
test's, looked at as often, does not)."""

import numpy as np
import pytest
from scipy import stats

from odoo.addons.creativeflow_mlops.adapters.experiment_stats import (
    ALPHA,
    Arm,
    compare,
    msprt_p_value,
    probability_best,
    two_proportions,
    welch,
)


def test_welch_is_scipy_s():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3, 1, 300), rng.normal(3.2, 1.5, 200)
    diff, p, (low, high) = welch(Arm.of_values(a), Arm.of_values(b))
    expected = stats.ttest_ind(b, a, equal_var=False)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert low < diff < high


def test_two_proportions_is_the_textbook_z_test():
    diff, p, (low, high) = two_proportions(Arm.of_rate(50, 1000), Arm.of_rate(80, 1000))
    pooled = 130 / 2000
    z = 0.03 / np.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert p == pytest.approx(2 * stats.norm.sf(z))
    assert diff == pytest.approx(0.03) and low < 0.03 < high


def test_a_known_difference_in_ratings_wins():
    rng = np.random.default_rng(2)
    arms = [Arm.of_values(rng.normal(m, 1, 2000)) for m in (3.0, 3.3)]
    results, winner = compare(arms)
    assert winner == 1
    assert results[1]["p_value"] < 0.001
    assert results[1]["always_valid_p_value"] < ALPHA
    assert results[1]["probability_best"] > 0.99


def test_a_lower_error_rate_wins_when_lower_is_better():
    arms = [Arm.of_rate(200, 4000), Arm.of_rate(80, 4000)]
    results, winner = compare(arms, rate=True, higher_is_better=False)
    assert winner == 1 and results[1]["difference"] < 0
    # the same figures with higher better: the control beats the arm
    _results, winner = compare(arms, rate=True, higher_is_better=True)
    assert winner == 0


def test_no_difference_is_no_winner():
    rng = np.random.default_rng(3)
    arms = [Arm.of_values(rng.normal(3, 1, 500)) for _arm in range(3)]
    _results, winner = compare(arms)
    assert winner is None


def test_probability_best_sums_to_one_and_favours_the_best():
    arms = [Arm(1000, 1.0, 1.0), Arm(1000, 1.2, 1.0), Arm(1000, 0.8, 1.0)]
    best = probability_best(arms)
    assert sum(best) == pytest.approx(1.0)
    assert best[1] > 0.99 and best[2] < 0.01


def test_peeking_does_not_inflate_false_winners():
    """400 A/A experiments, each looked at 20 times as its data grows: a
    winner named at any look is a false winner."""
    rng = np.random.default_rng(2026)
    runs, looks, step = 400, 20, 50
    false_sequential = false_naive = 0
    for _run in range(runs):
        a = rng.normal(0, 1, looks * step)
        b = rng.normal(0, 1, looks * step)
        always, naive = 1.0, False
        for look in range(1, looks + 1):
            control = Arm.of_values(a[: look * step])
            arm = Arm.of_values(b[: look * step])
            always = min(always, msprt_p_value(control, arm))
            naive = naive or welch(control, arm)[1] < ALPHA
        false_sequential += always < ALPHA
        false_naive += naive
    assert false_sequential / runs <= ALPHA
    # what it protects against: the fixed-horizon test, peeked at, errs more
    assert false_naive / runs > 2 * ALPHA
