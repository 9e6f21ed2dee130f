"""Majortomo's Client (one request at a time), on libmdp."""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Union

from .. import _core, _native
from ..errors import Disconnected, StateError, Timeout

DEFAULT_ZMQ_LINGER = 2000


class Client:
    """An MDP client with Majortomo's API: ``send()`` one request, then read
    its reply with ``recv_part()``, ``recv_all()`` or ``recv_all_as_list()``
    before sending the next.

    `broker_url` may also be a list of URLs (several brokers).  Keyword-only
    extras: `dialect` ("rfc18", the default; "majortomo" for a Majortomo
    broker; "mdp01") and the CURVE keys.  `zmq_context` and `zmq_linger` are
    accepted for compatibility and not used.
    """

    def __init__(self, broker_url: _core.Brokers, zmq_context: Any = None,
                 zmq_linger: int = DEFAULT_ZMQ_LINGER, *, dialect: str = "rfc18",
                 curve_server_key: Optional[str] = None, curve_public_key: Optional[str] = None,
                 curve_secret_key: Optional[str] = None) -> None:
        self.broker_url = broker_url
        self._endpoints = _core.endpoints(broker_url)
        self._dialect = _core.dialect(dialect)
        self._keys = _core.keys(curve_server_key, curve_public_key, curve_secret_key)
        self._linger = zmq_linger
        self._h: Any = None
        self._ch: Any = None
        self._tag: Optional[int] = None  # the request in progress

    def connect(self, reconnect: bool = False) -> None:
        """Connects (a no-op if connected, unless `reconnect`: then the
        request in progress, if any, is dropped and a new connection made,
        as after a Timeout)."""
        if self.is_connected():
            if not reconnect:
                return
            self.close()
        ch = _native.Channel()
        # timeout: forever; the caller's recv_* timeouts rule, as in Majortomo.
        self._h = _native.client_new(ch, self._endpoints, self._dialect, _core.FOREVER_MS, 0,
                                     _native.SPREAD_ROUND_ROBIN, 64, *self._keys)
        self._ch = ch
        self._tag = None

    def is_connected(self) -> bool:
        return self._h is not None

    def close(self) -> None:
        if self._h is None:
            return
        h, self._h, self._ch, self._tag = self._h, None, None, None
        h.close()

    def send(self, service: Union[str, bytes], *args: bytes) -> None:
        """Sends a REQUEST for `service`; each further argument is a body
        frame (at least one)."""
        if self._h is None:
            raise Disconnected("client is not connected (call connect() or use it as a context manager)")
        if self._tag is not None:
            raise StateError("Still expecting reply from broker, cannot send new request")
        svc = _core.service_bytes(service)
        frames = _core.check_frames(args)
        if not frames:
            raise _core.InvalidArgument("a request needs at least one body frame")
        tag = _core.next_tag()
        self._h.request(self._ch, tag, svc, frames, _core.FOREVER_MS, 0, 0)
        self._tag = tag

    def recv_part(self, timeout: Optional[float] = None) -> Optional[List[bytes]]:
        """One reply part (a list of frames), or None when the whole reply
        (up to the FINAL) was already received.  Raises Timeout when no part
        comes within `timeout` seconds (None: wait forever)."""
        if self._tag is None:
            return None
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout < 0):
            raise _core.InvalidArgument("timeout must be None or a number of seconds >= 0")
        ev = self._ch.get(timeout)
        if ev is None:
            raise Timeout("Timed out waiting for reply from broker")
        _tag, _kind, status, final, frames, _h1, _h2 = ev
        if final:
            self._tag = None
        if status < 0:
            raise _core.from_code(status, "request failed: " + _native.strerror(status))
        return frames

    def recv_all(self, timeout: Optional[float] = None) -> Iterator[List[bytes]]:
        """Yields each reply part until the FINAL; `timeout` applies to each
        part, not to the whole reply."""
        while True:
            part = self.recv_part(timeout)
            if part is None:
                return
            yield part

    def recv_all_as_list(self, timeout: Optional[float] = None) -> List[bytes]:
        """Every frame of every reply part, in one flat list."""
        return [frame for part in self.recv_all(timeout) for frame in part]

    def __enter__(self) -> "Client":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
