"""KServe's own traffic split, for the ``kubernetes`` kind in kserve mode
with ``kserve_deployment_mode`` ``Serverless`` (``Knative``). Plain
Python: no client of its own, no Odoo.

KServe splits traffic only in that mode, and only between two revisions of
one InferenceService: the revision it last rolled out at 100 %, and the
newest, which takes ``canaryTrafficPercent`` of the calls (KServe's
documentation, *Canary Rollout Strategy*). So here a route is one
InferenceService, named as the route's Service would be (KServe makes a
Service of that name, which the gateway calls), and its colours are the
revisions of it:

- ``apply`` puts the colour's predictor in the spec. When another colour
  serves the route it comes up without traffic (``canaryTrafficPercent``
  0) until ``switch`` gives it its share;
- ``switch`` sets the split: the newest colour's share, or the promotion
  (no ``canaryTrafficPercent``: KServe rolls it out at 100 %), or the
  rollback (0: every call to the revision rolled out before). A colour the
  InferenceService no longer holds (an idle blue-green colour) is put back
  as the newest revision: KServe keeps no idle revision warm;
- each colour's predictor is kept in a ConfigMap of its own (``spec``
  below), so that a switch back and *Re-apply* can render it again.

Two annotations of the InferenceService say which colour is which:
``latest`` (the predictor the spec holds) and ``stable`` (the colour KServe
rolled out last); ``revision-<colour>`` names the revision KServe made of
it, once ``verify`` has seen it ready.
"""

import copy
import json

from . import k8s_manifests as manifests
from .targets import ServeStatus, TargetFailed

MODES = ("Serverless", "Knative")
LATEST = f"{manifests.GROUP}/latest"
STABLE = f"{manifests.GROUP}/stable"
REVISION = f"{manifests.GROUP}/revision-"
SPEC_KEY = "predictor.json"
API_VERSION = f"{manifests.KSERVE[0]}/{manifests.KSERVE[1]}"
KIND = manifests.KSERVE[2]


def serverless(options):
    return options.mode == "kserve" and options.kserve_deployment_mode in MODES


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def spec_name(plan):
    return manifests.colour_name(plan)


def colour_spec(plan, options, pull=None):
    """The colour's predictor, kept for a later switch back or Re-apply."""
    predictor = manifests.inference_service(plan, options, pull)["spec"]["predictor"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec_name(plan), "labels": manifests.labels(plan)},
        "data": {SPEC_KEY: json.dumps(predictor, sort_keys=True)},
    }


def route_service(route, owner, predictor, options, latest, stable, percent):
    """The route's InferenceService holding ``latest``'s predictor;
    ``percent``: its share while ``stable`` keeps the rest (None: all)."""
    predictor = copy.deepcopy(predictor)
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    annotations = {
        "serving.kserve.io/deploymentMode": options.kserve_deployment_mode,
        LATEST: latest,
        STABLE: stable,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": manifests.service_name(route, owner),
            "labels": {
                **manifests.managed(owner),
                manifests.ROUTE_LABEL: manifests.route_label(route),
            },
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def holds(live):
    """(latest, stable) colours of a live route InferenceService."""
    annotations = (live or {}).get("metadata", {}).get("annotations", {})
    return annotations.get(LATEST, ""), annotations.get(STABLE, "")


def percent_of(live):
    return live["spec"]["predictor"].get("canaryTrafficPercent")


# ---------------------------------------------------------------------------
# Operations, on a ``k8s_client.Cluster`` in the route's namespace
# ---------------------------------------------------------------------------


class Revisions:
    """A target's routes as InferenceService revisions."""

    def __init__(self, options, owner):
        self.options = options
        self.owner = owner

    def _name(self, route):
        return manifests.service_name(route, self.owner)

    def _live(self, cluster, route):
        return cluster.get(API_VERSION, KIND, self._name(route))

    def _predictor(self, cluster, key):
        """The kept predictor of the colour ``key``, or None."""
        kept = cluster.get(
            "v1", "ConfigMap", manifests.colour_key_name(key, self.owner)
        )
        if not kept:
            return None
        return json.loads(kept["data"][SPEC_KEY])

    def render(self, cluster, plan, pull=None):
        """The route's InferenceService once ``plan``'s colour is applied,
        or None when it stays as it is: the colour is the stable one while
        a newer one rolls out (its revision cannot change; KServe keeps it
        as it rolled it out)."""
        live = self._live(cluster, plan.route)
        latest, stable = holds(live)
        predictor = manifests.inference_service(plan, self.options, pull)["spec"][
            "predictor"
        ]
        key = plan.key
        if not live or not stable or (stable == key and latest in ("", key)):
            # the route's only colour
            return route_service(
                plan.route, self.owner, predictor, self.options, key, key, None
            )
        if key == latest:
            # applied again: its share kept
            return route_service(
                plan.route, self.owner, predictor, self.options, key, stable,
                percent_of(live),
            )  # fmt: skip
        if key == stable:
            return None
        # another colour serves: this one comes up without calls
        return route_service(
            plan.route, self.owner, predictor, self.options, key, stable, 0
        )

    def verify(self, cluster, plan):
        """Ready once KServe reports the colour's revision ready: the newest
        (its latest created revision is its latest ready one, at the spec's
        generation), or the stable one serving."""
        live = self._live(cluster, plan.route)
        if live is None:
            return ServeStatus(
                False, f"InferenceService {self._name(plan.route)} is gone",
                failed=True,
            )  # fmt: skip
        latest, stable = holds(live)
        status = live.get("status", {})
        failure = status.get("modelStatus", {}).get("lastFailureInfo")
        predictor = status.get("components", {}).get("predictor", {})
        if plan.key == latest:
            if failure:
                return ServeStatus(
                    False,
                    f"{failure.get('reason', 'failed')}: {failure.get('message', '')}",
                    failed=True,
                )
            current = status.get("observedGeneration", 0) >= live["metadata"].get(
                "generation", 0
            )
            created = predictor.get("latestCreatedRevision")
            ready = predictor.get("latestReadyRevision")
            if current and created and created == ready:
                self._note_revision(cluster, live, plan.key, ready)
                return ServeStatus(
                    True, f"revision {ready} ready", details={"revision": ready}
                )
            return ServeStatus(
                False,
                f"revision {created or '(not created yet)'} not ready"
                + ("" if current else " (KServe has not seen the last change yet)"),
            )
        if plan.key == stable:
            rolled = predictor.get("latestRolledoutRevision", "")
            return ServeStatus(bool(rolled), f"revision {rolled or '?'} serving")
        # an idle colour: KServe keeps no revision of it; a switch puts it back
        if self._predictor(cluster, plan.key) is None:
            return ServeStatus(
                False, f"ConfigMap {spec_name(plan)} is gone", failed=True
            )
        return ServeStatus(True, "idle: no revision until it takes the route")

    def _note_revision(self, cluster, live, key, revision):
        if live["metadata"].get("annotations", {}).get(REVISION + key) == revision:
            return
        cluster.patch(
            API_VERSION,
            KIND,
            live["metadata"]["name"],
            {"metadata": {"annotations": {REVISION + key: revision}}},
        )

    def revision(self, cluster, plan):
        """The revision KServe made of the colour, as ``verify`` noted it."""
        live = self._live(cluster, plan.route) or {}
        annotations = live.get("metadata", {}).get("annotations", {})
        return annotations.get(REVISION + plan.key, "")

    def switch(self, cluster, route, shares):
        """The route's split as ``shares`` ({colour: percent > 0}) says."""
        live = self._live(cluster, route)
        latest, stable = holds(live)
        if len(shares) > 2:
            raise TargetFailed(
                "KServe splits a route between two revisions, not "
                f"{len(shares)}: {', '.join(sorted(shares))}"
            )
        if len(shares) == 2:
            if set(shares) != {latest, stable}:
                raise TargetFailed(
                    f"the route's InferenceService holds {latest} and {stable}, "
                    f"not {' and '.join(sorted(shares))}"
                )
            self._set(cluster, live, shares[latest], stable)
            return
        (colour,) = shares
        if colour == latest:
            # promoted: KServe rolls the newest out at 100 %
            self._set(cluster, live, None, colour)
        elif colour == stable:
            # rolled back: every call to the revision rolled out before
            self._set(cluster, live, 0, stable)
        else:
            # an idle colour takes the route back: its revision again
            predictor = self._predictor(cluster, colour)
            if predictor is None:
                raise TargetFailed(f"{colour} has no predictor kept to switch back to")
            cluster.apply(
                route_service(route, self.owner, predictor, self.options, colour,
                              colour, None),
                force=True,
            )  # fmt: skip

    def _set(self, cluster, live, percent, stable):
        if live is None:
            raise TargetFailed("the route's InferenceService is gone")
        if percent_of(live) == percent and holds(live)[1] == stable:
            return
        cluster.patch(
            API_VERSION,
            KIND,
            live["metadata"]["name"],
            {
                "metadata": {"annotations": {STABLE: stable}},
                # None removes it (a merge patch): KServe promotes
                "spec": {"predictor": {"canaryTrafficPercent": percent}},
            },
        )

    def forget(self, cluster, route, key):
        """The colour ``key`` leaves its route: the InferenceService goes
        with its last colour; a newest colour going hands every call back
        to the stable one."""
        live = self._live(cluster, route)
        if live is not None:
            self._forget(cluster, live, key)

    def forget_everywhere(self, cluster, key):
        """``forget`` on every route InferenceService holding ``key`` (a
        stray colour, whose route is not known)."""
        for live in self.routes(cluster):
            if key in holds(live):
                self._forget(cluster, live, key)

    def routes(self, cluster, everywhere=False):
        """The target's route InferenceServices (one list call)."""
        return cluster.list(
            API_VERSION,
            KIND,
            selector=f"{manifests.selector(**manifests.managed(self.owner))},"
            f"{manifests.ROUTE_LABEL},!{manifests.COLOUR_LABEL}",
            everywhere=everywhere,
        )

    def _forget(self, cluster, live, key):
        latest, stable = holds(live)
        if key not in (latest, stable):
            return
        if key == latest and stable and stable != key:
            self._set(cluster, live, 0, stable)
            cluster.patch(
                API_VERSION, KIND, live["metadata"]["name"],
                {"metadata": {"annotations": {LATEST: ""}}},
            )  # fmt: skip
            return
        if key == stable and latest and latest != key:
            # the newest takes it all (it is what serves once promoted)
            self._set(cluster, live, None, latest)
            return
        cluster.delete(API_VERSION, KIND, live["metadata"]["name"])
