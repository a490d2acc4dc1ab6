# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from ..services.settings import default


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    mlops_allow_self_approval = fields.Boolean(
        string="Uploader May Approve",
        config_parameter="creativeflow_mlops.allow_self_approval",
        help="Relax separation of duties: the uploader of a version may approve "
        "its staging and promote it. Every approval is still recorded.",
    )
    mlops_approval_reason_optional = fields.Boolean(
        string="Approval Reason Optional",
        config_parameter="creativeflow_mlops.approval_reason_optional",
        help="By default every approval must say why.",
    )
    mlops_default_approver_id = fields.Many2one(
        "res.users",
        string="Default Approver",
        config_parameter="creativeflow_mlops.default_approver_id",
        domain=lambda self: [
            (
                "groups_id",
                "in",
                self.env.ref("creativeflow_mlops.group_mlops_approver").id,
            )
        ],
        help="Gets the approval activities when the model's owner cannot approve.",
    )
    mlops_trivy_path = fields.Char(
        string="Trivy Binary",
        config_parameter="creativeflow_mlops.trivy_path",
        help="Path of a trivy binary for image scans; without it they are skipped.",
    )
    mlops_benchmark_runs = fields.Integer(
        string="Benchmark Runs",
        config_parameter="creativeflow_mlops.benchmark_runs",
        default=default("benchmark_runs"),
    )
    mlops_max_upload_gb = fields.Integer(
        string="Largest Upload (GiB)",
        config_parameter="creativeflow_mlops.max_upload_gb",
        default=default("max_upload_gb"),
    )
    mlops_max_direct_upload_gb = fields.Integer(
        string="Largest Direct Upload (GiB)",
        config_parameter="creativeflow_mlops.max_direct_upload_gb",
        default=default("max_direct_upload_gb"),
    )
    mlops_runtime_memory_mb = fields.Integer(
        string="Runtime Memory (MiB)",
        config_parameter="creativeflow_mlops.runtime_memory_mb",
        default=default("runtime_memory_mb"),
    )
    mlops_watchdog_grace_minutes = fields.Integer(
        string="Watchdog Grace (minutes)",
        config_parameter="creativeflow_mlops.watchdog_grace_minutes",
        default=default("watchdog_grace_minutes"),
        help="A validation round with no job left to run is settled by the "
        "watchdog once it has been quiet this long.",
    )
    mlops_content_safety_url = fields.Char(
        string="Content-Safety Checker",
        config_parameter="creativeflow_mlops.content_safety_url",
    )
