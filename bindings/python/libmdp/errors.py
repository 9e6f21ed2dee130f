"""Exceptions of the libmdp binding.

One hierarchy for the whole package; :mod:`libmdp.majortomo.error` re-exports
it under Majortomo's names, so ``except majortomo.error.Timeout`` code keeps
working.  Every exception carries the libmdp error code in ``code`` (0 when it
did not come from libmdp).
"""
from __future__ import annotations


class Error(RuntimeError):
    """Parent of every libmdp error (a RuntimeError, as Majortomo's)."""

    def __init__(self, message: str = "", code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(Error):
    """The peer broke the protocol."""


class Disconnected(Error):
    """The object is not (or no longer) connected: never connected, closed,
    or closed while waiting."""


class StateError(Error):
    """The call is not allowed in the object's current state (a second
    request on a Majortomo client, a reply with no request, an object made
    before a fork used in the child)."""


class Timeout(Error):
    """No reply (part) came in time."""


class Cancelled(Error):
    """The request was cancelled (or its client closed) before its FINAL."""


class InvalidArgument(Error, ValueError):
    """A bad argument: a malformed endpoint, service name, key or option."""


def from_code(code: int, message: str) -> Error:
    """The exception for libmdp error `code` (called by the C shim)."""
    from . import _native as n

    if code == n.ETIMEDOUT:
        return Timeout(message, code)
    if code == n.ECANCELED:
        return Cancelled(message, code)
    if code == n.ECLOSING:
        return Disconnected(message, code)
    if code == n.ESTATE:
        return StateError(message, code)
    if code in (n.EINVAL, n.ESERVICE):
        return InvalidArgument(message, code)
    return Error(message, code)
