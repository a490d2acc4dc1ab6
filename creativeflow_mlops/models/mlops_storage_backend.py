# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import functools
import logging
import os
import re
from datetime import datetime, timezone

from odoo import api, fields, models, tools
from odoo.exceptions import ValidationError

from ..adapters.storage import StorageRefused, models_root
from ..adapters.storage_local import LocalStore
from ..adapters.storage_s3 import S3Store
from ..services import upload_parts

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
    _inherit = ["mlops.backend.mixin"]
    _description = "MLOps Artifact Storage Backend"
    _order = "is_default desc, name"

    _backend_secret_scope = "storage"
    _backend_secrets = ("access_key", "secret_key")
    _backend_stamp = ("endpoint", "bucket", "region", "secure", "prefix")

    kind = fields.Selection(
        [("local", "Local Folder"), ("s3", "S3 / MinIO")],
        required=True,
        default="local",
    )
    is_default = fields.Boolean(string="Default", help="Where new artifacts go.")
    endpoint = fields.Char(help="host:port of the S3 server, e.g. minio:9000")
    bucket = fields.Char()
    region = fields.Char()
    secure = fields.Boolean(string="HTTPS", default=True)
    prefix = fields.Char(help="Folder inside the bucket or the local root.")
    upload_expiry_hours = fields.Integer(
        default=24, help="Direct uploads not completed after this time are aborted."
    )

    @api.depends("code", "kind")
    def _compute_has_credentials(self):
        result = super()._compute_has_credentials()
        for backend in self.filtered(lambda b: b.kind != "s3"):
            backend.credentials_help = False
        return result

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
    # Business
    # ------------------------------------------------------------------

    def _local_root(self):
        root = os.path.join(
            tools.config["data_dir"], "mlops_artifacts", self.env.cr.dbname
        )
        return os.path.join(root, self.prefix) if self.prefix else root

    def _build_client(self):
        if self.kind == "local":
            parameters = self.env["ir.config_parameter"].sudo()
            signer = functools.partial(
                upload_parts.part_url,
                parameters.get_param("database.secret"),
                parameters.get_param("web.base.url", "http://localhost:8069"),
            )
            return LocalStore(self._local_root(), part_url=signer)
        secrets = self._require_secrets()
        return S3Store(
            self.endpoint,
            secrets["access_key"],
            secrets["secret_key"],
            self.bucket,
            secure=self.secure,
            region=self.region or None,
        )

    def _get_store(self):
        return self._get_client()

    def _abort_stale_multipart_uploads(self, older_than):
        """Abort the multipart uploads this platform left unfinished under
        its ``models/`` keys (an upload through Odoo whose clean-up could not
        reach the store, a lost direct upload) once older than
        ``older_than``; uploads still tracked as open are the cron's other
        half. Returns how many were aborted."""
        self.ensure_one()
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
