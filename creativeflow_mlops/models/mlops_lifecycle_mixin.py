# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, models
from odoo.exceptions import AccessError, UserError

from ..exceptions import LifecycleAccessError, TransitionNotAllowed
from ..lifecycle import SYSTEM, find_transition, targets_from
from ..services import events


class MlopsLifecycleMixin(models.AbstractModel):
    """A state machine enforced in ``create()`` and ``write()``, on fields
    only the platform writes (``mlops.guarded.mixin``).

    Inheriting models declare their table of transitions with class
    attributes, in the manner of ``tier.validation``:

    - ``_lifecycle_transitions``: a tuple of ``lifecycle.Transition``;
    - ``_lifecycle_create_states``: {state: actor} the states a record may be
      created in;
    - ``_lifecycle_state_field``: the Selection holding the state.

    Every path that changes the state (buttons, jobs, server actions) goes
    through ``write()``, so none can bypass the table; the state itself is a
    guarded field: a caller's ``write`` (RPC, XML-RPC, an import) is
    refused, and an action moves it with ``_lifecycle_move`` once it checked
    the caller, so the work a transition needs (a deployment, a validation
    round) is never skipped. ``SYSTEM`` transitions need the platform; the
    others need the actor's group, checked as the caller.
    """

    _name = "mlops.lifecycle.mixin"
    _inherit = "mlops.guarded.mixin"
    _description = "MLOps Lifecycle (state machine)"

    _lifecycle_transitions = ()
    _lifecycle_create_states = {}
    _lifecycle_state_field = "state"
    # the event log's name for these records (services.events), or None
    _event_resource = None

    @api.model_create_multi
    def create(self, vals_list):
        field_name = self._lifecycle_state_field
        for vals in vals_list:
            if field_name in vals:
                self._lifecycle_check_create_state(vals[field_name])
        records = super().create(vals_list)
        if self._event_resource:
            events.record([(record, None) for record in records])
        return records

    def write(self, vals):
        if not self.env.su:
            # the guard before the table: a caller never moves a state
            self._guard_check(vals)
        field_name = self._lifecycle_state_field
        if field_name not in vals:
            return super().write(vals)
        target = vals[field_name]
        moves = []
        for record in self:
            source = record[field_name]
            if source == target:
                continue
            moves.append((record, record._lifecycle_check_transition(target)))
        result = super().write(vals)
        for record, transition in moves:
            record._lifecycle_after_transition(transition)
        if self._event_resource:
            events.record([(record, transition.source) for record, transition in moves])
        return result

    # ------------------------------------------------------------------
    # Business
    # ------------------------------------------------------------------

    def _guard_exempt_on_create(self):
        # the states a record may be created in, and by whom, are the table's
        return super()._guard_exempt_on_create() | {self._lifecycle_state_field}

    def _lifecycle_move(self, target):
        """Move ``self`` to ``target`` for the caller: the table, the role,
        the reason and separation of duties checked as the caller, then the
        guarded state written by the platform on the caller's behalf (the
        approvals and the chatter still name the caller)."""
        self._check_can_transition(target)
        return self.sudo().write({self._lifecycle_state_field: target})

    def _check_can_transition(self, target):
        """Refuse, for each record, a move to ``target`` the table or the
        user's role does not allow."""
        for record in self:
            record._lifecycle_check_transition(target)

    def _lifecycle_state_label(self, state):
        selection = self._fields[self._lifecycle_state_field]._description_selection(
            self.env
        )
        return dict(selection).get(state, state)

    def _lifecycle_check_create_state(self, state):
        actor = self._lifecycle_create_states.get(state)
        if actor is None:
            raise TransitionNotAllowed(
                self.env._(
                    "A %(model)s cannot be created in state %(state)s.",
                    model=self._description,
                    state=self._lifecycle_state_label(state),
                )
            )
        self._lifecycle_check_actor(actor, self.env._("create it as %s", state))

    def _lifecycle_check_transition(self, target):
        """Return the transition of ``self`` to ``target`` or raise why not."""
        self.ensure_one()
        source = self[self._lifecycle_state_field]
        transition = find_transition(self._lifecycle_transitions, source, target)
        if transition is None:
            allowed = targets_from(self._lifecycle_transitions, source)
            raise TransitionNotAllowed(
                self.env._(
                    "%(record)s cannot go from %(from_state)s to %(to_state)s; "
                    "from %(from_state)s it can go to: %(allowed)s.",
                    record=self.display_name,
                    from_state=self._lifecycle_state_label(source),
                    to_state=self._lifecycle_state_label(target),
                    allowed=", ".join(
                        self._lifecycle_state_label(state) for state in allowed
                    )
                    or self.env._("nothing"),
                )
            )
        self._lifecycle_check_actor(transition.actor, transition.label)
        if transition.separation_of_duties:
            self._lifecycle_check_separation_of_duties(transition)
        return transition

    def _lifecycle_check_actor(self, actor, label):
        if self.env.su:
            return
        if actor == SYSTEM:
            raise LifecycleAccessError(
                self.env._(
                    "“%(label)s” is done by the platform itself, not by hand.",
                    label=label,
                )
            )
        if not self.env.user.has_group(actor):
            group = self.env.ref(actor)
            raise LifecycleAccessError(
                self.env._(
                    "“%(label)s” needs the role %(group)s.",
                    label=label,
                    group=group.full_name,
                )
            )

    def _lifecycle_check_separation_of_duties(self, transition):
        """Hook: raise ``SeparationOfDutiesError`` when the current user may
        not perform ``transition`` on ``self``."""
        return None

    def _lifecycle_after_transition(self, transition):
        """Hook called once per record after its state changed."""
        return None

    def _event_values(self):
        """Hook: the event's ``model_id``, ``version_id``, ``company_id`` and
        ``data`` for this record."""
        return {}

    def _lifecycle_apply_each(self, method_name, *args, **kwargs):
        """Call ``method_name`` on each record in its own savepoint.

        Returns ``(done, refused)``: the records that went through, and
        ``(record, reason)`` pairs for those that were refused, so a server
        action over a mixed selection changes what it can and says why for
        the rest.
        """
        done = self.browse()
        refused = []
        for record in self:
            try:
                with self.env.cr.savepoint():
                    getattr(record, method_name)(*args, **kwargs)
            except (UserError, AccessError) as error:
                refused.append((record, str(error.args[0])))
            else:
                done |= record
        return done, refused

    def _lifecycle_report_action(self, title, done, refused):
        """A client notification that reports a mass action per record."""
        lines = [self.env._("%s: done", record.display_name) for record in done]
        lines += [
            self.env._(
                "%(record)s: refused: %(reason)s", record=record.display_name, reason=r
            )
            for record, r in refused
        ]
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._(
                    "%(title)s: %(done)s done, %(refused)s refused",
                    title=title,
                    done=len(done),
                    refused=len(refused),
                ),
                "message": "\n".join(lines),
                "type": "warning" if refused else "success",
                "sticky": bool(refused),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }
