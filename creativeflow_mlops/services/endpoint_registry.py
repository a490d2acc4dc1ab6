"""The endpoint registry n8n reads (docs/reference/registry.md): one entry
per model and environment that has a live deployment, read with the
caller's rights. Never a secret."""

import hashlib
import json
import math
import threading
from collections import namedtuple

from . import registry_changes as changes
from .serializers import timestamp
from .serving import SERVING, plan

PROTOCOL = "kserve_v2"


MAX_CACHED = 256
# what is kept of a build: what it was read at (registry_changes.Built), the
# entries, their ETag and their JSON
Kept = namedtuple("Kept", "built items etag json")
_cache = {}
# the same builds by the identity of their entries, for etag() and encoded()
# (an entry list stays alive, so its id() unique, while it is kept)
_by_items = {}
_lock = threading.Lock()


def cached_entries(env, environment=None, model=None):
    """``entries()``, kept per user, companies and filters while what they
    are made of stays the same: the serving deployments, their versions,
    models and targets (``registry_changes`` tells, in one statement). A
    registry of 1,000 entries took 140 ms to build on every call."""
    # the caller's rights, every time (a kept answer skips the search)
    env["mlops.deployment"].check_access("read")
    cr = env.cr
    key = (cr.dbname, env.uid, tuple(env.companies.ids), environment, model)
    with _lock:
        kept = _cache.get((*key, None))
    if kept:
        is_stale, own = changes.stale(cr, kept.built)
        if not is_stale and not own:
            return kept.items
    built = changes.now(cr)
    if built.own:
        # what this transaction built, seeing its own uncommitted changes
        key = (*key, built.own)
        with _lock:
            kept = _cache.get(key)
        if kept and not changes.stale(cr, kept.built)[0]:
            return kept.items
    else:
        key = (*key, None)
    items = entries(env, environment, model)
    kept = Kept(built, items, _digest(items), _encode(items))
    with _lock:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
            _by_items.clear()
        replaced = _cache.get(key)
        if replaced:
            del _by_items[id(replaced.items)]
        _cache[key] = kept
        _by_items[id(items)] = kept
    return items


def entries(env, environment=None, model=None):
    domain = [("state", "in", SERVING)]
    if environment:
        domain.append(("environment", "=", environment))
    if model:
        domain.append(("model_id.name", "=", model))
    serving = env["mlops.deployment"].search(domain, order="model_id, environment, id")
    grouped = {}
    for deployment in serving:
        grouped.setdefault((deployment.model_id, deployment.environment), []).append(
            deployment
        )
    return [_entry(deployments) for deployments in grouped.values()]


# the most values a curl example spells out
EXAMPLE_VALUES = 4096


def tensors(schema):
    """A signature's tensors as a list of ``{"name", "datatype", "shape"}``:
    a schema is declared (or inferred) as ``{name: {"datatype", "shape"}}``;
    a list of named tensors (the OIP metadata's form) is taken as it is."""
    if isinstance(schema, dict):
        schema = [
            {"name": name, **spec}
            for name, spec in schema.items()
            if isinstance(spec, dict)
        ]
    if not isinstance(schema, list):
        return []
    return [t for t in schema if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _example(tensor):
    """A call a client can send as it is: one row, zeros of the right
    count."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        shape = [1]
    shape = [d if d > 0 else 1 for d in shape] or [1]
    count = math.prod(shape)
    return {
        "name": tensor["name"],
        "shape": shape,
        "datatype": tensor.get("datatype") or "FP32",
        # an image's zeros would make the example megabytes long
        "data": [0] * count if count <= EXAMPLE_VALUES else f"<{count} values>",
    }


def _entry(deployments):
    # the one taking most of the traffic names the entry (a canary's
    # previous version, until it is promoted)
    main = max(deployments, key=lambda d: (d.traffic_percent, d.id))
    version, model = main.version_id, main.model_id
    client = main.target_id.sudo()._get_client()
    infer = f"/v2/models/{model.slug}/infer"
    # the target's stable route, or where its pipeline said it serves
    base = client.route_url(plan(main).route) or (main.endpoint_url or "").removesuffix(
        infer
    )
    invoke_url = f"{base}{infer}"
    example_input = {"inputs": [_example(t) for t in tensors(version.input_schema)]}
    updated = max(d.write_date for d in deployments)
    return {
        "slug": f"{model.slug}-{main.environment}",
        "model": model.name,
        "model_id": model.id,
        "version": version.version,
        "version_id": version.id,
        "environment": main.environment,
        "state": main.state,
        "protocol": PROTOCOL,
        "invoke_url": invoke_url,
        "health_url": f"{base}/v2/health/ready",
        "metadata_url": f"{base}/v2/models/{model.slug}",
        # an invoke key (Configuration > Invoke Keys), never shown here
        "auth": {"type": "bearer", "header": "Authorization"},
        "input_schema": version.input_schema or {},
        "output_schema": version.output_schema or {},
        "traffic": [
            {"version": d.version_id.version, "percent": d.traffic_percent}
            for d in sorted(deployments, key=lambda d: -d.traffic_percent)
        ],
        "updated_at": timestamp(updated),
        "curl_example": (
            f"curl -X POST {invoke_url} -H 'Authorization: Bearer <invoke key>' "
            "-H 'Content-Type: application/json' "
            f"-d '{json.dumps(example_input)}'"
        ),
    }


def _encode(items):
    return json.dumps(items, ensure_ascii=False).encode()


def _cached(items):
    """The ``Kept`` of ``items``, or None."""
    with _lock:
        kept = _by_items.get(id(items))
    return kept if kept and kept.items is items else None


def _digest(items):
    digest = hashlib.sha256(
        json.dumps(items, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f'"{digest[:32]}"'


def etag(items):
    """A strong validator of the entries (not of ``generated_at``); that of
    cached entries is computed once."""
    kept = _cached(items)
    return kept.etag if kept else _digest(items)


def encoded(answer):
    """The JSON bytes of ``answer`` (``{"items", "generated_at"}``), those of
    cached entries encoded once: 1,000 entries are about 1 MB of JSON, which
    took longer to encode than the rest of the request."""
    kept = _cached(answer["items"])
    if not kept:
        return json.dumps(answer, ensure_ascii=False).encode()
    rest = {k: v for k, v in answer.items() if k != "items"}
    tail = b", " + json.dumps(rest)[1:].encode() if rest else b"}"
    return b'{"items": ' + kept.json + tail
