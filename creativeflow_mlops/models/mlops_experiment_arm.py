# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models
from odoo.exceptions import ValidationError


class MlopsExperimentArm(models.Model):
    """One arm of an experiment: a version, its share of the route, the
    colour that serves it once started, and its results against the first
    arm (the control)."""

    _name = "mlops.experiment.arm"
    _inherit = ["mlops.guarded.mixin"]
    _description = "MLOps Experiment Arm"
    _order = "experiment_id, sequence, id"
    _guarded_user_fields = frozenset(
        {"experiment_id", "version_id", "weight", "sequence"}
    )

    experiment_id = fields.Many2one(
        "mlops.experiment", required=True, index=True, ondelete="cascade"
    )
    sequence = fields.Integer(default=10, help="The first arm is the control.")
    version_id = fields.Many2one(
        "mlops.model.version", required=True, ondelete="restrict"
    )
    company_id = fields.Many2one(related="experiment_id.company_id", store=True)
    weight = fields.Integer(
        required=True, default=50, help="Its share of the traffic, in percent."
    )
    deployment_id = fields.Many2one(
        "mlops.deployment",
        readonly=True,
        ondelete="set null",
        help="The colour that serves the arm while the experiment runs.",
    )
    n = fields.Integer(string="Observations", readonly=True)
    mean = fields.Float(
        readonly=True,
        digits=(16, 4),
        help="The metric's mean (a rate for the error rate).",
    )
    value = fields.Float(
        readonly=True, digits=(16, 4), help="The metric as shown: the mean, or the p95."
    )
    difference = fields.Float(
        readonly=True, digits=(16, 4), help="Against the control."
    )
    interval_low = fields.Float(readonly=True, digits=(16, 4))
    interval_high = fields.Float(readonly=True, digits=(16, 4))
    p_value = fields.Float(string="p-value", readonly=True, digits=(16, 6))
    always_valid_p_value = fields.Float(
        string="Always-Valid p-value", readonly=True, digits=(16, 6)
    )
    probability_best = fields.Float(readonly=True, digits=(16, 4))

    _sql_constraints = [
        (
            "weight_range",
            "CHECK (weight >= 0 AND weight <= 100)",
            "A weight is 0 to 100.",
        ),
    ]

    @api.constrains("weight")
    def _check_weight(self):
        for arm in self:
            if arm.weight < 0 or arm.weight > 100:
                raise ValidationError(self.env._("A weight is 0 to 100."))
