"""Majortomo's exceptions (``majortomo.error``), the same classes as
:mod:`libmdp.errors`: ``Error`` (a RuntimeError), ``ProtocolError``,
``Disconnected``, ``StateError``, ``Timeout``."""
from ..errors import Cancelled, Disconnected, Error, InvalidArgument, ProtocolError, StateError, Timeout

__all__ = ["Error", "ProtocolError", "Disconnected", "StateError", "Timeout", "Cancelled", "InvalidArgument"]
