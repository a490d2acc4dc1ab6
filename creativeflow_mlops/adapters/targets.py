"""Deployment targets: where a deployment colour runs. One interface,
``Target``, that every kind implements, and the registry of kinds.

A kind is one file, ``adapters/target_<kind>.py``, defining a ``Target``
subclass decorated with ``@register``: ``kinds()`` imports every such file,
so the kind Selection, the options check, the client and the capabilities
the services ask come from the class, and no model or service names a kind
(as OCA fs_storage does with its protocols).

A kind declares:

- ``kind`` and ``label``;
- ``Options``: a dataclass of its settings (the target's ``options`` JSON),
  checked by ``parse_options``; secrets never in it (``secrets``: their
  names, read from the environment or the server configuration);
- ``capabilities(options)``: what it can do (``Capabilities``), which the
  services ask instead of naming kinds;
- ``build(context, options, secrets)``: its client.

What a client does, for a ``ServePlan`` (one colour of one deployment):

- ``render(plan)``: what ``apply`` would create, as data;
- ``fetch_artifact``/``build_image``/``push_image``: the stages before
  ``apply``; raise ``StageNotRun`` with the reason to skip;
- ``apply(plan)``: submit the colour and return (no waiting for a rollout);
- ``commit(plan, approval)`` and ``open_change(plan, approval, committed)``:
  the stages of the kinds whose ``stages`` name them (``gitops``): the
  colour written to a repository (``Committed``), and the pull or merge
  request that asks a reviewer (``ChangeOpened``; ``StageNotRun`` where no
  review is asked); ``close_change`` takes one away;
- ``verify(plan)``: its status now (``ServeStatus``); the pipeline polls it
  until ready or its deadline;
- ``switch_traffic(routes)``: the whole routing table of the target at
  once, {route: [(colour key, percent)...]};
- ``delete(plan)``: take the colour down;
- ``route_url(route)``: the stable base URL of a route (OIP paths below);
- ``publish_key_table(table)``: the invoke keys each route takes
  ({route: ({SHA-256: expiry or None}, the known keys it refuses with a
  403)}), by default route by route (``publish_keys``);
- ``reading(plan)`` and ``analysis(plan, since)``: a reading of the colour's
  traffic, and the requests, 5xx and p95 since an earlier reading (the
  canary's gates);
- ``reconcile(plans)``: desired against actual state for every colour that
  should run (``Observed`` per key), and what runs that no plan names;
- ``check()``: a dict to show, for *Test Connection*.

Plain Python: no Odoo.
"""

import abc
import dataclasses
import importlib
import os
import pkgutil
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from .router import route_path

# the stages of an internal pipeline run, in order (docs/reference/lifecycle.md);
# a kind may run others (``Target.stages``)
STAGES = (
    "fetch_artifact",
    "build_image",
    "push_image",
    "apply",
    "verify",
    "switch_traffic",
)
# the stages after which a run may wait for a person (a review): the stages
# after them are queued once it stops waiting
PAUSES = ("open_change",)
# every model format the product knows of, for the kinds that serve any
ANY_FORMAT = (
    "onnx",
    "tensorflow_savedmodel",
    "pytorch_torchscript",
    "safetensors",
    "pickle",
    "custom_python_container",
    "other",
)


class TargetFailed(Exception):
    """A colour could not come up, or traffic could not move: not worth
    trying again."""


class TargetUnavailable(TargetFailed):
    """The target cannot be reached now (a network error, a 5xx, a 429):
    worth trying again later."""


class StageNotRun(Exception):
    """The kind does not run this stage; the message says why."""


class OptionsInvalid(ValueError):
    """A target's options, refused by its kind: ``problems`` maps each
    option to what is wrong with it."""

    def __init__(self, problems):
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class Capabilities:
    """What a target can do; the services ask it, never the kind."""

    formats: tuple = ()
    # a share of a route's traffic per colour, in steps of this many percent
    # (1: any share; a replica ratio: 100 / replicas); 0: all or nothing
    traffic_step: int = 0
    # the canary gates read its traffic (``analysis``)
    analysis: bool = False
    max_replicas: int = 1
    # the resources it gives: a subset of cpu, memory, gpu; and why it
    # does not give the others ({resource: reason})
    resources: frozenset = frozenset()
    resource_refusals: dict = field(default_factory=dict)
    builds_images: bool = False
    # Odoo's own pipeline runs it (stages as jobs); False: a CI provider does
    internal_pipeline: bool = True
    # reconciliation starts a missing colour again (a machine of its own);
    # False: it flags the drift and a person re-applies
    restarts: bool = False
    # a colour's log tail can be read back
    logs: bool = False
    # its model servers keep an inference log Odoo collects (``logged_files``)
    inference_log: bool = False

    @property
    def canary(self):
        return self.analysis and 0 < self.traffic_step < 100


@dataclass
class ServePlan:
    key: str  # the colour: unique per deployment, safe as a name
    route: str  # the model and environment: unique per company
    model_name: str
    version: str
    artifact_uri: str = ""
    artifact_sha256: str = ""
    artifact_filename: str = "model.onnx"
    model_format: str = "onnx"
    environment: str = "staging"
    strategy: str = "rolling"
    # the share of the route the colour takes first (a canary's first step)
    traffic_percent: int = 100
    replicas: int = 1
    resources: dict = field(default_factory=dict)
    # the ModelCar image, once built: reference@sha256:...
    image: str = ""
    labels: dict = field(default_factory=dict)
    # the inference log: the share of calls kept, and the inputs, outputs
    # and parameters never kept
    log_rate: float = 0.0
    personal_fields: tuple = ()


@dataclass
class ServeStatus:
    ready: bool
    message: str = ""
    log: str = ""
    details: dict = field(default_factory=dict)
    # it will not become ready: stop waiting
    failed: bool = False


@dataclass
class Observed:
    """A colour as reconciliation found it: ``in_sync``, ``drifted`` (it
    differs from what was applied), ``missing`` (something of it is gone)
    or ``unknown``; ``detail`` says what differs."""

    drift: str
    detail: str = ""


@dataclass
class Reconciliation:
    observed: dict = field(default_factory=dict)  # key: Observed
    # what runs that no plan names: key -> start time (epoch seconds)
    strays: dict = field(default_factory=dict)
    # the routing table should be published again (a router came back)
    republish: bool = False
    requests: dict = field(default_factory=dict)  # API calls by kind


@dataclass
class MetricsWindow:
    """How a colour served over a window: answers by status class, latency
    quantiles in seconds (None: no request, or the target does not say),
    and what it used where the target reports it."""

    requests: float = 0.0  # answers of every status
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    cpu_cores: float | None = None
    memory_bytes: float | None = None


@dataclass(frozen=True)
class Approval:
    """Why a colour is deployed, for the kinds that write it down (a
    commit's message, a pull request's description)."""

    kind: str = "promotion"  # promotion or rollback
    approved_by: str = ""
    approved_at: str = ""
    reason: str = ""
    validation: str = ""  # the version's checks, summed up
    ledger: str = ""  # the ledger line the deployment makes
    # rollback: the commit that brought what is rolled back
    revert: str = ""


@dataclass(frozen=True)
class Committed:
    """A colour written to a repository: the commit, its branch, whether a
    change (pull or merge request) must be opened for it, the image it
    deploys, and the stage's log."""

    sha: str
    branch: str
    review: bool
    image: str = ""
    log: str = ""


@dataclass(frozen=True)
class ChangeOpened:
    number: int
    url: str
    log: str = ""


@dataclass(frozen=True)
class TargetContext:
    """What Odoo tells a kind about where it runs: a folder of its own on
    this machine, and the server configuration's defaults."""

    root: str
    config: dict = field(default_factory=dict)
    # names what this target applied, unique per database and target
    owner: str = ""


class Target(abc.ABC):
    kind = None
    label = None
    secrets = ()
    # the stages of its runs, in order
    stages = STAGES

    @dataclass
    class Options:
        pass

    # ------------------------------------------------------------------
    # The kind
    # ------------------------------------------------------------------

    @classmethod
    def parse_options(cls, raw, context=None):
        """``raw`` (the target's options JSON) as ``cls.Options``, or
        ``OptionsInvalid`` naming each problem. Unknown names are refused:
        a typo must not pass for a default."""
        raw = raw or {}
        if not isinstance(raw, dict):
            raise OptionsInvalid({"options": "a JSON object"})
        names = {f.name: f for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise OptionsInvalid(
                {name: f"not an option of the {cls.kind} kind" for name in unknown}
            )
        values = dict(cls.default_options(context))
        values.update(raw)
        problems = {}
        for name, spec in names.items():
            if name not in values:
                if spec.default is dataclasses.MISSING and (
                    spec.default_factory is dataclasses.MISSING
                ):
                    problems[name] = "required"
                continue
            expected = spec.metadata.get("type")
            value = values[name]
            if expected and not _is(value, expected):
                problems[name] = spec.metadata.get("help") or f"a {expected.__name__}"
        if problems:
            raise OptionsInvalid(problems)
        options = cls.Options(**values)
        problems = cls.check_options(options)
        if problems:
            raise OptionsInvalid(problems)
        return options

    @classmethod
    def required_secrets(cls, options):
        """The secrets ``options`` need (the others are optional)."""
        return cls.secrets

    @classmethod
    def default_options(cls, context):
        """Defaults that come from the server configuration."""
        return {}

    @classmethod
    def check_options(cls, options):
        """{option: problem} beyond types; empty when all is well."""
        return {}

    @classmethod
    @abc.abstractmethod
    def capabilities(cls, options): ...

    @classmethod
    @abc.abstractmethod
    def build(cls, context, options, secrets): ...

    # ------------------------------------------------------------------
    # The client
    # ------------------------------------------------------------------

    def render(self, plan):
        return {"kind": self.kind, "plan": dataclasses.asdict(plan)}

    def fetch_artifact(self, plan, opener):
        """``with opener() as path``: a copy of the artifact on this
        machine, for the kinds that need its bytes. Returns the stage's log."""
        raise StageNotRun(f"the {self.kind} target reads the artifact itself")

    def build_image(self, plan, opener):
        raise StageNotRun(
            f"the {self.kind} target serves the model file itself: no image to build"
        )

    def push_image(self, plan):
        """Returns (the image reference with its digest, the stage's log)."""
        raise StageNotRun(f"the {self.kind} target builds no image: none to push")

    @abc.abstractmethod
    def apply(self, plan): ...

    def commit(self, plan, approval):
        """Write the colour where the kind keeps it (``Committed``)."""
        raise StageNotRun(f"the {self.kind} target keeps no repository")

    def open_change(self, plan, approval, committed):
        """Ask for a review of ``committed`` (``ChangeOpened``)."""
        raise StageNotRun(f"the {self.kind} target asks for no review")

    def close_change(self, number, branch):
        """Take an open change away (a run failed or cancelled)."""
        return None

    def reapply(self, plan):
        """Apply again over what was changed on the target by hand."""
        return self.apply(plan)

    def scale(self, plan):
        """Run a serving colour at ``plan.replicas``. A target whose colour
        is one process (``max_replicas`` 1) has nothing to change."""
        return ""

    @abc.abstractmethod
    def verify(self, plan): ...

    @abc.abstractmethod
    def switch_traffic(self, routes): ...

    @abc.abstractmethod
    def delete(self, plan): ...

    @abc.abstractmethod
    def route_url(self, route): ...

    def publish_keys(self, route, allowed, elsewhere):
        """What checks invoke keys in front of this target is not Odoo's."""
        return None

    def publish_key_table(self, table):
        """Every route's keys at once: {route: (allowed, elsewhere)}."""
        for route, (allowed, elsewhere) in sorted(table.items()):
            self.publish_keys(route, allowed, elsewhere)

    def reading(self, plan):
        raise TargetFailed(f"the {self.kind} target gives Odoo no metrics")

    def analysis(self, plan, since):
        """(requests, 5xx, p95 seconds or None, the reading now) since the
        reading ``since``."""
        now = self.reading(plan)
        return (*counters_window(since, now), now)

    def window(self, plan, since):
        """(``MetricsWindow``, the reading now) since the reading ``since``:
        what monitoring keeps. From the counters ``reading`` gives here; a
        kind whose ``analysis`` reads elsewhere says what it can."""
        now = self.reading(plan)
        return counters_metrics(since, now), now

    def log_tail(self, plan):
        return ""

    def object_name(self, plan):
        """The name of the colour's workload on the target (what a payload
        logger's events name)."""
        return plan.key

    def logged_files(self):
        """The inference log's whole files waiting to be collected, by
        colour: {key: [(name, path)]}, oldest first."""
        return {}

    def forget_logged(self, key, name):
        """Remove a collected file of the inference log."""
        return None

    @abc.abstractmethod
    def reconcile(self, plans): ...

    def remove_stray(self, key):
        """Stop what runs under ``key`` that no deployment wants."""
        return None

    @abc.abstractmethod
    def check(self): ...


def route_name(company, slug, environment):
    """A model's route in an environment: stable across its versions,
    unique per company."""
    return f"c{company}-{slug}-{environment}"


def route_company(route):
    """The company of a ``route_name`` (its id as text)."""
    head = route.split("-", 1)[0]
    return head[1:] if head[:1] == "c" and head[1:].isdigit() else ""


def route_url_under(base, route):
    """A route's URL below a base URL (empty when there is none)."""
    return f"{base.rstrip('/')}{route_path(route)}" if base else ""


def _is(value, expected):
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, expected)


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_KINDS = {}


def register(cls):
    """Class decorator of a kind's ``Target`` subclass."""
    _KINDS[cls.kind] = cls
    return cls


def kinds():
    """{kind: class} of every ``target_*.py`` beside this file."""
    for module in pkgutil.iter_modules([os.path.dirname(__file__)]):
        if module.name.startswith("target_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return dict(_KINDS)


def kind_selection():
    """[(kind, label)] in a stable order, the local kind first."""
    found = kinds()
    order = sorted(found, key=lambda k: (k != "local", k))
    return [(k, found[k].label) for k in order]


# ---------------------------------------------------------------------------
# Counters: the OIP model server's own metrics, and a window between two
# ---------------------------------------------------------------------------


def parse_metrics(text):
    """The runtime's Prometheus text as {"requests": {status: n},
    "buckets": [[upper bound, cumulative n]...], "count": n}: finite bounds
    only (JSON has no infinity; ``count`` is the +Inf bucket)."""
    requests_by_code, buckets, count = {}, [], 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_inference_requests_total":
                code = sample.labels.get("code", "")
                requests_by_code[code] = requests_by_code.get(code, 0) + sample.value
            elif sample.name == "mlops_inference_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                if bound == float("inf"):
                    count = sample.value
                else:
                    buckets.append([bound, sample.value])
    return {"requests": requests_by_code, "buckets": sorted(buckets), "count": count}


def counters_window(before, after):
    """(requests, 5xx, p95 seconds or None) between two counter readings.
    Requests are the answers the model produced (2xx and 5xx): a call the
    server refused as malformed (4xx) says nothing of the model, so it
    neither fills a gate's minimum nor counts as an error."""
    codes = set(before["requests"]) | set(after["requests"])
    delta = {
        c: after["requests"].get(c, 0) - before["requests"].get(c, 0) for c in codes
    }
    total = sum(n for c, n in delta.items() if not c.startswith("4"))
    server_errors = sum(n for c, n in delta.items() if c.startswith("5"))
    old = {bound: n for bound, n in before["buckets"]}
    buckets = [(bound, n - old.get(bound, 0)) for bound, n in after["buckets"]]
    count = after.get("count", 0) - before.get("count", 0)
    # above the largest bound: p95 is at least that bound
    p95 = buckets[-1][0] if count and buckets else None
    for bound, cumulative in buckets:
        if count and cumulative >= 0.95 * count:
            p95 = bound
            break
    return total, server_errors, p95


def histogram_quantile(q, buckets, count):
    """The ``q`` quantile of cumulative ``buckets`` [[upper bound, n]...]
    of ``count`` observations, interpolated within its bucket as
    Prometheus' histogram_quantile does; above the largest bound, that
    bound. None without observations."""
    if not count or not buckets:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            inside = cumulative - below
            if inside <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, cumulative
    return buckets[-1][0]


def counters_metrics(before, after):
    """A ``MetricsWindow`` between two counter readings (``parse_metrics``
    of a model server). A server restarted in between counts from zero:
    what it counted since is the window."""
    codes = set(before["requests"]) | set(after["requests"])
    delta = {
        c: after["requests"].get(c, 0) - before["requests"].get(c, 0) for c in codes
    }
    count = after.get("count", 0) - before.get("count", 0)
    if any(n < 0 for n in delta.values()) or count < 0:
        before = {"requests": {}, "buckets": [], "count": 0}
        delta = dict(after["requests"])
        count = after.get("count", 0)
    old = {bound: n for bound, n in before["buckets"]}
    buckets = [[bound, n - old.get(bound, 0)] for bound, n in after["buckets"]]
    return MetricsWindow(
        requests=sum(delta.values()),
        errors_4xx=sum(n for c, n in delta.items() if c.startswith("4")),
        errors_5xx=sum(n for c, n in delta.items() if c.startswith("5")),
        p50=histogram_quantile(0.5, buckets, count),
        p95=histogram_quantile(0.95, buckets, count),
        p99=histogram_quantile(0.99, buckets, count),
    )
