"""Error cases: clear exceptions, never a crash or a hang."""
import threading
import time

import pytest

import libmdp
from libmdp import errors
from libmdp.majortomo import Client, Worker, error

from helpers import EchoWorker


def test_recv_timeout_then_late_reply_still_readable(broker_url):
    with EchoWorker(broker_url, "slow", delay=0.8), Client(broker_url) as client:
        client.send(b"slow", b"x")
        start = time.monotonic()
        with pytest.raises(error.Timeout):
            client.recv_part(timeout=0.2)
        assert time.monotonic() - start < 0.8
        # As in Majortomo: the request is still in progress; the reply can
        # still be read (or dropped with connect(reconnect=True)).
        assert client.recv_all_as_list(timeout=5) == [b"x"]


def test_recv_part_zero_timeout_polls(broker_url):
    with Client(broker_url) as client:
        client.send(b"nobody", b"x")
        with pytest.raises(error.Timeout):
            client.recv_part(timeout=0)


def test_errors_are_runtime_errors():
    assert issubclass(error.Error, RuntimeError)
    for cls in (error.ProtocolError, error.Disconnected, error.StateError, error.Timeout):
        assert issubclass(cls, error.Error)
    assert error.Timeout is libmdp.Timeout


def test_libmdp_client_timeout_and_retries(broker_url):
    with libmdp.Client(broker_url, timeout=0.2, retries=2) as c:
        start = time.monotonic()
        with pytest.raises(libmdp.Timeout):
            c.request("nobody", b"x")
        # three tries of 0.2 s each
        assert 0.55 <= time.monotonic() - start < 5


def test_broker_goes_away(make_broker):
    b = make_broker(["-i", "0.2", "-t", "0.6"])
    url = b.endpoint
    with EchoWorker(url, "echo", delay=1.0):
        with libmdp.Client(url, timeout=0.5, retries=0) as c, Client(url) as mc:
            assert c.request("echo", b"warm", timeout=5) == [b"warm"]
            mc.send(b"echo", b"a")
            got = {}

            def call():
                try:
                    got["r"] = c.request("echo", b"lost")
                except Exception as e:  # noqa: BLE001
                    got["e"] = e

            t = threading.Thread(target=call)
            t.start()
            time.sleep(0.2)
            b.stop()  # the broker goes away with the requests in flight
            t.join(10)
            assert isinstance(got.get("e"), libmdp.Timeout)
            with pytest.raises(error.Timeout):
                mc.recv_part(timeout=0.5)
            mc.connect(reconnect=True)
            mc.send(b"echo", b"b")
            with pytest.raises(error.Timeout):
                mc.recv_part(timeout=0.3)


def test_worker_serves_again_after_broker_restart(make_broker):
    b = make_broker(["-i", "0.2", "-t", "0.6"], name="restart")
    with EchoWorker(b.endpoint, "echo") as w:
        with libmdp.Client(b.endpoint, timeout=5) as c:
            assert c.request("echo", b"1") == [b"1"]
        b.stop()
        b.start()  # same endpoint: the worker notices the silence and registers again
        with libmdp.Client(b.endpoint, timeout=1, retries=10) as c:
            assert c.request("echo", b"2") == [b"2"]
        assert w.handled[-1] == [b"2"]


def test_closed_client(broker_url):
    c = Client(broker_url)
    with pytest.raises(error.Disconnected):
        c.send(b"echo", b"x")  # never connected
    c.connect()
    c.close()
    c.close()  # twice is fine
    with pytest.raises(error.Disconnected):
        c.send(b"echo", b"x")
    assert c.recv_part(timeout=0.1) is None

    lc = libmdp.Client(broker_url)
    lc.close()
    with pytest.raises(libmdp.Disconnected):
        lc.request("echo", b"x")


def test_close_while_another_thread_waits(broker_url):
    c = libmdp.Client(broker_url, timeout=30)
    got = {}

    def call():
        try:
            c.request("nobody", b"x")
        except Exception as e:  # noqa: BLE001
            got["e"] = e

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    c.close()
    t.join(10)
    assert isinstance(got.get("e"), libmdp.Cancelled)


def test_worker_close_from_another_thread_ends_wait(broker_url):
    w = Worker(broker_url, "echo", heartbeat_interval=0.2)
    w.connect()
    got = {}

    def wait():
        try:
            w.wait_for_request()
        except Exception as e:  # noqa: BLE001
            got["e"] = e

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    w.close()
    t.join(10)
    assert isinstance(got.get("e"), error.Disconnected)
    with pytest.raises(error.Disconnected):
        w.wait_for_request()


def test_bad_arguments(broker_url):
    with pytest.raises(errors.InvalidArgument):
        Client("not-an-endpoint")
    with pytest.raises(errors.InvalidArgument):
        Client(broker_url, dialect="nope")
    with pytest.raises(errors.InvalidArgument):
        Client(broker_url, curve_server_key="x" * 40)  # one key of three
    with pytest.raises(errors.InvalidArgument):
        Worker(broker_url, "")
    with pytest.raises(errors.InvalidArgument):
        Worker(broker_url, "mmi.service")
    with pytest.raises(errors.InvalidArgument):
        Worker(broker_url, "echo", heartbeat_interval=-1)
    with pytest.raises(errors.InvalidArgument):
        libmdp.Client(broker_url, retries=-1)
    with pytest.raises(errors.InvalidArgument):
        libmdp.Client(broker_url, curve_server_key="short", curve_public_key="short", curve_secret_key="short")
    with pytest.raises(errors.InvalidArgument):
        libmdp.Client("tcp://")  # libmdp refuses it when a request opens a socket
        # (or at once)
    with Client(broker_url) as c:
        with pytest.raises(errors.InvalidArgument):
            c.send(b"x" * 256, b"body")
        with pytest.raises(errors.InvalidArgument):
            c.send(b"echo")  # no body frame
        with pytest.raises(TypeError):
            c.send(b"echo", "text, not bytes")
        with pytest.raises(TypeError):
            c.send(12, b"x")
        with pytest.raises(errors.InvalidArgument):
            c.send(b"echo", b"x") or c.recv_part(timeout=-1)
    with libmdp.Client(broker_url) as lc:
        with pytest.raises(errors.InvalidArgument):
            lc.request("echo", b"x", timeout=0)
        with pytest.raises(TypeError):
            lc.request("echo", None)


def test_malformed_endpoint_fails_the_request_clearly():
    with libmdp.Client("tcp://no-such-host-name.invalid:1", timeout=0.3, retries=0) as c:
        with pytest.raises(libmdp.Error):
            c.request("echo", b"x")


def test_reply_without_request(broker_url):
    w = Worker(broker_url, "echo", heartbeat_interval=0.2)
    with w:
        with pytest.raises(error.StateError):
            w.send_reply_final(b"\0" * 16, [b"x"])
        with pytest.raises(error.StateError):
            w.send_reply_final("not bytes", [b"x"])
    with pytest.raises(error.Disconnected):
        w.send_reply_final(b"\0" * 16, [b"x"])


def test_reply_twice_is_a_state_error(broker_url):
    w = Worker(broker_url, "echo", heartbeat_interval=0.2)
    with w, Client(broker_url) as c:
        c.send(b"echo", b"x")
        cid, frames = w.wait_for_request()
        w.send_reply_final(cid, frames)
        with pytest.raises(error.StateError):
            w.send_reply_final(cid, frames)
        assert c.recv_all_as_list(timeout=5) == [b"x"]
