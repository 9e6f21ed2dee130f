"""A handler slower than the broker's liveness window is answered exactly
once: libmdp's loop thread keeps heartbeating while Python works."""
import time

import libmdp
from libmdp.majortomo import Client

from helpers import EchoWorker


def test_slow_handler_answered_once(broker_url):
    # broker: heartbeat 0.2 s x 3 = 0.6 s liveness; handler: 2 s, and
    # worker heartbeats of 0.2 s.  An RFC 18 worker silent while busy would
    # be expelled after 0.6 s and the request sent to the second worker.
    with EchoWorker(broker_url, "slow", delay=2.0) as w1, EchoWorker(broker_url, "slow", delay=2.0) as w2:
        time.sleep(0.3)
        with Client(broker_url) as c:
            c.send(b"slow", b"once")
            start = time.monotonic()
            assert c.recv_all_as_list(timeout=10) == [b"once"]
            assert time.monotonic() - start >= 1.9
            # nothing more arrives: the reply came once
            assert c.recv_part(timeout=0.5) is None
        assert len(w1.handled) + len(w2.handled) == 1
        # and the worker that handled it is still registered and serving
        with libmdp.Client(broker_url, timeout=5, retries=0) as lc:
            for i in range(4):
                assert lc.request("slow", b"%d" % i, timeout=5) == [b"%d" % i]
        assert len(w1.handled) + len(w2.handled) == 5


def test_slow_handler_majortomo_dialect(broker_url):
    """The same in Majortomo's dialect (what Majortomo's own worker speaks)."""
    with EchoWorker(broker_url, "slowm", delay=1.5, dialect="majortomo") as w, \
            Client(broker_url, dialect="majortomo") as c:
        c.send(b"slowm", b"x")
        assert c.recv_all_as_list(timeout=10) == [b"x"]
        assert len(w.handled) == 1
