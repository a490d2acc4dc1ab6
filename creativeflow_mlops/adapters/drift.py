"""Drift between a reference window and a recent one, feature by feature,
with Evidently's defaults (numpy and scipy only; no Odoo):

- a numeric feature (more than five distinct values in the reference;
  fewer make it categorical, as Evidently has it): the two-sample
  Kolmogorov-Smirnov test when the reference holds at most ``LARGE`` values
  (drifted when p < 0.05), else the Wasserstein distance normed by the
  reference's standard deviation (drifted past 0.1);
- a categorical feature: the chi-square test on the categories' counts
  (small; p < 0.05), else the Jensen-Shannon distance of their shares
  (large; past 0.1);
- ``psi`` (the population stability index, over the reference's deciles;
  past 0.1) on request;
- the dataset drifts when at least half its features do.

Every threshold and method is a parameter: the settings say them.
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.spatial import distance

LARGE = 1000
P_VALUE = 0.05
DISTANCE = 0.1
SHARE = 0.5
# methods whose value is a p-value (drifted below the threshold); the others
# are distances (drifted above it)
TESTS = frozenset({"ks", "chisquare"})


@dataclass
class FeatureDrift:
    name: str
    method: str
    value: float
    threshold: float
    drifted: bool

    def to_json(self):
        return {
            "name": self.name,
            "method": self.method,
            "value": round(float(self.value), 6),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass
class DriftReport:
    score: float  # the share of features that drifted
    drifted: bool
    features: list = field(default_factory=list)
    share: float = SHARE  # the share at which the dataset drifts


def is_numeric(values):
    if isinstance(values, np.ndarray):
        return values.size > 0 and values.dtype.kind in "iuf"
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def _distinct(values):
    if isinstance(values, np.ndarray):
        return np.unique(values).size
    return len(set(values))


# a numeric feature with this few distinct values is judged as categories
FEW_VALUES = 5


def choose_method(reference, numeric, large=LARGE):
    if numeric:
        return "ks" if len(reference) <= large else "wasserstein"
    return "chisquare" if len(reference) <= large else "jensenshannon"


def feature_drift(
    name,
    reference,
    current,
    method=None,
    threshold=None,
    large=LARGE,
    p_value=P_VALUE,
    distance_=DISTANCE,
):
    """A ``FeatureDrift`` of one feature's values: ``method`` and
    ``threshold`` as asked, else Evidently's for its kind and size."""
    if not len(reference) or not len(current):
        raise ValueError(f"{name}: both windows need values")
    numeric = is_numeric(reference) and is_numeric(current)
    if not method and numeric and _distinct(reference) <= FEW_VALUES:
        numeric = False
    if numeric:
        reference = np.asarray(reference, dtype=float)
        current = np.asarray(current, dtype=float)
    method = method or choose_method(reference, numeric, large)
    if method in ("ks", "wasserstein", "psi") and not numeric:
        raise ValueError(f"{name}: {method} needs numbers")
    value = METHODS[method](reference, current)
    if threshold is None:
        threshold = p_value if method in TESTS else distance_
    drifted = value < threshold if method in TESTS else value > threshold
    return FeatureDrift(name, method, float(value), threshold, bool(drifted))


def dataset_drift(
    reference,
    current,
    share=SHARE,
    methods=None,
    thresholds=None,
    p_value=P_VALUE,
    distance=DISTANCE,
    large=LARGE,
):
    """A ``DriftReport`` of two windows, {feature: values} each (lists or
    numpy arrays), on the features both have; ``p_value``, ``distance`` and
    ``large`` as Evidently sets them unless said."""
    methods, thresholds = methods or {}, thresholds or {}
    names = sorted(set(reference) & set(current))
    if not names:
        raise ValueError("the windows have no feature in common")
    features = [
        feature_drift(
            name,
            reference[name],
            current[name],
            methods.get(name),
            thresholds.get(name),
            large,
            p_value,
            distance,
        )
        for name in names
    ]
    score = sum(f.drifted for f in features) / len(features)
    return DriftReport(score, score >= share, features, share)


# ---------------------------------------------------------------------------
# Methods: (reference, current) -> value
# ---------------------------------------------------------------------------


def _ks(reference, current):
    return stats.ks_2samp(reference, current).pvalue


def _wasserstein(reference, current):
    """Normed by the reference's spread, so that 0.1 means a tenth of a
    standard deviation whatever the feature's unit."""
    spread = float(np.std(reference))
    norm = spread if spread > 0 else 1.0
    return stats.wasserstein_distance(reference, current) / norm


def _shares(reference, current):
    ref_counts, cur_counts = Counter(list(reference)), Counter(list(current))
    categories = sorted(set(ref_counts) | set(cur_counts), key=str)
    ref = np.array([ref_counts[c] for c in categories], dtype=float)
    cur = np.array([cur_counts[c] for c in categories], dtype=float)
    return ref, cur


def _chisquare(reference, current):
    """The current counts against the reference's shares (a category the
    reference never had counts as barely seen, not as impossible)."""
    ref, cur = _shares(reference, current)
    ref = np.where(ref == 0, 1e-4, ref)
    expected = ref / ref.sum() * cur.sum()
    return stats.chisquare(cur, expected).pvalue


def _jensenshannon(reference, current):
    ref, cur = _shares(reference, current)
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))


def _psi(reference, current, bins=10):
    """The population stability index over the reference's deciles."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


METHODS = {
    "ks": _ks,
    "wasserstein": _wasserstein,
    "chisquare": _chisquare,
    "jensenshannon": _jensenshannon,
    "psi": _psi,
}
