"""The statistics of A/B experiments (numpy and scipy only; no Odoo).

An arm is summed up as ``Arm(n, mean, variance)``: for a rate (the error
rate) the mean is the share and the variance p(1-p). Against the control
(the first arm), each other arm gets:

- the fixed-horizon test: Welch's t-test for a mean (ratings, latency, a
  business outcome), the two-proportion z-test for a rate; its p-value and
  the difference's 95 % interval are valid once, at the planned end;
- the always-valid p-value of the mixture sequential probability ratio test
  (mSPRT, Johari et al., "Always Valid Inference", 2017) with a normal
  mixing distribution: valid whenever it is looked at, so stopping early
  on it does not inflate false winners. It is the running minimum of
  1/Lambda over every look, kept by the caller between looks;
- the probability that each arm is the best, by sampling the posterior of
  each arm's mean (normal, from n, mean and variance; Beta for a rate).

``verdict`` names a winner only when an arm beats the control on its
always-valid p-value under alpha, Bonferroni-corrected over the arms.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Arm:
    n: int
    mean: float
    variance: float
    successes: int | None = None  # a rate: how many of n

    @classmethod
    def of_values(cls, values):
        values = np.asarray(values, dtype=float)
        n = int(values.size)
        if n == 0:
            return cls(0, 0.0, 0.0)
        return cls(n, float(values.mean()), float(values.var(ddof=1)) if n > 1 else 0.0)

    @classmethod
    def of_rate(cls, successes, n):
        if n <= 0:
            return cls(0, 0.0, 0.0, 0)
        p = successes / n
        return cls(int(n), p, p * (1 - p), int(successes))


def welch(control, arm):
    """(difference of means, p-value, 95 % interval) of Welch's t-test."""
    if control.n < 2 or arm.n < 2:
        return arm.mean - control.mean, None, (None, None)
    a, b = control.variance / control.n, arm.variance / arm.n
    se = math.sqrt(a + b)
    diff = arm.mean - control.mean
    if se == 0:
        return diff, (1.0 if diff == 0 else 0.0), (diff, diff)
    df = (a + b) ** 2 / (
        (a**2 / (control.n - 1) if control.n > 1 else 0)
        + (b**2 / (arm.n - 1) if arm.n > 1 else 0)
    )
    t = diff / se
    p = 2 * stats.t.sf(abs(t), df)
    half = stats.t.ppf(0.975, df) * se
    return diff, float(p), (diff - half, diff + half)


def two_proportions(control, arm):
    """(difference of rates, p-value, 95 % interval) of the two-proportion
    z-test (pooled for the test, unpooled for the interval)."""
    if not control.n or not arm.n:
        return arm.mean - control.mean, None, (None, None)
    diff = arm.mean - control.mean
    pooled = (control.successes + arm.successes) / (control.n + arm.n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / arm.n))
    p = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
    se = math.sqrt(control.variance / control.n + arm.variance / arm.n)
    return diff, p, (diff - 1.96 * se, diff + 1.96 * se)


def msprt_p_value(control, arm, tau2=None):
    """1/Lambda of the normal-mixture SPRT for the difference of means, at
    this look: the caller keeps the running minimum (the always-valid
    p-value). ``tau2``: the mixing variance; by default one observation's
    variance of the difference (the pooled variance), as Johari et al.'s
    examples take it."""
    if control.n < 2 or arm.n < 2:
        return 1.0
    v = control.variance / control.n + arm.variance / arm.n
    if v <= 0:
        return 1.0 if arm.mean == control.mean else 0.0
    tau2 = tau2 if tau2 is not None else max(control.variance, arm.variance, 1e-12)
    diff = arm.mean - control.mean
    log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * diff**2 / (2 * v * (v + tau2))
    return float(min(1.0, math.exp(-log_lambda)))


def probability_best(arms, higher_is_better=True, draws=20000, seed=0):
    """For each arm, the posterior probability that its mean is the best."""
    rng = np.random.default_rng(seed)
    samples = []
    for arm in arms:
        if arm.successes is not None:
            samples.append(
                rng.beta(1 + arm.successes, 1 + arm.n - arm.successes, draws)
            )
        elif arm.n < 2:
            samples.append(rng.normal(arm.mean, 1e6, draws))
        else:
            sd = math.sqrt(arm.variance / arm.n) if arm.variance > 0 else 1e-12
            samples.append(rng.normal(arm.mean, sd, draws))
    matrix = np.vstack(samples)
    best = matrix.argmax(axis=0) if higher_is_better else matrix.argmin(axis=0)
    return [float((best == i).mean()) for i in range(len(arms))]


def compare(arms, rate=False, higher_is_better=True, previous=None, alpha=ALPHA):
    """Each arm against the first: a dict per arm with ``n``, ``mean``,
    ``interval`` (of the difference), ``p_value``, ``always_valid_p_value``
    (the running minimum with ``previous``, a list as this returned before)
    and ``probability_best``; and the verdict: the index of the winning
    arm, or None."""
    control = arms[0]
    best = probability_best(arms, higher_is_better)
    results = [
        {
            "n": control.n,
            "mean": control.mean,
            "interval": (None, None),
            "p_value": None,
            "always_valid_p_value": None,
            "probability_best": best[0],
        }
    ]
    for index, arm in enumerate(arms[1:], start=1):
        diff, p, interval = (two_proportions if rate else welch)(control, arm)
        now = msprt_p_value(control, arm)
        before = (previous or [None] * len(arms))[index]
        always = now if before is None else min(before, now)
        results.append(
            {
                "n": arm.n,
                "mean": arm.mean,
                "difference": diff,
                "interval": interval,
                "p_value": p,
                "always_valid_p_value": always,
                "probability_best": best[index],
            }
        )
    return results, verdict(results, higher_is_better, alpha)


def verdict(results, higher_is_better=True, alpha=ALPHA):
    """The arm that beats the control on its always-valid p-value under
    ``alpha`` over the comparisons (Bonferroni), the best of them if
    several; the control when it beats every arm so; else None."""
    comparisons = len(results) - 1
    if comparisons < 1:
        return None
    level = alpha / comparisons
    sign = 1 if higher_is_better else -1
    better = [
        (sign * r["difference"], index)
        for index, r in enumerate(results[1:], start=1)
        if r["always_valid_p_value"] is not None
        and r["always_valid_p_value"] < level
        and sign * r["difference"] > 0
    ]
    if better:
        return max(better)[1]
    worse = [
        r
        for r in results[1:]
        if r["always_valid_p_value"] is not None
        and r["always_valid_p_value"] < level
        and sign * r["difference"] < 0
    ]
    if len(worse) == comparisons:
        return 0
    return None
