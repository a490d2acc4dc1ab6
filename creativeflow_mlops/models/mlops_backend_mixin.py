# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import os
import re
import threading

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError, ValidationError

from ..exceptions import BackendUnavailable
from ..services import errors

CODE = re.compile(r"[a-z0-9_]{1,32}")


class MlopsBackendMixin(models.AbstractModel):
    """An external backend as a record, in the manner of OCA's fs_storage
    and webservice: a ``code``, a ``kind`` naming its adapter, secrets from
    the environment or the server configuration (never the database), a
    client built lazily and kept while its settings stay the same, and
    *Test Connection*.

    Inheriting models set class attributes:

    - ``_backend_secret_scope``: names the secrets: secret ``<name>`` of
      backend ``<code>`` is ``MLOPS_<SCOPE>_<CODE>_<NAME>`` in the
      environment or ``mlops_<scope>_<code>_<name>`` in the configuration;
    - ``_backend_secrets``: the secret names (``("access_key", ...)``);
    - ``_backend_stamp``: the fields whose change rebuilds the client;

    and implement ``_build_client()``, returning an adapter object with a
    ``check()`` that returns a dict to show or raises.
    """

    _name = "mlops.backend.mixin"
    _description = "MLOps External Backend"

    _backend_secret_scope = None
    _backend_secrets = ()
    _backend_stamp = ()

    # clients, per model, database and record
    _clients = {}
    _clients_lock = threading.Lock()

    name = fields.Char(required=True)
    code = fields.Char(
        required=True,
        help="Technical name; also names the environment variables of its secrets.",
    )
    active = fields.Boolean(default=True)
    has_credentials = fields.Boolean(compute="_compute_has_credentials")
    credentials_help = fields.Char(compute="_compute_has_credentials")

    _sql_constraints = [
        ("code_uniq", "unique (code)", "A backend with this code exists.")
    ]

    @api.depends("code")
    def _compute_has_credentials(self):
        for backend in self:
            backend.has_credentials = all(
                backend._backend_secret(name)
                for name in backend._backend_required_secrets()
            )
            backend.credentials_help = (
                " / ".join(
                    backend._secret_variable(n)
                    for n in backend._backend_required_secrets()
                )
                or False
            )

    @api.constrains("code")
    def _check_code(self):
        for backend in self:
            if not CODE.fullmatch(backend.code or ""):
                raise ValidationError(
                    self.env._(
                        "A backend code uses 1 to 32 lowercase letters, digits or _."
                    )
                )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_test_connection(self):
        self.ensure_one()
        if not self.env.user.has_group("creativeflow_mlops.group_mlops_manager"):
            raise AccessError(
                self.env._("Only MLOps managers test %s.", self._description)
            )
        try:
            info = self._get_client().check()
        except Exception as error:  # noqa: BLE001 - shown to the manager
            message, kind = errors.describe(error), "danger"
        else:
            message = ", ".join(f"{key}: {value}" for key, value in info.items())
            kind = "success"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Connection to %s", self.name),
                "message": message,
                "type": kind,
                "sticky": kind == "danger",
            },
        }

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _secret_variable(self, name):
        scope = (self._backend_secret_scope or "").upper()
        return f"MLOPS_{scope}_{(self.code or '').upper()}_{name.upper()}"

    def _backend_secret(self, name):
        """A secret of this backend, from the environment first."""
        self.ensure_one()
        value = os.environ.get(self._secret_variable(name))
        key = f"mlops_{self._backend_secret_scope}_{self.code}_{name}"
        return value or tools.config.get(key) or None

    def _require_secrets(self):
        names = self._backend_required_secrets()
        missing = [n for n in names if not self._backend_secret(n)]
        if missing:
            raise BackendUnavailable(
                self.env._(
                    "%(backend)s has no credentials: set %(vars)s in the "
                    "environment or the server configuration.",
                    backend=self.name,
                    vars=", ".join(self._secret_variable(n) for n in missing),
                )
            )
        return {n: self._backend_secret(n) for n in names}

    def _backend_secret_names(self):
        """The secrets' names (a backend whose kind decides them overrides
        this)."""
        return self._backend_secrets

    def _backend_required_secrets(self):
        """The secrets its settings need (the others are optional)."""
        return self._backend_secret_names()

    def _build_client(self):
        raise NotImplementedError

    def _get_client(self):
        """The adapter of this backend, built on first use and kept while
        its settings and secrets stay the same."""
        self.ensure_one()
        key = (self._name, self.env.cr.dbname, self.id)
        stamp = tuple(self[name] for name in ("kind", *self._backend_stamp)) + tuple(
            self._backend_secret(name) for name in self._backend_secret_names()
        )
        with self._clients_lock:
            cached = self._clients.get(key)
            if cached and cached[0] == stamp:
                return cached[1]
        client = self._build_client()
        with self._clients_lock:
            self._clients[key] = (stamp, client)
        return client
