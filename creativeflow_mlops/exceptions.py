"""Errors of the MLOps layer, each with the REST error code and HTTP status of
the contract (docs/reference/api.md), so controllers map them without
guessing. They subclass Odoo's user-facing errors: the web client shows their
message, and a savepoint or a job sees an ordinary exception."""

from odoo.exceptions import AccessError, UserError


class MLOpsError(UserError):
    code = "invalid_request"
    http_status = 400
    # what must still happen once the request's transaction is rolled back
    # (say, removing what a refused upload left): a callable, or None
    after_rollback = None


class TransitionNotAllowed(MLOpsError):
    """The state machine refuses the move from the current state."""

    code = "transition_not_allowed"
    http_status = 409


class LifecycleAccessError(AccessError):
    """The user lacks the role the transition needs."""

    code = "forbidden"
    http_status = 403


class SeparationOfDutiesError(LifecycleAccessError):
    """The uploader of a version tried to approve it."""

    code = "separation_of_duties"


class MalformedJson(MLOpsError):
    """A body or a part that should be JSON and is not."""

    code = "malformed_json"
    http_status = 400


class InvalidInput(MLOpsError):
    """Well-formed request, invalid values."""

    code = "invalid_input"
    http_status = 422


class Unauthorized(MLOpsError):
    """A request whose credentials or signature do not hold."""

    code = "unauthorized"
    http_status = 401


class Conflict(MLOpsError):
    code = "conflict"
    http_status = 409


class NotFound(MLOpsError):
    code = "not_found"
    http_status = 404


class CursorAhead(MLOpsError):
    """A cursor no answer gave out yet (ahead of the log): a client that
    waited on it would wait for events it already missed."""

    code = "cursor_ahead"
    http_status = 409


class CursorExpired(MLOpsError):
    """A cursor from before events that retention has dropped: following
    on from it would skip them."""

    code = "cursor_expired"
    http_status = 410


class PayloadTooLarge(MLOpsError):
    code = "payload_too_large"
    http_status = 413


class BackendUnavailable(MLOpsError):
    """A backend (object store, cluster) cannot be reached: nothing was
    written, the call can be retried."""

    code = "backend_unavailable"
    http_status = 503
