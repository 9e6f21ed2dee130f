"""Interop with the C tools: mdp-request to a Python worker, a Python client
to mdp-worker."""
import subprocess
import time

import libmdp
from libmdp.majortomo import Client

from conftest import tool, wait_for
from helpers import EchoWorker


def test_mdp_request_to_python_worker(broker_url):
    with EchoWorker(broker_url, "pyecho", partials=1):
        out = subprocess.run([tool("mdp-request"), "-b", broker_url, "-t", "5", "pyecho", "hello", "world"],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert b"hello" in out.stdout and b"world" in out.stdout and b"part0" in out.stdout


def test_mdp_request_load_to_python_workers(broker_url):
    with EchoWorker(broker_url, "pyecho") as w1, EchoWorker(broker_url, "pyecho") as w2:
        out = subprocess.run([tool("mdp-request"), "-b", broker_url, "-t", "5", "-n", "200", "-c", "8",
                              "pyecho", "x"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert len(w1.handled) + len(w2.handled) == 200


def test_python_client_to_mdp_worker(broker_url):
    proc = subprocess.Popen([tool("mdp-worker"), "-b", broker_url, "-i", "0.2", "-c", "4", "--echo", "cecho"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(broker_url) as c:
            c.send(b"cecho", b"from", b"python")
            assert c.recv_all_as_list(timeout=10) == [b"from", b"python"]
        with libmdp.Client(broker_url, timeout=5) as lc:
            assert lc.request("cecho", b"again") == [b"again"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_python_client_to_mdp_worker_majortomo_dialect(broker_url):
    proc = subprocess.Popen([tool("mdp-worker"), "-b", broker_url, "-i", "0.2", "-d", "majortomo", "--echo",
                             "mecho"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(broker_url, dialect="majortomo") as c:
            c.send(b"mecho", b"x")
            assert c.recv_all_as_list(timeout=10) == [b"x"]
    finally:
        proc.terminate()
        proc.wait(10)
