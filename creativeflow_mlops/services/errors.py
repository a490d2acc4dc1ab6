"""The adapters' errors as the contract's errors, in one place.

Adapters raise plain-Python errors (``StorageUnavailable``: the backend
cannot be reached now; ``StorageRefused``: it answered no). Models,
controllers and jobs meet them through ``backend_call`` (a request: the
contract's 503 or the given refusal) or ``jobs.attempt`` (a job: retried,
or settled), never by mapping them on their own.
"""

import contextlib

from ..adapters.ci import CIUnavailable
from ..adapters.storage import IntegrityMismatch, StorageError, StorageUnavailable
from ..adapters.targets import TargetFailed, TargetUnavailable
from ..exceptions import BackendUnavailable, Conflict, MLOpsError, PayloadTooLarge
from ..utils import scrub_paths

# what a later try may get through
TRANSIENT = (StorageUnavailable, BackendUnavailable, CIUnavailable, TargetUnavailable)

# where the REST face lives: everything under it answers in the contract's
# JSON, even a path no route matches
REST_PREFIX = "/mlops/api/v1"


def error_body(code, message, details=None):
    """The contract's error object."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def describe(error):
    """The sentence an error gives a user, without the server's paths."""
    return scrub_paths(str(error))


def to_contract(error, refused=BackendUnavailable, what=None):
    """The contract's error for an adapter's: an unreachable backend is a
    503 (``BackendUnavailable``), more bytes than announced a 413, a
    refusal ``refused``. ``what`` starts the message."""
    if isinstance(error, MLOpsError):
        return error
    message = f"{what}: {describe(error)}" if what else describe(error)
    if isinstance(error, StorageUnavailable):
        return BackendUnavailable(message)
    if isinstance(error, IntegrityMismatch):
        return PayloadTooLarge(describe(error))
    return refused(message)


@contextlib.contextmanager
def backend_call(refused=BackendUnavailable, what=None):
    """``with backend_call(): store.do()`` turns what the store raises into
    the contract's error (see ``to_contract``)."""
    try:
        yield
    except StorageError as error:
        raise to_contract(error, refused, what) from error


@contextlib.contextmanager
def target_call(target_name):
    """``with target_call(name): client.do()`` in a request: a target out
    of reach is a 503 (nothing changed: the transaction rolls back, try
    again), one that refused a 409 with its reason."""
    try:
        yield
    except TargetUnavailable as error:
        raise BackendUnavailable(f"{target_name}: {describe(error)}") from error
    except TargetFailed as error:
        raise Conflict(f"{target_name}: {describe(error)}") from error
