# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, models

from ..exceptions import LifecycleAccessError

ADDON = "creativeflow_mlops"


class MlopsGuardedMixin(models.AbstractModel):
    """Fields the platform owns, refused in ``create()`` and ``write()`` to
    every caller but the platform itself.

    Configured by a class attribute, in the manner of ``tier.validation``:

    - ``_guarded_user_fields``: the fields of this addon a user may set
      (a name, a description, tags...). Every other field the addon defines
      on the model (states, artifacts, traffic, endpoints, hashes, the
      ledger...) is written only by the services, which act as the platform
      (the superuser environment, ``services.jobs.as_platform`` or
      ``sudo()`` after the action checked the caller). No RPC call, XML-RPC
      call, import or context key obtains that environment, so no path
      around the actions remains. Fields of other modules (the chatter's,
      the activities') keep their own rules.
    """

    _name = "mlops.guarded.mixin"
    _description = "MLOps Guarded Fields (written by the platform)"

    _guarded_user_fields = frozenset()

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su:
            for vals in vals_list:
                self._guard_check(vals, creating=True)
        return super().create(self._guarded_create_values(vals_list))

    def write(self, vals):
        if not self.env.su:
            self._guard_check(vals)
        return super().write(vals)

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    @api.model
    def _guarded_fields(self):
        """The fields of this model only the platform writes."""
        return frozenset(
            name
            for name, field in self._fields.items()
            if field._module == ADDON
            and name not in self._guarded_user_fields
            and (field.store or field.inverse)
        )

    @api.model
    def _guarded_create_values(self, vals_list):
        """Hook: ``vals_list`` with what the platform fills in on create
        (a slug, say), once the caller's values passed the guard."""
        return vals_list

    def _guard_exempt_on_create(self):
        """Hook: fields another check owns on create (the lifecycle's
        create states)."""
        return frozenset()

    def _guard_check(self, vals, creating=False):
        owned = self._guarded_fields().intersection(vals)
        if creating:
            owned -= self._guard_exempt_on_create()
        if owned:
            raise LifecycleAccessError(
                self.env._(
                    "%(model)s: %(fields)s can only be set by the platform, "
                    "through its actions, never written by hand.",
                    fields=", ".join(sorted(self._fields[n].string for n in owned)),
                    model=self._description,
                )
            )
