"""The metrics a window keeps, from two counter readings of a model server
(adapters/targets.py): answers by status class, quantiles interpolated as
Prometheus' histogram_quantile does, a restart counted from zero."""

import pytest

from odoo.addons.creativeflow_mlops.adapters.targets import (
    counters_metrics,
    histogram_quantile,
)


def reading(codes, buckets, count):
    return {"requests": codes, "buckets": buckets, "count": count}


def test_quantiles_interpolate_within_their_bucket():
    buckets = [[0.01, 50], [0.05, 90], [0.1, 100]]
    # the 50th observation of 100 is the first bucket's last: its bound
    assert histogram_quantile(0.5, buckets, 100) == pytest.approx(0.01)
    # the 95th: half-way into (0.05, 0.1]
    assert histogram_quantile(0.95, buckets, 100) == pytest.approx(0.075)
    # past the largest finite bound: that bound
    assert histogram_quantile(0.99, [[0.01, 10]], 20) == 0.01
    assert histogram_quantile(0.5, [], 0) is None


def test_a_window_is_the_difference_of_two_readings():
    before = reading({"200": 100, "400": 5}, [[0.01, 60], [0.1, 100]], 105)
    after = reading({"200": 190, "400": 6, "500": 9}, [[0.01, 120], [0.1, 200]], 205)
    window = counters_metrics(before, after)
    assert (window.requests, window.errors_4xx, window.errors_5xx) == (100, 1, 9)
    # 60 of the window's 100 observations under 10 ms
    assert window.p50 == pytest.approx(0.01 * 50 / 60)
    assert window.p50 <= window.p95 <= window.p99 <= 0.1


def test_a_restarted_server_counts_from_zero():
    before = reading({"200": 500}, [[0.01, 500]], 500)
    after = reading({"200": 7}, [[0.01, 7]], 7)
    window = counters_metrics(before, after)
    assert (window.requests, window.errors_5xx) == (7, 0)
    assert window.p95 is not None
