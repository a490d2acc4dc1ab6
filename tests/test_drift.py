"""Drift statistics (adapters/drift.py) on synthetic windows whose answer is
known: the same distribution drifts in few runs (the tests' error rate),
a shifted one in nearly all; Evidently's choice of method by kind and size."""

import numpy as np
import pytest

from odoo.addons.creativeflow_mlops.adapters import drift


def _normal(rng, n, mean=0.0):
    return rng.normal(mean, 1.0, n).tolist()


@pytest.mark.parametrize(("n", "method"), [(300, "ks"), (5000, "wasserstein")])
def test_numeric_drift_is_found_where_there_is_some(n, method):
    rng = np.random.default_rng(7)
    same = drift.feature_drift("x", _normal(rng, n), _normal(rng, n))
    assert same.method == method and not same.drifted
    shifted = drift.feature_drift("x", _normal(rng, n), _normal(rng, n, mean=0.5))
    assert shifted.method == method and shifted.drifted


def test_ks_false_alarms_stay_near_its_level():
    """Over 400 same-distribution pairs, p < 0.05 in about 5 % of them."""
    rng = np.random.default_rng(11)
    alarms = sum(
        drift.feature_drift("x", _normal(rng, 200), _normal(rng, 200)).drifted
        for _run in range(400)
    )
    assert 5 <= alarms <= 40, alarms


def test_wasserstein_is_in_the_reference_s_standard_deviations():
    rng = np.random.default_rng(3)
    reference = rng.normal(100, 20, 4000).tolist()
    moved = (np.array(reference) + 4.0).tolist()  # a fifth of a deviation
    found = drift.feature_drift("price", reference, moved)
    assert found.method == "wasserstein"
    assert found.value == pytest.approx(4.0 / np.std(reference), rel=1e-6)
    assert found.drifted  # 0.2 > 0.1


def test_categorical_drift_by_chi_square_then_jensen_shannon():
    rng = np.random.default_rng(5)
    cats = ["a", "b", "c"]
    small_ref = rng.choice(cats, 500, p=[0.5, 0.3, 0.2]).tolist()
    small_same = rng.choice(cats, 500, p=[0.5, 0.3, 0.2]).tolist()
    small_moved = rng.choice(cats, 500, p=[0.2, 0.3, 0.5]).tolist()
    assert not drift.feature_drift("c", small_ref, small_same).drifted
    moved = drift.feature_drift("c", small_ref, small_moved)
    assert moved.method == "chisquare" and moved.drifted
    large_ref = rng.choice(cats, 5000, p=[0.5, 0.3, 0.2]).tolist()
    large_moved = rng.choice(cats + ["d"], 5000, p=[0.1, 0.3, 0.2, 0.4]).tolist()
    found = drift.feature_drift("c", large_ref, large_moved)
    assert found.method == "jensenshannon" and found.drifted
    assert 0 <= found.value <= 1


def test_psi_has_its_known_values():
    rng = np.random.default_rng(9)
    reference = rng.normal(0, 1, 10000).tolist()
    assert drift.feature_drift("x", reference, reference, "psi").value < 1e-6
    shifted = drift.feature_drift("x", reference, _normal(rng, 10000, 1.0), "psi")
    # a shift of one deviation: PSI near 1 (the textbook figure for it)
    assert 0.7 < shifted.value < 1.3 and shifted.drifted


def test_the_dataset_drifts_when_half_its_features_do():
    rng = np.random.default_rng(1)
    reference = {k: _normal(rng, 300) for k in "abcd"}
    current = {
        "a": _normal(rng, 300, 1.0),
        "b": _normal(rng, 300, 1.0),
        "c": _normal(rng, 300),
        "d": _normal(rng, 300),
    }
    report = drift.dataset_drift(reference, current)
    assert report.score == 0.5 and report.drifted
    assert [f.name for f in report.features if f.drifted] == ["a", "b"]
    calmer = drift.dataset_drift(reference, {**current, "b": reference["b"]})
    assert calmer.score == 0.25 and not calmer.drifted
    assert report.features[0].to_json()["method"] == "ks"


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="both windows"):
        drift.feature_drift("x", [], [1.0])
    with pytest.raises(ValueError, match="needs numbers"):
        drift.feature_drift("x", ["a"], ["b"], "ks")
    with pytest.raises(ValueError, match="no feature in common"):
        drift.dataset_drift({"a": [1.0]}, {"b": [1.0]})
