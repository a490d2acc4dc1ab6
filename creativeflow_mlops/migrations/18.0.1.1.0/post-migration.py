# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A target's settings moved from columns of every target (router_port,
public_url) into its kind's options (adapters/target_<kind>.py)."""


def migrate(cr, version):
    cr.execute(
        """
        SELECT 1 FROM information_schema.columns
        WHERE table_name = 'mlops_deployment_target' AND column_name = 'router_port'
        """
    )
    if not cr.fetchone():
        return
    cr.execute(
        """
        UPDATE mlops_deployment_target
        SET options = jsonb_strip_nulls(jsonb_build_object(
            'router_port', CASE WHEN kind = 'local' THEN router_port END,
            'public_url', NULLIF(public_url, '')
        ))
        WHERE options IS NULL
        """
    )
