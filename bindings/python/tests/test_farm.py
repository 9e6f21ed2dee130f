"""Several brokers, CURVE keys, and dialects."""
import os
import time

import libmdp
from libmdp import aio
from libmdp.majortomo import Client, Worker, WorkerRequestsIterator

from helpers import EchoWorker


def test_client_spreads_and_worker_group_serves_two_brokers(make_broker):
    b1 = make_broker(["-i", "0.2", "-t", "0.6"])
    b2 = make_broker(["-i", "0.2", "-t", "0.6"])
    urls = [b1.endpoint, b2.endpoint]
    with EchoWorker(urls, "farm", concurrency=2) as w:
        with libmdp.Client(urls, timeout=2, retries=2) as c:
            for i in range(20):
                assert c.request("farm", b"%d" % i) == [b"%d" % i]
            b1.stop()  # one broker dies: requests go on through the other
            for i in range(20):
                assert c.request("farm", b"after%d" % i) == [b"after%d" % i]
        assert len(w.handled) == 40


def test_curve(make_broker, tmpdir_short):
    spub, ssec = libmdp.curve_keypair()
    cpub, csec = libmdp.curve_keypair()
    wpub, wsec = libmdp.curve_keypair()
    with open(os.path.join(tmpdir_short, "broker.secret"), "w") as f:
        f.write("public-key = %s\nsecret-key = %s\n" % (spub, ssec))
    os.chmod(os.path.join(tmpdir_short, "broker.secret"), 0o600)
    with open(os.path.join(tmpdir_short, "allow.txt"), "w") as f:
        f.write("public-key = %s\npublic-key = %s\n" % (cpub, wpub))
    b = make_broker(["-i", "0.2", "-t", "0.6", "--curve-secret-key", os.path.join(tmpdir_short, "broker.secret"),
                     "--curve-allow", os.path.join(tmpdir_short, "allow.txt")])
    with EchoWorker(b.endpoint, "secure", curve_server_key=spub, curve_public_key=wpub, curve_secret_key=wsec):
        with Client(b.endpoint, curve_server_key=spub, curve_public_key=cpub, curve_secret_key=csec) as c:
            c.send(b"secure", b"secret")
            assert c.recv_all_as_list(timeout=10) == [b"secret"]
        # a key the broker does not list: silence
        opub, osec = libmdp.curve_keypair()
        with libmdp.Client(b.endpoint, timeout=0.5, retries=0, curve_server_key=spub, curve_public_key=opub,
                           curve_secret_key=osec) as c:
            try:
                c.request("secure", b"x")
                raise AssertionError("an unlisted key was served")
            except libmdp.Timeout:
                pass
        # plaintext: silence as well
        with libmdp.Client(b.endpoint, timeout=0.5, retries=0) as c:
            try:
                c.request("secure", b"x")
                raise AssertionError("a plaintext client was served")
            except libmdp.Timeout:
                pass


def test_all_dialects_through_mdp_broker(broker_url):
    for d in ("rfc18", "majortomo", "mdp01"):
        with EchoWorker(broker_url, "d-" + d, dialect=d), Client(broker_url, dialect=d) as c:
            c.send(("d-" + d).encode(), b"x")
            assert c.recv_all_as_list(timeout=10) == [b"x"]


def test_mdp01_has_no_partials(broker_url):
    w = Worker(broker_url, "p01", dialect="mdp01")
    with w, Client(broker_url, dialect="mdp01") as c:
        c.send(b"p01", b"x")
        cid, frames = w.wait_for_request()
        try:
            w.send_reply_partial(cid, [b"p"])
            raise AssertionError("partial accepted")
        except libmdp.StateError:
            pass
        w.send_reply_final(cid, frames)
        assert c.recv_all_as_list(timeout=10) == [b"x"]
