# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import logging
import os
import re
import threading
from datetime import datetime, timezone

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError, ValidationError

from ..adapters.storage import (
    LocalStore,
    S3Store,
    StorageError,
    StorageRefused,
    models_root,
)
from ..exceptions import BackendUnavailable

_logger = logging.getLogger(__name__)

ENDPOINT = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")
PREFIX = re.compile(r"[A-Za-z0-9._/-]{1,200}")


class MlopsStorageBackend(models.Model):
    """Where artifacts live: a folder of the Odoo server (the embedded
    default) or an S3 bucket (MinIO or any S3).

    Secrets never enter the database: the access and secret keys of backend
    ``<code>`` come from the environment (``MLOPS_STORAGE_<CODE>_ACCESS_KEY``,
    ``MLOPS_STORAGE_<CODE>_SECRET_KEY``) or from the server configuration
    (``mlops_storage_<code>_access_key``, ``mlops_storage_<code>_secret_key``).
    """

    _name = "mlops.storage.backend"
    _description = "MLOps Artifact Storage Backend"
    _order = "is_default desc, name"

    # stores are built lazily and kept per database and backend while its
    # settings stay the same, like fs_storage's filesystems
    _stores = {}
    _stores_lock = threading.Lock()

    name = fields.Char(required=True)
    code = fields.Char(
        required=True,
        help="Technical name; also names the environment variables of its secrets.",
    )
    kind = fields.Selection(
        [("local", "Local Folder"), ("s3", "S3 / MinIO")],
        required=True,
        default="local",
    )
    is_default = fields.Boolean(string="Default", help="Where new artifacts go.")
    active = fields.Boolean(default=True)
    endpoint = fields.Char(help="host:port of the S3 server, e.g. minio:9000")
    bucket = fields.Char()
    region = fields.Char()
    secure = fields.Boolean(string="HTTPS", default=True)
    prefix = fields.Char(help="Folder inside the bucket or the local root.")
    has_credentials = fields.Boolean(compute="_compute_has_credentials")
    credentials_help = fields.Char(compute="_compute_has_credentials")
    upload_expiry_hours = fields.Integer(
        default=24, help="Direct uploads not completed after this time are aborted."
    )

    _sql_constraints = [
        ("code_uniq", "unique (code)", "A backend with this code exists.")
    ]

    @api.depends("code", "kind")
    def _compute_has_credentials(self):
        for backend in self:
            access, secret = backend._credentials()
            backend.has_credentials = bool(access and secret)
            upper = (backend.code or "").upper()
            backend.credentials_help = (
                f"MLOPS_STORAGE_{upper}_ACCESS_KEY / MLOPS_STORAGE_{upper}_SECRET_KEY"
                if backend.kind == "s3"
                else False
            )

    @api.constrains("code")
    def _check_code(self):
        for backend in self:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", backend.code or ""):
                raise ValidationError(
                    self.env._(
                        "A backend code uses 1 to 32 lowercase letters, digits or _."
                    )
                )

    @api.constrains("kind", "endpoint", "bucket")
    def _check_s3_settings(self):
        for backend in self.filtered(lambda b: b.kind == "s3"):
            if not (backend.endpoint and backend.bucket):
                raise ValidationError(
                    self.env._("An S3 backend needs an endpoint and a bucket.")
                )
            if not ENDPOINT.fullmatch(backend.endpoint):
                raise ValidationError(
                    self.env._(
                        "The endpoint is a host and an optional port, such as "
                        "minio:9000, without http:// (use Secure for TLS)."
                    )
                )

    @api.constrains("prefix")
    def _check_prefix(self):
        for backend in self.filtered("prefix"):
            parts = backend.prefix.rstrip("/").split("/")
            if (
                not PREFIX.fullmatch(backend.prefix)
                or backend.prefix.startswith("/")
                or any(part in ("", ".", "..") for part in parts)
            ):
                raise ValidationError(
                    self.env._(
                        "The prefix is a relative folder made of letters, digits, "
                        "dots, dashes and underscores, such as tenant-a/models; "
                        "no '..', no leading '/'."
                    )
                )

    @api.constrains("is_default")
    def _check_is_default(self):
        if len(self.search([("is_default", "=", True)])) > 1:
            raise ValidationError(self.env._("Only one backend can be the default."))

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_test_connection(self):
        self.ensure_one()
        if not self.env.user.has_group("creativeflow_mlops.group_mlops_manager"):
            raise AccessError(self.env._("Only MLOps managers test storage backends."))
        try:
            info = self._get_store().check()
        except (StorageError, BackendUnavailable) as error:
            message, kind = str(error), "danger"
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

    def _credentials(self):
        self.ensure_one()
        code = self.code or ""
        values = []
        for part in ("access_key", "secret_key"):
            value = os.environ.get(f"MLOPS_STORAGE_{code.upper()}_{part.upper()}")
            value = value or tools.config.get(f"mlops_storage_{code}_{part}")
            values.append(value or None)
        return tuple(values)

    def _local_root(self):
        root = os.path.join(
            tools.config["data_dir"], "mlops_artifacts", self.env.cr.dbname
        )
        return os.path.join(root, self.prefix) if self.prefix else root

    def _build_store(self):
        if self.kind == "local":
            return LocalStore(self._local_root())
        access, secret = self._credentials()
        if not (access and secret):
            raise BackendUnavailable(
                self.env._(
                    "Backend %(name)s has no credentials: set %(vars)s in the "
                    "environment or the server configuration.",
                    name=self.name,
                    vars=self.credentials_help,
                )
            )
        return S3Store(
            self.endpoint,
            access,
            secret,
            self.bucket,
            secure=self.secure,
            region=self.region or None,
        )

    def _get_store(self):
        self.ensure_one()
        key = (self.env.cr.dbname, self.id)
        stamp = (
            self.kind,
            self.endpoint,
            self.bucket,
            self.region,
            self.secure,
            self.prefix,
            self._credentials(),
        )
        with self._stores_lock:
            cached = self._stores.get(key)
            if cached and cached[0] == stamp:
                return cached[1]
        store = self._build_store()
        with self._stores_lock:
            self._stores[key] = (stamp, store)
        return store

    def _abort_stale_multipart_uploads(self, older_than):
        """Abort the multipart uploads this platform left unfinished under
        its ``models/`` keys (an upload through Odoo whose clean-up could not
        reach the store, a lost direct upload) once older than
        ``older_than``; uploads still tracked as open are the cron's other
        half. Returns how many were aborted."""
        self.ensure_one()
        if self.kind != "s3":
            return 0
        store = self._get_store()
        tracked = set(
            self.env["mlops.upload"]
            .sudo()
            .search([("storage_backend_id", "=", self.id), ("state", "=", "open")])
            .mapped("s3_upload_id")
        )
        limit = datetime.now(timezone.utc) - older_than
        aborted = 0
        models_folder = models_root(self._object_prefix())
        for upload in store.list_multipart_uploads(f"{models_folder}/"):
            if upload["upload_id"] in tracked:
                continue
            if upload["initiated"] and upload["initiated"] > limit:
                continue
            try:
                store.abort_multipart(upload["key"], upload["upload_id"])
            except StorageRefused:
                continue  # finished or aborted meanwhile
            aborted += 1
        return aborted

    def _object_prefix(self):
        """The prefix inside the store (local stores have it in their root)."""
        return self.prefix if self.kind == "s3" else ""

    @api.model
    def _get_default(self):
        backend = self.search([("is_default", "=", True)], limit=1)
        return backend or self.search([], limit=1)
