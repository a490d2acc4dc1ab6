# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..exceptions import LifecycleAccessError
from ..services import feedback_exports
from .mlops_model_version import BigInteger

EXPORT_STATES = [("queued", "Queued"), ("done", "Done"), ("failed", "Failed")]


class MlopsFeedbackExport(models.Model):
    """A model's feedback of a period with the calls it is about, as JSONL
    in the object store, for retraining (``services/feedback_exports.py``).
    A user names the model and the period; the platform writes the rest.
    The versions trained on it name it in their lineage."""

    _name = "mlops.feedback.export"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Feedback Export"
    _order = "id desc"

    # the model and the period are chosen once, when the export is asked for
    _guarded_user_fields = frozenset({"model_id", "since", "until"})
    _fixed_once_asked = ("model_id", "since", "until")

    model_id = fields.Many2one(
        "mlops.model", required=True, index=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="model_id.company_id", store=True)
    since = fields.Datetime(
        readonly=True, help="Feedback submitted from then on (empty: all)."
    )
    until = fields.Datetime(
        readonly=True, help="Feedback submitted before then (empty: up to now)."
    )
    state = fields.Selection(
        EXPORT_STATES, required=True, default="queued", readonly=True
    )
    requested_by_id = fields.Many2one(
        "res.users", readonly=True, default=lambda self: self.env.user
    )
    storage_backend_id = fields.Many2one(
        "mlops.storage.backend", readonly=True, ondelete="restrict"
    )
    object_key = fields.Char(readonly=True)
    uri = fields.Char(string="URI", readonly=True, index=True)
    sha256 = fields.Char(string="SHA-256", readonly=True)
    size = BigInteger(string="Bytes", readonly=True)
    lines = fields.Integer(readonly=True, help="One per feedback.")
    logged_lines = fields.Integer(
        string="With Their Call",
        readonly=True,
        help="Feedback whose call the inference log holds.",
    )
    error = fields.Text(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    version_ids = fields.One2many(
        "mlops.model.version",
        "feedback_export_id",
        string="Trained Versions",
        readonly=True,
        help="The versions whose lineage names this export.",
    )

    @api.constrains("since", "until")
    def _check_period(self):
        for export in self:
            if export.since and export.until and export.since >= export.until:
                raise ValidationError(self.env._("The period ends after it starts."))

    @api.model_create_multi
    def create(self, vals_list):
        exports = super().create(vals_list)
        feedback_exports.queue(exports)
        return exports

    def write(self, vals):
        if not self.env.su and set(vals).intersection(self._fixed_once_asked):
            raise LifecycleAccessError(
                self.env._("An export's model and period are fixed once asked for.")
            )
        return super().write(vals)

    @api.depends("model_id", "create_date")
    def _compute_display_name(self):
        for export in self:
            export.display_name = self.env._(
                "%(model)s feedback #%(id)s",
                model=export.model_id.display_name,
                id=export.id or "",
            )

    def action_download(self):
        """The exported file, from the store (a download URL or the file)."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_url",
            "url": feedback_exports.download_path(self),
            "target": "self",
        }

    @api.model
    def _find_named(self, model, named):
        """The finished export of ``model`` a new version's lineage names."""
        return feedback_exports.find(self.env, model, named)

    def _build(self):
        """Job (queue_job): write and store the export."""
        self.ensure_one()
        return feedback_exports.build(self)
