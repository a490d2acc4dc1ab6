"""A colour's traffic from a Prometheus HTTP API (``/api/v1/query``), for the
canary gates of a target whose model servers Odoo cannot read itself.
Plain Python: no Odoo; every call has a timeout.

The queries are templates with ``{selector}`` (the colour's pods: their
name prefix and namespace) and ``{window}`` (seconds since the last
reading); the defaults read Triton's own metrics: requests as successes
plus failures, 5xx as failures, p95 from its latency summary
(``--metrics-config summary_latencies=true``, which the plain manifests
set), in microseconds.
"""

import time
from dataclasses import dataclass

import requests

DEFAULT_REQUESTS = (
    "sum(increase(nv_inference_request_success{{{selector}}}[{window}s])) + "
    "sum(increase(nv_inference_request_failure{{{selector}}}[{window}s]))"
)
DEFAULT_ERRORS = "sum(increase(nv_inference_request_failure{{{selector}}}[{window}s]))"
DEFAULT_P95 = 'max(nv_inference_request_summary_us{{{selector},quantile="0.95"}}) / 1e6'


class PrometheusError(Exception):
    """The metrics cannot be read; ``transient`` when worth a retry."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient


@dataclass
class Queries:
    requests: str = DEFAULT_REQUESTS
    errors: str = DEFAULT_ERRORS
    p95: str = DEFAULT_P95


class Prometheus:
    def __init__(self, url, queries=None, timeout=10, token=None):
        self.url = url.rstrip("/")
        self.queries = queries or Queries()
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def value(self, query, at):
        """The query's value at ``at``: the sum of its vector, or None when
        it has no series."""
        try:
            answer = requests.get(
                f"{self.url}/api/v1/query",
                params={"query": query, "time": f"{at:.3f}"},
                headers=self.headers,
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise PrometheusError(
                f"Prometheus cannot be reached: {error}", transient=True
            ) from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise PrometheusError(
                f"Prometheus answered {answer.status_code}", transient=True
            )
        try:
            body = answer.json()
        except ValueError:
            raise PrometheusError(
                f"Prometheus answered {answer.status_code} without JSON"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(
                f"Prometheus refused the query: {body.get('error', body)}"
            )
        data = body.get("data", {})
        if data.get("resultType") == "scalar":
            return float(data["result"][1])
        series = data.get("result", [])
        if not series:
            return None
        return sum(float(item["value"][1]) for item in series)

    def window(self, selector, since, now=None):
        """(requests, 5xx, p95 seconds or None) over ``since``..``now``."""
        now = now or time.time()
        window = max(1, round(now - since))

        def query(template):
            return template.format(selector=selector, window=window)

        total = self.value(query(self.queries.requests), now) or 0.0
        errors = self.value(query(self.queries.errors), now) or 0.0
        p95 = self.value(query(self.queries.p95), now)
        return total, errors, p95
