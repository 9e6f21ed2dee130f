"""libmdp: the ZeroMQ Majordomo Protocol (MDP/0.2, RFC 18) from Python,
on the C library libmdp.

- :mod:`libmdp.majortomo`: Majortomo's Client, Worker and
  WorkerRequestsIterator, same API, on libmdp (RFC 18 on the wire by
  default; the worker heartbeats while the application works).
- :class:`libmdp.Client`: a thread-safe blocking client, many requests in
  flight, several brokers.
- :mod:`libmdp.aio`: asyncio Client and Worker.
"""
from . import _core  # noqa: F401  (registers the exception factory)
from .client import Client
from .errors import (Cancelled, Disconnected, Error, InvalidArgument, ProtocolError, StateError,
                     Timeout)
from ._native import curve_keypair

__all__ = ["Client", "Error", "ProtocolError", "Disconnected", "StateError", "Timeout", "Cancelled",
           "InvalidArgument", "curve_keypair"]
__version__ = "0.1.0"
