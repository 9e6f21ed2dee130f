"""Fixtures: real mdp-broker processes (and the C tools) from this tree.

MDP_TOOLS_DIR names the directory holding mdp-broker, mdp-worker and
mdp-request (scripts/test-python sets it to <build>/tools); otherwise they are
looked up in ../../build*/tools, then on PATH.
"""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
# Generous time bounds on a loaded machine (MDP_TEST_SLOW=N multiplies).
SLOW = float(os.environ.get("MDP_TEST_SLOW", "1"))


def tool(name):
    d = os.environ.get("MDP_TOOLS_DIR")
    cands = [os.path.join(d, name)] if d else []
    cands += sorted(glob.glob(os.path.join(TREE, "build*", "tools", name)))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    p = shutil.which(name)
    if p:
        return p
    pytest.skip("%s not found (set MDP_TOOLS_DIR)" % name)


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


class Broker:
    """An mdp-broker process on an ipc:// endpoint of its own."""

    def __init__(self, endpoint, args=()):
        self.endpoint = endpoint
        self.args = list(args)
        self.proc = None

    def start(self):
        path = self.endpoint[len("ipc://"):]
        if os.path.exists(path):
            os.unlink(path)
        self.proc = subprocess.Popen([tool("mdp-broker"), "-b", self.endpoint] + self.args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(path) or self.proc.poll() is not None, what="broker to bind")
        assert self.proc.poll() is None, "mdp-broker exited with %s" % self.proc.returncode
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def tmpdir_short():
    d = tempfile.mkdtemp(prefix="mdp-py-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_broker(tmpdir_short):
    made = []

    def make(args=(), name=None):
        b = Broker("ipc://%s/%s.ipc" % (tmpdir_short, name or "b%d" % len(made)), args)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def broker(make_broker):
    """A broker with short heartbeats (0.2 s x 3) so liveness shows quickly."""
    return make_broker(["-i", "0.2", "-t", "0.6"])


@pytest.fixture
def broker_url(broker):
    return broker.endpoint
