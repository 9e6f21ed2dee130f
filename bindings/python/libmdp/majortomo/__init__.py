"""Majortomo's client and worker API on libmdp.

``from libmdp.majortomo import Client, Worker, WorkerRequestsIterator`` in
place of ``from majortomo import ...``.  Differences (docs/python.md): RFC 18
on the wire unless ``dialect="majortomo"`` or ``"mdp01"``; the worker
heartbeats while a request is being handled; ``zmq_context`` and
``zmq_linger`` are accepted and not used (libmdp runs its own sockets).
"""
from . import error
from .client import Client
from .worker import Worker, WorkerRequestsIterator

__all__ = ["Client", "Worker", "WorkerRequestsIterator", "error"]
