"""Processes forked after import (multiprocessing, as Majortomo's own system
tests do): per-process state starts afresh in the child."""
import multiprocessing
import os

import pytest

import libmdp
from libmdp.majortomo import Client, Worker, WorkerRequestsIterator

ctx = multiprocessing.get_context("fork")


def _serve(url, service, n):
    w = Worker(url, service, heartbeat_interval=0.2)
    it = WorkerRequestsIterator(w)
    count = 0
    for req in it:
        it.send_reply_final([b"pid", str(os.getpid()).encode()] + req)
        count += 1
        if count == n:
            it.stop()
    os._exit(0 if count == n else 3)


def _use_parent_object(client, q):
    try:
        client.request("echo", b"x")
        q.put("no error")
    except libmdp.StateError as e:
        q.put("StateError: %s" % e)
    except Exception as e:  # noqa: BLE001
        q.put("other: %r" % e)


def test_workers_in_forked_children(broker_url):
    # The parent uses libmdp first: its loop thread and context exist.
    with libmdp.Client(broker_url, timeout=0.2, retries=0) as c:
        with pytest.raises(libmdp.Timeout):
            c.request("nobody-here", b"warm")
    procs = [ctx.Process(target=_serve, args=(broker_url, "forked", 5)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        pids = set()
        with Client(broker_url) as c:
            for i in range(10):
                c.send(b"forked", b"%d" % i)
                reply = c.recv_all_as_list(timeout=10)
                assert reply[0] == b"pid" and reply[2] == b"%d" % i
                pids.add(int(reply[1]))
        assert pids == {p.pid for p in procs}
        for p in procs:
            p.join(10)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def test_object_from_parent_refused_in_child(broker_url):
    c = libmdp.Client(broker_url, timeout=1)
    q = ctx.Queue()
    p = ctx.Process(target=_use_parent_object, args=(c, q))
    p.start()
    p.join(20)
    assert q.get(timeout=5).startswith("StateError")
    c.close()
