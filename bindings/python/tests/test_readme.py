"""Every example of Majortomo's README (and its echo sample), as written,
with ``from libmdp.majortomo import Client`` in place of Majortomo's import."""
import logging
import signal
import threading
import time

import pytest

from libmdp import majortomo
from libmdp.majortomo import Client, Worker, WorkerRequestsIterator

from helpers import EchoWorker


def test_context_manager_example(broker_url):
    with EchoWorker(broker_url, "my-service"):
        # README: "Opening and closing client connections"
        with Client(broker_url=broker_url) as client:
            client.send(b'my-service', b'frame1', b'frame2')
            reply = client.recv_all_as_list(timeout=10.0)
        assert reply == [b'frame1', b'frame2']
        assert not client.is_connected()


def test_send_example_and_recv_part(broker_url):
    with EchoWorker(broker_url, "my-service", partials=2):
        client = Client(broker_url)
        client.connect()
        assert client.is_connected()
        service_name, frame1, frame2, frame3 = b'my-service', b'a', b'b', b'c'
        # README: "Sending Requests & Receiving Replies"
        client.send(service_name, frame1, frame2, frame3)
        parts = []
        while True:
            part = client.recv_part(timeout=10.0)
            if part is None:  # "If no more parts are available ... will return None"
                break
            parts.append(part)
        assert parts == [[b'part0'], [b'part1'], [b'a', b'b', b'c']]
        client.close()


def test_recv_all_example(broker_url):
    got = []

    def do_something_with_reply_part(part):
        got.append(part)

    with EchoWorker(broker_url, "my-service", partials=3), Client(broker_url) as client:
        client.send(b'my-service', b'x')
        # README: recv_all
        for part in client.recv_all(timeout=5.0):
            do_something_with_reply_part(part)
    assert got == [[b'part0'], [b'part1'], [b'part2'], [b'x']]


def test_recv_all_timeout_is_between_parts(broker_url):
    """The README: recv_all's timeout is between reply chunks, not for the
    whole reply: 4 parts 0.3 s apart arrive with timeout=0.6."""
    w = Worker(broker_url, "chunks", heartbeat_interval=0.2, heartbeat_timeout=0.6)
    it = WorkerRequestsIterator(w)

    def serve():
        for req in it:
            for i in range(3):
                time.sleep(0.3)
                it.send_reply_partial([b"%d" % i])
            time.sleep(0.3)
            it.send_reply_final([b"end"])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with Client(broker_url) as client:
            client.send(b"chunks", b"go")
            start = time.monotonic()
            parts = list(client.recv_all(timeout=0.6 * 3))
            assert parts == [[b"0"], [b"1"], [b"2"], [b"end"]]
            assert time.monotonic() - start >= 1.1
    finally:
        it.stop()
        t.join(10)


def test_recv_all_as_list_flattens(broker_url):
    with EchoWorker(broker_url, "my-service", partials=2), Client(broker_url) as client:
        client.send(b'my-service', b'frame1', b'frame2')
        assert client.recv_all_as_list(timeout=10.0) == [b'part0', b'part1', b'frame1', b'frame2']


def test_timeout_retry_example_context_manager(broker_url, caplog):
    """README "Timeouts & Retrying", first form: the first attempt times out
    (no worker yet), the loop reconnects and the second attempt succeeds."""
    worker = EchoWorker(broker_url, "my-service")
    attempts = 0
    with caplog.at_level(logging.WARNING):
        while True:
            with Client(broker_url=broker_url) as client:
                try:
                    attempts += 1
                    if attempts == 2:
                        worker.__enter__()
                    client.send(b'my-service', b'frame1', b'frame2')
                    reply = client.recv_all_as_list(timeout=1.0)
                    break
                except majortomo.error.Timeout:
                    logging.warning("Timed out waiting for a reply from broker, reconnecting")
                    time.sleep(0.2)
                    continue
    worker.__exit__()
    assert reply == [b'frame1', b'frame2']
    assert attempts >= 2
    assert "reconnecting" in caplog.text


def test_timeout_retry_example_outer_client(broker_url):
    """README "Timeouts & Retrying", second form: connect(reconnect=True)."""
    worker = EchoWorker(broker_url, "my-service")
    client = Client(broker_url=broker_url)
    client.connect()
    attempts = 0
    # Here `client` is passed from an outer scope
    while True:
        try:
            attempts += 1
            if attempts == 2:
                worker.__enter__()
            client.send(b'my-service', b'frame1', b'frame2')
            reply = client.recv_all_as_list(timeout=1.0)
            break
        except majortomo.error.Timeout:
            logging.warning("Timed out waiting for a reply from broker, reconnecting")
            time.sleep(0.2)
            client.connect(reconnect=True)
            continue
    worker.__exit__()
    client.close()
    assert reply == [b'frame1', b'frame2'] and attempts >= 2


def test_second_send_without_reading_is_a_state_error(broker_url):
    with Client(broker_url) as client:
        client.send(b'my-service', b'x')
        with pytest.raises(majortomo.error.StateError):
            client.send(b'my-service', b'y')


def test_echo_sample_worker_and_client(broker_url):
    """Majortomo's echo sample (majortomo.echo): a Worker stopped by a
    signal handler that closes it, and a client that repeats a message."""
    worker = Worker(broker_url=broker_url, service_name='mdp-echo', heartbeat_interval=0.2)
    stopped = threading.Event()
    served = []

    def run_worker():
        worker_iter = WorkerRequestsIterator(worker)
        for request in worker_iter:
            served.append(request)
            worker_iter.send_reply_final(request)
        stopped.set()

    t = threading.Thread(target=run_worker, daemon=True)
    t.start()

    def sig_handler(*_):
        worker.close()

    old = signal.signal(signal.SIGUSR1, sig_handler)
    try:
        message = 'echo'.encode('utf8')
        with Client(broker_url) as client:
            for _ in range(3):
                client.send('mdp-echo'.encode('ascii'), message)
                response = client.recv_all_as_list(timeout=10)
                assert response == [message]
        # The handler runs in the main thread and closes the worker, whose
        # iterator (on its own thread) then ends.
        signal.raise_signal(signal.SIGUSR1)
        assert stopped.wait(10)
    finally:
        signal.signal(signal.SIGUSR1, old)
    t.join(10)
    assert len(served) == 3


def test_stop_on_signal_ends_iteration_in_main_thread(broker_url):
    """WorkerRequestsIterator.stop_on_signal(): a signal arriving while the
    main thread waits for a request stops the iteration."""
    worker = Worker(broker_url, "sig", heartbeat_interval=0.2)
    it = WorkerRequestsIterator(worker)
    old = signal.getsignal(signal.SIGUSR2)
    it.stop_on_signal((signal.SIGUSR2,))
    timer = threading.Timer(0.5, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2))
    timer.start()
    try:
        start = time.monotonic()
        assert list(it) == []
        assert time.monotonic() - start < 5
    finally:
        signal.signal(signal.SIGUSR2, old)
        timer.cancel()
    assert not worker.is_connected()
