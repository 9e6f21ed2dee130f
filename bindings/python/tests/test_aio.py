"""libmdp.aio: many requests in flight on one client, streams, cancellation,
timeouts, and a Worker with many requests in progress."""
import asyncio
import threading
import time

import pytest

import libmdp
from libmdp import _native, aio

from conftest import tool
from helpers import EchoWorker


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_request_and_stream(broker_url):
    async def main():
        async def handler(frames, req):
            req.partial(b"p1")
            req.partial(b"p2")
            return frames

        async with aio.Worker(broker_url, "echo", handler, heartbeat_interval=0.2):
            async with aio.Client(broker_url, timeout=5) as c:
                assert await c.request("echo", b"a", b"b") == [b"a", b"b"]
                parts = [p async for p in c.stream("echo", b"s")]
                assert parts == [[b"p1"], [b"p2"], [b"s"]]

    run(main())


def test_many_in_flight_and_worker_concurrency(broker_url):
    async def main():
        in_progress = 0
        peak = 0
        gate = asyncio.Event()

        async def handler(frames):
            nonlocal in_progress, peak
            in_progress += 1
            peak = max(peak, in_progress)
            if peak >= 20:
                gate.set()
            await asyncio.wait_for(gate.wait(), 10)
            in_progress -= 1
            return [b"r"] + frames

        async with aio.Worker(broker_url, "many", handler, concurrency=20, heartbeat_interval=0.2):
            async with aio.Client(broker_url, timeout=10) as c:
                replies = await asyncio.gather(*[c.request("many", b"%d" % i) for i in range(100)])
        assert replies == [[b"r", b"%d" % i] for i in range(100)]
        assert peak == 20  # 20 requests in progress at once in one worker

    run(main())


def test_cancellation(broker_url):
    async def main():
        started = asyncio.Event()

        async def handler(frames):
            started.set()
            await asyncio.sleep(1.0)
            return frames

        async with aio.Worker(broker_url, "slow", handler, heartbeat_interval=0.2):
            async with aio.Client(broker_url, timeout=5) as c:
                t = asyncio.ensure_future(c.request("slow", b"x"))
                await asyncio.wait_for(started.wait(), 10)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
                # wait_for's timeout cancels the same way
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.request("slow", b"y"), 0.2)
                # the client still works
                assert await c.request("slow", b"z") == [b"z"]

    run(main())


def test_timeout_and_closed(broker_url):
    async def main():
        c = aio.Client(broker_url, timeout=0.2, retries=0)
        with pytest.raises(libmdp.Timeout):
            await c.request("nobody", b"x")
        pending = asyncio.ensure_future(c.request("nobody", b"y", timeout=30))
        await asyncio.sleep(0.1)
        await c.close()
        with pytest.raises(libmdp.Cancelled):
            await pending
        with pytest.raises(libmdp.Disconnected):
            await c.request("echo", b"x")

    run(main())


def test_aio_client_with_sync_worker_and_threads(broker_url):
    """aio client against Majortomo-API workers; sync calls from other threads
    meanwhile (each object on its own thread)."""
    with EchoWorker(broker_url, "echo"), EchoWorker(broker_url, "echo"):
        results = []

        def sync_user():
            with libmdp.Client(broker_url, timeout=5) as sc:
                for i in range(20):
                    results.append(sc.request("echo", b"t%d" % i))

        t = threading.Thread(target=sync_user)
        t.start()

        async def main():
            async with aio.Client(broker_url, timeout=5) as c:
                return await asyncio.gather(*[c.request("echo", b"%d" % i) for i in range(50)])

        assert run(main()) == [[b"%d" % i] for i in range(50)]
        t.join(30)
        assert len(results) == 20


def test_handler_error_answers_empty_final(broker_url):
    async def main():
        async def handler(frames):
            if frames == [b"boom"]:
                raise ValueError("boom")
            return frames

        async with aio.Worker(broker_url, "err", handler, concurrency=1, heartbeat_interval=0.2):
            async with aio.Client(broker_url, timeout=5) as c:
                assert await c.request("err", b"boom") == [b""]
                assert await c.request("err", b"ok") == [b"ok"]

    run(main())


def test_aio_slow_handler_not_expelled(broker_url):
    async def main():
        calls = 0

        async def handler(frames):
            nonlocal calls
            calls += 1
            await asyncio.sleep(1.5)  # > the broker's 0.6 s liveness
            return frames

        async with aio.Worker(broker_url, "slow", handler, concurrency=1, heartbeat_interval=0.2):
            async with aio.Client(broker_url, timeout=5) as c:
                start = time.monotonic()
                assert await c.request("slow", b"x") == [b"x"]
                assert time.monotonic() - start >= 1.4
        assert calls == 1

    run(main())


def test_requests_of_one_loop_turn_reach_the_loop_thread_together(broker_url):
    # 50 requests started in one asyncio turn are handed to libmdp's loop
    # thread as one list (one wake-up), not one by one.
    async def main():
        async with aio.Client(broker_url, timeout=30) as c:
            posts0, cmds0 = _native.post_counts()
            tasks = [asyncio.ensure_future(c.request("nobody", b"%d" % i)) for i in range(50)]
            for _ in range(3):
                await asyncio.sleep(0)
            posts1, cmds1 = _native.post_counts()
            assert cmds1 - cmds0 == 50
            assert posts1 - posts0 == 1
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(main())


def test_close_sends_held_requests_first(broker_url):
    # A request held for the end of the turn is still handed over (and
    # then cancelled by close()), never left behind unanswered.
    async def main():
        c = aio.Client(broker_url, timeout=30)
        pending = asyncio.ensure_future(c.request("nobody", b"x"))
        await asyncio.sleep(0)  # its first step ran; the release is still queued
        assert c._batch.holding
        await c.close()
        with pytest.raises(libmdp.Cancelled):
            await pending

    run(main())


def test_replies_of_one_turn_reach_the_loop_thread_together(broker_url):
    # 20 handlers that finish in the same turn: their FINALs are handed
    # over together (the client is another process: mdp-request).
    counts = {}

    async def main():
        in_progress = 0
        gate = asyncio.Event()

        async def handler(frames):
            nonlocal in_progress
            in_progress += 1
            if in_progress == 20:
                counts["before"] = _native.post_counts()
                gate.set()
            await gate.wait()
            return frames

        async with aio.Worker(broker_url, "together", handler, concurrency=20, heartbeat_interval=0.2):
            proc = await asyncio.create_subprocess_exec(
                tool("mdp-request"), "-b", broker_url, "-n", "20", "-C", "20", "together", "x",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            counts["after"] = _native.post_counts()
            assert proc.returncode == 0, out
            assert b"20 ok" in out, out

    run(main())
    (p0, n0), (p1, n1) = counts["before"], counts["after"]
    assert n1 - n0 == 20  # the 20 FINALs
    assert p1 - p0 <= 2   # one hand-over (two if the last handler's turn released first)
