# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "CreativeFlow MLOps",
    "summary": "Model registry, validation, approvals and GPU deployments "
    "for AI models, inside Odoo",
    "version": "18.0.1.0.0",
    "category": "Productivity/MLOps",
    "website": "https://github.com/creativeflow/creativeflow_mlops",
    "author": "CreativeFlow",
    "license": "LGPL-3",
    "application": True,
    "depends": ["base", "mail", "web", "queue_job"],
    "external_dependencies": {"python": ["minio", "onnx", "onnxruntime", "numpy"]},
    "data": [
        "security/mlops_security.xml",
        "security/ir.model.access.csv",
        "data/mail_activity_type_data.xml",
        "data/mlops_storage_backend_data.xml",
        "data/mlops_deployment_target_data.xml",
        "data/queue_job_data.xml",
        "data/ir_cron_data.xml",
        "wizards/mlops_version_approval_wizard_views.xml",
        "wizards/mlops_deployment_rollback_wizard_views.xml",
        "views/mlops_model_tag_views.xml",
        "views/mlops_storage_backend_views.xml",
        "views/mlops_model_views.xml",
        "views/mlops_model_version_views.xml",
        "views/mlops_version_approval_views.xml",
        "views/mlops_validation_result_views.xml",
        "views/mlops_upload_views.xml",
        "views/mlops_deployment_views.xml",
        "views/mlops_feedback_views.xml",
        "views/res_config_settings_views.xml",
        "views/mlops_invoke_key_views.xml",
        "views/mlops_dashboard_views.xml",
        "views/mlops_menus.xml",
        "data/mlops_model_version_actions.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "creativeflow_mlops/static/src/dashboard/*",
        ],
        "web.assets_tests": [
            "creativeflow_mlops/static/src/tours/*.js",
        ],
    },
}
