"""libmdp.Client: a thread-safe blocking client, many requests in flight.

Any number of threads may share one Client: each call waits (with the GIL
released) for its own request's reply, which libmdp's loop thread receives.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Union

from . import _core, _native
from .errors import Disconnected


class Client:
    """A Majordomo client over one or several brokers.

    `brokers`: one URL or a list (requests are spread over the live ones,
    `spread`: "round-robin", "fewest" or "failover").  `timeout` (seconds) is
    the longest wait for each reply part; a timed-out request is sent again
    `retries` more times (to another broker if there are several), then
    fails with :class:`~libmdp.errors.Timeout`.
    """

    def __init__(self, brokers: _core.Brokers, *, dialect: str = "rfc18", timeout: float = 10.0,
                 retries: int = 1, spread: str = "round-robin", max_sockets: int = 64,
                 curve_server_key: Optional[str] = None, curve_public_key: Optional[str] = None,
                 curve_secret_key: Optional[str] = None) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise _core.InvalidArgument("retries must be an int >= 0")
        self._events = _native.Channel()  # unused by requests; the handle's own
        self._h = _native.client_new(
            self._events, _core.endpoints(brokers), _core.dialect(dialect),
            _core.seconds_to_ms(timeout, "timeout", _core.FOREVER_MS), retries, _core.spread(spread),
            max_sockets, *_core.keys(curve_server_key, curve_public_key, curve_secret_key))

    def _send(self, service: Union[str, bytes], frames: tuple, timeout: Optional[float],
              retries: Optional[int], deadline: Optional[float]):
        if self._h.closed:
            raise Disconnected("the client is closed")
        svc = _core.service_bytes(service)
        body = _core.check_frames(frames)
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise _core.InvalidArgument("retries must be an int >= 0")
        ch = _native.Channel()
        tag = _core.next_tag()
        self._h.request(ch, tag, svc, body, _core.seconds_to_ms(timeout, "timeout"),
                        -1 if retries is None else retries, _core.seconds_to_ms(deadline, "deadline"))
        return ch, tag

    def _parts(self, ch, tag) -> Iterator[List[bytes]]:
        done = False
        try:
            while True:
                _tag, _kind, status, final, frames, _h1, _h2 = ch.get(None)
                if status < 0:
                    done = True
                    raise _core.from_code(status, "request failed: " + _native.strerror(status))
                if final:
                    done = True
                yield frames
                if final:
                    return
        finally:
            if not done:  # interrupted (KeyboardInterrupt, generator closed)
                self._h.cancel(tag)

    def request(self, service: Union[str, bytes], *frames: bytes, timeout: Optional[float] = None,
                retries: Optional[int] = None, deadline: Optional[float] = None) -> List[bytes]:
        """Sends a request and returns the FINAL's frames (PARTIALs are
        skipped; use :meth:`stream` for them).  Thread-safe."""
        ch, tag = self._send(service, frames, timeout, retries, deadline)
        last: List[bytes] = []
        for last in self._parts(ch, tag):
            pass
        return last

    def stream(self, service: Union[str, bytes], *frames: bytes, timeout: Optional[float] = None,
               retries: Optional[int] = None, deadline: Optional[float] = None) -> Iterator[List[bytes]]:
        """Sends a request and yields each reply part (PARTIALs, then the
        FINAL).  Closing the iterator early cancels the request."""
        ch, tag = self._send(service, frames, timeout, retries, deadline)
        return self._parts(ch, tag)

    def close(self) -> None:
        """Cancels the requests in flight (they raise Cancelled) and closes."""
        self._h.close()

    @property
    def closed(self) -> bool:
        return bool(self._h.closed)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
