"""What a deployment costs (docs/reference/monitoring.md), in plain Python:
the time its pods ran, from its state changes, and the GPU, CPU and memory
hours that makes at its resources, priced per hour.

- ``cores`` and ``gib`` read Kubernetes quantities (``"500m"``, ``"8Gi"``);
- ``running_seconds`` is the time spent in the states whose pods run,
  between two instants, from the state before the first instant and the
  changes after it;
- ``months`` cuts a period at the months' first days;
- ``usage`` and ``cost``: the hours of each resource, and their price.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

# the suffixes of resource.Quantity
BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def _number(text):
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a quantity: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a quantity: {text!r}")
    return value


def cores(cpu):
    """CPUs of a quantity: ``"2"`` is 2.0, ``"500m"`` 0.5; none is 0."""
    if not cpu:
        return 0.0
    text = str(cpu).strip()
    if text.endswith("m"):
        return float(_number(text[:-1]) / 1000)
    return float(_number(text))


def gib(memory):
    """GiB of a memory quantity: ``"8Gi"`` is 8.0, ``"512Mi"`` 0.5, ``"1G"``
    10^9 bytes; a bare number is bytes; none is 0."""
    if not memory:
        return 0.0
    text = str(memory).strip()
    for suffixes in (BINARY, DECIMAL):
        for suffix, factor in suffixes.items():
            if text.endswith(suffix):
                return float(_number(text[: -len(suffix)]) * factor / 2**30)
    return float(_number(text) / 2**30)


def running_seconds(state_before, changes, start, end, running):
    """Seconds in ``running`` states within [start, end): ``state_before``
    holds at ``start``; ``changes`` are (instant, new state) in order, any
    before ``start`` or from ``end`` on being ignored."""
    if end <= start:
        return 0.0
    total = 0.0
    state, since = state_before, start
    for at, new_state in changes:
        if at < start:
            state = new_state
            continue
        if at >= end:
            break
        if state in running:
            total += (at - since).total_seconds()
        state, since = new_state, at
    if state in running:
        total += (end - since).total_seconds()
    return total


def months(start, end):
    """[start, end) cut at the first of each month: [(from, to)...], so a
    month's cost is booked in its month."""
    cuts = []
    while True:
        following = (start.replace(day=1) + timedelta(days=32)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        if following >= end:
            cuts.append((start, end))
            return cuts
        cuts.append((start, following))
        start = following


@dataclass(frozen=True)
class Usage:
    hours: float = 0.0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    memory_gib_hours: float = 0.0


@dataclass(frozen=True)
class Prices:
    """Per hour: one GPU, one CPU core, one GiB of memory."""

    gpu_hour: float = 0.0
    cpu_hour: float = 0.0
    memory_gib_hour: float = 0.0


def usage(seconds, replicas, gpu=0, cpu=None, memory=None):
    """The hours ``replicas`` pods of ``gpu`` GPUs, ``cpu`` and ``memory``
    ran for ``seconds``."""
    hours = seconds / 3600.0
    pods = max(int(replicas or 0), 0)
    return Usage(
        hours=hours,
        gpu_hours=hours * pods * max(int(gpu or 0), 0),
        cpu_hours=hours * pods * cores(cpu),
        memory_gib_hours=hours * pods * gib(memory),
    )


def cost(used, prices):
    """What ``used`` costs at ``prices``."""
    return (
        used.gpu_hours * prices.gpu_hour
        + used.cpu_hours * prices.cpu_hour
        + used.memory_gib_hours * prices.memory_gib_hour
    )
