"""Many threads share one libmdp.Client; the GIL is released while waiting."""
import threading
import time

import libmdp

from helpers import EchoWorker


def test_many_threads_share_a_client(broker_url):
    with EchoWorker(broker_url, "echo") as w1, EchoWorker(broker_url, "echo") as w2:
        errors = []
        with libmdp.Client(broker_url, timeout=10) as c:
            def run(n):
                try:
                    for i in range(50):
                        body = b"%d-%d" % (n, i)
                        assert c.request("echo", body, b"tail") == [body, b"tail"]
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(n,)) for n in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert not errors, errors[:3]
        assert len(w1.handled) + len(w2.handled) == 16 * 50


def test_gil_released_while_waiting(broker_url):
    """A thread blocked in request() does not stop others from running."""
    with EchoWorker(broker_url, "slow", delay=1.0), libmdp.Client(broker_url, timeout=5) as c:
        t = threading.Thread(target=c.request, args=("slow", b"x"))
        t.start()
        count = 0
        start = time.monotonic()
        while t.is_alive() and time.monotonic() - start < 5:
            count += 1
        t.join()
        assert count > 10000  # the main thread kept running Python code


def test_stream_and_early_close(broker_url):
    with EchoWorker(broker_url, "parts", partials=3), libmdp.Client(broker_url, timeout=5) as c:
        assert list(c.stream("parts", b"x")) == [[b"part0"], [b"part1"], [b"part2"], [b"x"]]
        it = c.stream("parts", b"y")
        assert next(it) == [b"part0"]
        it.close()  # cancels the rest
        assert c.request("parts", b"z") == [b"z"]
