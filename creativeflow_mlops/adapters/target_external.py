"""The ``external`` kind: a CI provider's pipeline (``adapters.ci``) builds,
applies, routes and removes; Odoo hears of it through the pipeline's
reports (``POST /ci/callback``), which name the endpoint. So nothing here
acts on a server: ``apply`` refuses (no internal stage or canary gate runs
on it: its capabilities say so at approval), the routing and key calls the
services make for every target have nothing to change, and ``verify``
cannot see a colour (a rollback there deploys the previous version again,
through the pipeline). Plain Python: no Odoo.
"""

from dataclasses import asdict, dataclass, field

from .targets import (
    ANY_FORMAT,
    Capabilities,
    Reconciliation,
    ServeStatus,
    Target,
    TargetFailed,
    register,
    route_url_under,
)


@register
class ExternalTarget(Target):
    kind = "external"
    label = "External Pipeline"

    @dataclass
    class Options:
        public_url: str = field(
            default="",
            metadata={
                "type": str,
                "help": "the base URL the pipeline's gateway serves routes under, "
                "or empty (the pipeline reports each endpoint)",
            },
        )

    @classmethod
    def capabilities(cls, options):
        # a pipeline builds the image of any format; its replicas and
        # resources are its own (adapters.ci sends them)
        return Capabilities(
            formats=ANY_FORMAT,
            max_replicas=1000,
            resources=frozenset({"cpu", "memory", "gpu"}),
            builds_images=True,
            internal_pipeline=False,
        )

    @classmethod
    def build(cls, context, options, secrets):
        return cls(public_url=options.public_url or None)

    def __init__(self, public_url=None):
        self.public_url = (public_url or "").rstrip("/")

    def render(self, plan):
        return {"kind": self.kind, "pipeline is asked for": asdict(plan)}

    def apply(self, plan):
        raise TargetFailed("an external target is brought up by its pipeline")

    def verify(self, plan):
        return ServeStatus(False, "served by its pipeline: Odoo sees its reports")

    def switch_traffic(self, routes):
        """The pipeline routes its deployments."""

    def delete(self, plan):
        """The pipeline removes its deployments' objects."""

    def route_url(self, route):
        return route_url_under(self.public_url, route)

    def reconcile(self, plans):
        """Its pipeline owns what runs: nothing to compare here."""
        return Reconciliation()

    def check(self):
        return {"served by": "its pipeline", "url": self.public_url or "reported"}
