"""asyncio API: :class:`Client` with many requests in flight, and
:class:`Worker` serving an ``async def`` handler with many requests in
progress.

libmdp's loop thread does the networking; its events reach the asyncio
loop through an eventfd registered with ``loop.add_reader``, so the asyncio
thread never blocks on libmdp.  Use each object from the asyncio loop it
was first used on.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence,
                    Union)

from . import _core, _native
from .errors import Disconnected

_log = logging.getLogger(__name__)


class _Reader:
    """A Channel read by one asyncio loop."""

    def __init__(self) -> None:
        self.ch = _native.Channel()
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def attach(self, callback: Callable[[], None]) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            loop.add_reader(self.ch.fileno(), callback)
        elif self.loop is not loop:
            raise RuntimeError("this object is bound to another asyncio event loop")
        return loop

    def detach(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.ch.fileno())
        self.loop = None


class _Batcher:
    """Holds a handle's commands for the rest of the asyncio loop's turn, so
    that the requests (or replies) of one turn wake libmdp's loop thread
    once rather than once each: the wake-ups, not the Python code, were the
    larger part of a round trip's cost with many in flight."""

    __slots__ = ("h", "holding")

    def __init__(self, h: Any) -> None:
        self.h = h
        self.holding = False

    def hold(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.holding:
            self.h.hold(True)
            self.holding = True
            loop.call_soon(self.release)

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self.h.hold(False)


class Client:
    """An asyncio Majordomo client over one or several brokers.

    ``await client.request(service, *frames)`` returns the FINAL's frames;
    ``async for part in client.stream(service, *frames)`` yields every part.
    Any number of requests may be in flight; cancelling the awaiting task
    cancels the request.  Options as :class:`libmdp.Client`.
    """

    def __init__(self, brokers: _core.Brokers, *, dialect: str = "rfc18", timeout: float = 10.0,
                 retries: int = 1, spread: str = "round-robin", max_sockets: int = 64,
                 curve_server_key: Optional[str] = None, curve_public_key: Optional[str] = None,
                 curve_secret_key: Optional[str] = None) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise _core.InvalidArgument("retries must be an int >= 0")
        self._r = _Reader()
        self._h = _native.client_new(
            self._r.ch, _core.endpoints(brokers), _core.dialect(dialect),
            _core.seconds_to_ms(timeout, "timeout", _core.FOREVER_MS), retries, _core.spread(spread),
            max_sockets, *_core.keys(curve_server_key, curve_public_key, curve_secret_key))
        self._batch = _Batcher(self._h)
        # tag -> a Future (request) or an asyncio.Queue (stream)
        self._pending: Dict[int, Any] = {}

    def _on_events(self) -> None:
        events = self._r.ch.drain()
        for tag, _kind, status, final, frames, _h1, _h2 in events:
            sink = self._pending.get(tag)
            if sink is None:
                continue
            if isinstance(sink, asyncio.Queue):
                sink.put_nowait((status, final, frames))
                if final:
                    del self._pending[tag]
            elif final:
                del self._pending[tag]
                if sink.done():
                    continue
                if status < 0:
                    sink.set_exception(_core.from_code(status, "request failed: " + _native.strerror(status)))
                else:
                    sink.set_result(frames)
        if events and self._r.loop is not None and not self._h.closed:
            # The tasks woken above run next, and often send again: holding
            # now puts the release behind them in the same loop turn.
            self._batch.hold(self._r.loop)

    def _send(self, sink: Any, service: Union[str, bytes], frames: tuple, timeout: Optional[float],
              retries: Optional[int], deadline: Optional[float]) -> int:
        if self._h.closed:
            raise Disconnected("the client is closed")
        loop = self._r.attach(self._on_events)
        svc = _core.service_bytes(service)
        body = _core.check_frames(frames)
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise _core.InvalidArgument("retries must be an int >= 0")
        tm = _core.seconds_to_ms(timeout, "timeout")
        dl = _core.seconds_to_ms(deadline, "deadline")
        tag = _core.next_tag()
        self._batch.hold(loop)
        self._h.request(self._r.ch, tag, svc, body, tm, -1 if retries is None else retries, dl)
        self._pending[tag] = sink
        return tag

    async def request(self, service: Union[str, bytes], *frames: bytes, timeout: Optional[float] = None,
                      retries: Optional[int] = None, deadline: Optional[float] = None) -> List[bytes]:
        """Sends a request; returns the FINAL's frames (PARTIALs skipped).
        Raises Timeout, Cancelled (client closed), InvalidArgument..."""
        fut = asyncio.get_running_loop().create_future()
        tag = self._send(fut, service, frames, timeout, retries, deadline)
        try:
            return await fut
        except asyncio.CancelledError:
            if self._pending.pop(tag, None) is not None:
                self._h.cancel(tag)
            raise

    async def stream(self, service: Union[str, bytes], *frames: bytes, timeout: Optional[float] = None,
                     retries: Optional[int] = None,
                     deadline: Optional[float] = None) -> AsyncIterator[List[bytes]]:
        """Yields each reply part (PARTIALs, then the FINAL).  Leaving the
        loop early (or cancelling) cancels the request."""
        q: asyncio.Queue = asyncio.Queue()
        tag = self._send(q, service, frames, timeout, retries, deadline)
        done = False
        try:
            while True:
                status, final, frames_ = await q.get()
                if final:
                    done = True
                if status < 0:
                    raise _core.from_code(status, "request failed: " + _native.strerror(status))
                yield frames_
                if final:
                    return
        finally:
            if not done and self._pending.pop(tag, None) is not None:
                self._h.cancel(tag)

    async def close(self) -> None:
        """Cancels the requests in flight (they raise Cancelled) and closes."""
        if self._h.closed:
            return
        self._batch.release()
        self._h.close()
        self._on_events()
        self._r.detach()

    @property
    def closed(self) -> bool:
        return bool(self._h.closed)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


Handler = Callable[[List[bytes]], Awaitable[Union[bytes, Sequence[bytes], None]]]


class Request:
    """A request being served: its frames, and PARTIAL replies."""

    __slots__ = ("frames", "_worker", "_h1", "_h2", "_done")

    def __init__(self, worker: "Worker", h1: int, h2: int, frames: List[bytes]) -> None:
        self.frames = frames
        self._worker = worker
        self._h1 = h1
        self._h2 = h2
        self._done = False

    def partial(self, *frames: bytes) -> None:
        """Sends a PARTIAL reply now (the FINAL is the handler's result)."""
        if self._done:
            raise _core.StateError("the request was already answered")
        self._worker._reply(self, _core.check_frames(frames), False)


class Worker:
    """Serves `service` with an ``async def handler(frames)`` whose result
    (bytes, or a list of frames) is the FINAL reply; up to `concurrency`
    requests are in progress at once.  A handler declared with a second
    parameter gets the :class:`Request` too, for ``request.partial(...)``.

    ``await worker.run()`` serves until :meth:`close`; or ``async with
    worker:`` serves in the background.  A handler that raises is logged
    and answered with an empty FINAL, so its slot is freed.  `brokers` may
    be a list (the worker group serves through all of them).
    """

    def __init__(self, brokers: _core.Brokers, service: Union[str, bytes], handler: Handler, *,
                 concurrency: int = 16, heartbeat_interval: float = 2.5, heartbeat_timeout: float = 10.0,
                 dialect: str = "rfc18", curve_server_key: Optional[str] = None,
                 curve_public_key: Optional[str] = None, curve_secret_key: Optional[str] = None) -> None:
        self.service = _core.service_bytes(service)
        if self.service.startswith(b"mmi."):
            raise _core.InvalidArgument("a worker cannot serve an mmi.* service")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 4096:
            raise _core.InvalidArgument("concurrency must be an int in 1..4096")
        if not callable(handler):
            raise TypeError("handler must be an async function")
        self._handler = handler
        try:
            self._with_request = len(inspect.signature(handler).parameters) >= 2
        except (TypeError, ValueError):
            self._with_request = False
        interval_ms = _core.seconds_to_ms(heartbeat_interval, "heartbeat_interval")
        timeout_ms = _core.seconds_to_ms(heartbeat_timeout, "heartbeat_timeout")
        self._r = _Reader()
        self._h = _native.worker_new(self._r.ch, _core.endpoints(brokers), self.service,
                                     _core.dialect(dialect), interval_ms,
                                     max(1, min(65535, -(-timeout_ms // interval_ms))), concurrency,
                                     *_core.keys(curve_server_key, curve_public_key, curve_secret_key))
        self._batch = _Batcher(self._h)
        self._tasks: set = set()
        self._closed: Optional[asyncio.Future] = None
        self._bg: Optional[asyncio.Task] = None

    def _on_events(self) -> None:
        loop = self._r.loop
        served = False
        for _tag, kind, _status, _final, frames, h1, h2 in self._r.ch.drain():
            if kind == _native.EV_REQUEST:
                req = Request(self, h1, h2, frames)
                t = loop.create_task(self._serve(req))  # type: ignore[union-attr]
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
                served = True
            elif kind == _native.EV_CLOSED and self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
        if served and not self._h.closed:
            # The handlers' first steps run next; those that answer at once
            # are held, and released together behind them in that turn.
            self._batch.hold(loop)  # type: ignore[arg-type]

    def _reply(self, req: Request, frames: List[bytes], final: bool) -> None:
        if self._h.closed:
            raise Disconnected("the worker is closed")
        if self._r.loop is not None:
            self._batch.hold(self._r.loop)
        self._h.reply(req._h1, req._h2, final, frames)
        if final:
            req._done = True

    async def _serve(self, req: Request) -> None:
        try:
            if self._with_request:
                result = await self._handler(req.frames, req)  # type: ignore[call-arg]
            else:
                result = await self._handler(req.frames)
            if result is None:
                frames: List[bytes] = []
            elif isinstance(result, (bytes, bytearray, memoryview)):
                frames = [bytes(result)]
            else:
                frames = _core.check_frames(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("handler for %r failed; answering with an empty FINAL", self.service)
            frames = []
        if not req._done and not self._h.closed:
            self._reply(req, frames, True)

    async def run(self) -> None:
        """Serves until :meth:`close` is called."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        self._r.attach(self._on_events)
        if self._h.closed:
            return
        await asyncio.shield(self._closed)

    async def close(self, wait_for_requests: bool = False) -> None:
        """Stops serving: sends DISCONNECT and closes.  With
        `wait_for_requests`, requests in progress are answered first."""
        if wait_for_requests and self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if not self._h.closed:
            self._batch.release()
            self._h.close(wait_for_requests)
        for t in list(self._tasks):
            t.cancel()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._r.detach()
        if self._bg is not None:
            await asyncio.gather(self._bg, return_exceptions=True)

    async def __aenter__(self) -> "Worker":
        self._bg = asyncio.ensure_future(self.run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
