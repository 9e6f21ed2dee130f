"""Majortomo's Worker and WorkerRequestsIterator, on libmdp.

The MDP connection lives on libmdp's loop thread: heartbeats flow both ways
while the application handles a request, so a handler that runs longer than
the broker's liveness window is not expelled by an RFC 18 broker.
"""
from __future__ import annotations

import logging
import signal
import struct
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .. import _core, _native
from ..errors import Disconnected, ProtocolError, StateError

DEFAULT_ZMQ_LINGER = 2500
DEFAULT_HEARTBEAT_INTERVAL = 2.5
DEFAULT_HEARTBEAT_TIMEOUT = 10.0

_handle = struct.Struct(">QQ")


class Worker:
    """An MDP worker for one service, with Majortomo's API.

    `broker_url` may be a list of URLs: the worker then serves through all of
    them (libmdp's worker group).  Keyword-only extras: `dialect`, the CURVE
    keys, and `concurrency` (requests handed out at once, default 1: one
    request at a time, Majortomo's behaviour).  `zmq_context` and
    `zmq_linger` are accepted and not used.

    ``wait_for_request()`` returns ``(client_id, frames)``; `client_id` is an
    opaque bytes handle of the request (not the client's ZeroMQ address), to
    pass to the ``send_reply_*`` methods.
    """

    def __init__(self, broker_url: _core.Brokers, service_name: Union[str, bytes],
                 heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, zmq_context: Any = None,
                 zmq_linger: int = DEFAULT_ZMQ_LINGER, *, dialect: str = "rfc18", concurrency: int = 1,
                 curve_server_key: Optional[str] = None, curve_public_key: Optional[str] = None,
                 curve_secret_key: Optional[str] = None) -> None:
        self.broker_url = broker_url
        self.service_name = _core.service_bytes(service_name)
        if self.service_name.startswith(b"mmi."):
            raise _core.InvalidArgument("a worker cannot serve an mmi.* service")
        self.heartbeat_interval = heartbeat_interval
        self._interval_ms = _core.seconds_to_ms(heartbeat_interval, "heartbeat_interval")
        timeout_ms = _core.seconds_to_ms(heartbeat_timeout, "heartbeat_timeout")
        # Majortomo's timeout as libmdp's liveness: intervals of silence.
        self._liveness = max(1, min(65535, -(-timeout_ms // self._interval_ms)))
        self._endpoints = _core.endpoints(broker_url)
        self._dialect = _core.dialect(dialect)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 4096:
            raise _core.InvalidArgument("concurrency must be an int in 1..4096")
        self._concurrency = concurrency
        self._keys = _core.keys(curve_server_key, curve_public_key, curve_secret_key)
        self._h: Any = None
        self._ch: Any = None
        self._pending: Dict[bytes, Tuple[int, int]] = {}
        self._log = logging.getLogger(__name__)

    def connect(self, reconnect: bool = False) -> None:
        """Connects to the broker(s) and registers (READY).  Requests not yet
        answered are dropped by a reconnect."""
        if self.is_connected():
            if not reconnect:
                return
            self.close()
        ch = _native.Channel()
        self._h = _native.worker_new(ch, self._endpoints, self.service_name, self._dialect,
                                     self._interval_ms, self._liveness, self._concurrency, *self._keys)
        self._ch = ch
        self._pending = {}

    def is_connected(self) -> bool:
        return self._h is not None and not self._h.closed

    def close(self) -> None:
        """Sends DISCONNECT and closes.  Safe from a signal handler or another
        thread: a ``wait_for_request()`` in progress raises Disconnected."""
        h = self._h
        if h is None or h.closed:
            return
        self._pending = {}
        h.close(False)

    def wait_for_request(self) -> Tuple[bytes, List[bytes]]:
        """Waits for the next REQUEST and returns ``(client_id, frames)``.
        Raises Disconnected if the worker is (or gets) closed."""
        h, ch = self._h, self._ch
        if h is None or h.closed:
            raise Disconnected("Worker is disconnected")
        while True:
            ev = ch.get(None)
            _tag, kind, _status, _final, frames, h1, h2 = ev
            if kind == _native.EV_REQUEST:
                client_id = _handle.pack(h1, h2)
                if not h.closed:
                    self._pending[client_id] = (h1, h2)
                    return client_id, frames
            elif kind == _native.EV_CLOSED:
                raise Disconnected("Disconnected: the worker was closed")

    def _reply(self, client: bytes, frames: Iterable[bytes], final: bool) -> None:
        h = self._h
        if h is None or h.closed:
            raise Disconnected("Worker is disconnected")
        handle = self._pending.get(client) if isinstance(client, (bytes, bytearray)) else None
        if handle is None:
            raise StateError("Cannot send reply: no request in progress with this client id "
                             "(already answered, or not from wait_for_request())")
        body = _core.check_frames(frames)
        h.reply(handle[0], handle[1], final, body)
        if final:
            del self._pending[client]

    def send_reply_final(self, client: bytes, frames: Sequence[bytes]) -> None:
        """Sends the FINAL reply to the request `client`; it is then over."""
        self._reply(client, frames, True)

    def send_reply_partial(self, client: bytes, frames: Sequence[bytes]) -> None:
        """Sends a PARTIAL reply; a FINAL must follow."""
        if self._dialect == _native.DIALECT_MDP01:
            raise StateError("MDP/0.1 has no partial replies")
        self._reply(client, frames, False)

    def send_reply_from_iterable(self, client: bytes, frames_iter: Iterable[Sequence[bytes]],
                                 final: Optional[Sequence[bytes]] = None) -> None:
        """Sends each item of `frames_iter` as a PARTIAL, then `final` (if
        given) as the FINAL."""
        for part in frames_iter:
            self.send_reply_partial(client, part)
        if final:
            self.send_reply_final(client, final)

    def __enter__(self) -> "Worker":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkerRequestsIterator:
    """Iterates over a worker's requests (connecting it, and closing it at
    the end); answer each with this object's ``send_reply_*`` methods."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._last_client: Optional[bytes] = None
        self._stop = False
        self._log = logging.getLogger(__name__)

    def __iter__(self) -> Iterator[List[bytes]]:
        with self.worker:
            while not self._stop:
                try:
                    self._last_client, request = self.worker.wait_for_request()
                except ProtocolError as e:
                    self._log.warning("Protocol error: %s, dropping request", e)
                    continue
                except Disconnected:
                    self._log.info("Worker disconnected")
                    break
                yield request

    def stop(self) -> None:
        """Stops the iteration (closes the worker)."""
        self._stop = True
        self.worker.close()

    def _client(self) -> bytes:
        if self._last_client is None:
            raise StateError("Cannot send reply: no client waiting")
        return self._last_client

    def send_reply_final(self, frames: Sequence[bytes]) -> None:
        self.worker.send_reply_final(self._client(), frames)
        self._last_client = None

    def send_reply_partial(self, frames: Sequence[bytes]) -> None:
        self.worker.send_reply_partial(self._client(), frames)

    def send_reply_from_iterable(self, frames_iter: Iterable[Sequence[bytes]],
                                 final: Optional[Sequence[bytes]] = None) -> None:
        self.worker.send_reply_from_iterable(self._client(), frames_iter, final)
        if final:
            self._last_client = None

    def stop_on_signal(self, sig_list: Tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Stops the iteration when one of these signals arrives."""
        def _handler(sig_num: int, _frame: Any) -> None:
            self._log.info("%s caught signal %d, stopping", type(self).__name__, sig_num)
            self.stop()

        for sig_num in sig_list:
            signal.signal(sig_num, _handler)
