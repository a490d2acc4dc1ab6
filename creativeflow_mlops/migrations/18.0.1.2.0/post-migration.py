# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Costs are booked from the upgrade on: the deployments that existed
before it start their booking now, not at their creation (which would
book their whole history at today's prices, on today's date)."""


def migrate(cr, version):
    cr.execute(
        """
        UPDATE mlops_deployment
        SET cost_booked_until = date_trunc('minute', now() AT TIME ZONE 'UTC')
        WHERE cost_booked_until IS NULL
        """
    )
