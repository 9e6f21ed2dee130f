#!/usr/bin/env python3
"""Python benchmark: libmdp's binding beside Majortomo through one mdp-broker.

    python3 bench/python-bench.py [--duration S] [--builddir DIR] [--json FILE]

Scenarios, all in the same run, through the same mdp-broker (this tree's):
  baseline-1x1   1 Majortomo-style client process, 1 worker process
  libmdp-1x1     1 libmdp.majortomo.Client process, 1 libmdp.majortomo.Worker
  baseline-4x4   4 client processes, 4 worker processes (Majortomo-style)
  libmdp-4x4     the same with libmdp.majortomo
  aio-100x4      1 libmdp.aio.Client process, 100 requests in flight, against
                 4 worker processes of libmdp.aio.Worker (25 in progress each)
and, to show where the limit of aio-100x4 is on this machine (no Python in
the way on one side or both), with this tree's C tools:
  c-100x100      mdp-request -n -C 100 against 100 C echo workers
                 (mdp-bench --role libworker): the machine's own ceiling
                 for 100 requests in flight through this broker
  aio-100xc      the aio client against those 100 C workers
  c-100x4aio     mdp-request -C 100 against the 4 aio worker processes
Each client sends a 1-frame 16-byte body to an echo service; figures are
round trips per second over the measured window (after a warm-up).  Rounds
run every scenario in turn; the ratios are taken within each round and the
median of them is reported (the machine is shared: rounds move together).

The baseline: Majortomo's own Client and Worker if `import majortomo` works
(MAJORTOMO_PATH is added to sys.path); otherwise `mtlike`, a pyzmq client
and worker written for this benchmark that behave as Majortomo's do: one
request at a time, a new poller per receive, heartbeats only while waiting,
Majortomo's wire dialect.  The output says which one ran.
"""
import argparse
import asyncio
import glob
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
BODY = b"0123456789abcdef"

if os.environ.get("MAJORTOMO_PATH"):
    sys.path.insert(0, os.environ["MAJORTOMO_PATH"])


def baseline_impl():
    try:
        import majortomo  # noqa: F401
        return "majortomo"
    except ImportError:
        return "mtlike"


# --------------------------------------------------------------- mtlike

class MtLikeClient:
    """Majortomo's client behaviour, on pyzmq (Majortomo's dialect)."""

    def __init__(self, url):
        import zmq
        self.zmq = zmq
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(url)
        self.expect = False

    def send(self, service, *frames):
        if self.expect:
            raise RuntimeError("still expecting a reply")
        self.sock.send_multipart((b"", b"MDPC02", b"\x02", service) + frames)
        self.expect = True

    def recv_part(self, timeout=None):
        if not self.expect:
            return None
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        try:
            socks = dict(poller.poll(int(timeout * 1000) if timeout else None))
            if socks.get(self.sock) != self.zmq.POLLIN:
                raise TimeoutError
            msg = self.sock.recv_multipart()
            if len(msg) < 3 or msg.pop(0) != b"" or msg[0] != b"MDPC02" or msg[1] not in (b"\x03", b"\x04"):
                raise RuntimeError("protocol error")
            if msg[1] == b"\x04":
                self.expect = False
            return msg[2:]
        finally:
            poller.unregister(self.sock)

    def recv_all_as_list(self, timeout=None):
        out = []
        while True:
            p = self.recv_part(timeout)
            if p is None:
                return out
            out.extend(p)


class MtLikeWorker:
    """Majortomo's worker behaviour, on pyzmq: heartbeats only while it
    waits for a request (Majortomo's dialect)."""

    def __init__(self, url, service, interval=2.5, timeout=10.0):
        import zmq
        self.zmq = zmq
        self.url, self.service, self.interval, self.timeout = url, service, interval, timeout
        self.connect()

    def connect(self):
        zmq = self.zmq
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2500)
        self.sock.connect(self.url)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.last_sent = 0.0
        self._send(b"\x01", self.service)
        self.last_hb = time.time()

    def _send(self, cmd, *frames):
        self.sock.send_multipart((b"", b"MDPW02", cmd) + frames)
        self.last_sent = time.time()

    def wait_for_request(self):
        while True:
            if time.time() - self.last_sent >= self.interval:
                self._send(b"\x05")
            timeout = max(0, int((self.last_sent + self.interval - time.time()) * 1000))
            socks = dict(self.poller.poll(timeout))
            if socks.get(self.sock) != self.zmq.POLLIN:
                if time.time() - self.last_hb > self.timeout:
                    self.sock.close(0)
                    self.connect()
                continue
            msg = self.sock.recv_multipart()
            if len(msg) < 3 or msg.pop(0) != b"" or msg[0] != b"MDPW02":
                raise RuntimeError("protocol error")
            self.last_hb = time.time()
            cmd = msg[1]
            if cmd == b"\x05":
                continue
            if cmd == b"\x02":
                return msg[2], msg[4:]
            if cmd == b"\x06":
                self.sock.close(0)
                self.connect()

    def send_reply_final(self, client, frames):
        self._send(b"\x04", client, b"", *frames)


def make_baseline_client(url):
    if baseline_impl() == "majortomo":
        from majortomo import Client
        c = Client(url)
        c.connect()
        return c
    return MtLikeClient(url)


def make_baseline_worker(url):
    if baseline_impl() == "majortomo":
        from majortomo import Worker
        w = Worker(url, "echo")
        w.connect()
        return w
    return MtLikeWorker(url, b"echo")


# ---------------------------------------------------------------- roles

def role_worker(kind, url, conc):
    if kind == "aio":
        from libmdp import aio

        async def handler(frames):
            return frames

        async def main():
            w = aio.Worker(url, "echo", handler, concurrency=int(conc))
            await w.run()
        asyncio.run(main())
        return
    if kind == "libmdp":
        from libmdp.majortomo import Worker
        w = Worker(url, "echo")
        w.connect()
    else:
        w = make_baseline_worker(url)
    print("ready", flush=True)
    while True:
        client, frames = w.wait_for_request()
        w.send_reply_final(client, frames)


def role_client(kind, url, warmup, duration, inflight):
    warmup, duration, inflight = float(warmup), float(duration), int(inflight)
    if kind == "aio":
        from libmdp import aio

        async def main():
            c = aio.Client(url, timeout=30, max_sockets=max(64, inflight))
            count = 0
            measuring = False
            stop = False

            async def loop():
                nonlocal count
                while not stop:
                    assert await c.request("echo", BODY) == [BODY]
                    if measuring:
                        count += 1

            tasks = [asyncio.ensure_future(loop()) for _ in range(inflight)]
            await asyncio.sleep(warmup)
            measuring = True
            t0 = time.monotonic()
            await asyncio.sleep(duration)
            measuring = False
            elapsed = time.monotonic() - t0
            stop = True
            await asyncio.gather(*tasks)
            await c.close()
            return count, elapsed
        count, elapsed = asyncio.run(main())
    else:
        if kind == "libmdp":
            from libmdp.majortomo import Client
            c = Client(url)
            c.connect()
        else:
            c = make_baseline_client(url)
        end_warm = time.monotonic() + warmup
        while time.monotonic() < end_warm:
            c.send(b"echo", BODY)
            c.recv_all_as_list(timeout=30)
        count = 0
        t0 = time.monotonic()
        end = t0 + duration
        while True:
            c.send(b"echo", BODY)
            assert c.recv_all_as_list(timeout=30) == [BODY]
            count += 1
            if count % 16 == 0 and time.monotonic() >= end:
                break
        elapsed = time.monotonic() - t0
    print(json.dumps({"count": count, "elapsed": elapsed}), flush=True)


# ------------------------------------------------------------- scenarios

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def c_load(tools, url, inflight, duration, rate_guess=15000):
    """mdp-request's load mode: a warm-up, then about `duration` seconds of
    requests; its own rate line ("N/s") is the figure."""
    req = os.path.join(tools, "mdp-request")
    subprocess.run([req, "-b", url, "-n", "2000", "-C", str(inflight), "echo", BODY.decode()],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True)
    out = subprocess.run([req, "-b", url, "-n", str(int(rate_guess * duration)), "-C", str(inflight),
                          "echo", BODY.decode()], capture_output=True, timeout=duration * 20 + 120,
                         check=True).stdout.decode()
    # "N requests: N ok, 0 failed, R/s, p50 ..."
    for field in out.replace(",", " ").split():
        if field.endswith("/s"):
            return float(field[:-2])
    raise RuntimeError("mdp-request printed no rate: %r" % out)


def run_scenario(name, py, broker_bin, kind_c, kind_w, n_clients, n_workers, inflight, conc, duration):
    url = "tcp://127.0.0.1:%d" % free_port()
    tools = os.path.dirname(broker_bin)
    broker = subprocess.Popen([broker_bin, "-b", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    me = os.path.abspath(__file__)
    if kind_w == "c":
        workers = [subprocess.Popen([os.path.join(tools, "mdp-bench"), "--role", "libworker", "endpoint=" + url,
                                     "workers=%d" % n_workers, "service=echo"], stdout=subprocess.DEVNULL)]
    else:
        workers = [subprocess.Popen([py, me, "--role", "worker", kind_w, url, str(conc)],
                                    stdout=subprocess.DEVNULL) for _ in range(n_workers)]
    time.sleep(1.0)
    warmup = 1.0
    total = 0.0
    if kind_c == "c":
        total = c_load(tools, url, inflight, duration)
    else:
        clients = [subprocess.Popen([py, me, "--role", "client", kind_c, url, str(warmup), str(duration),
                                     str(inflight)], stdout=subprocess.PIPE) for _ in range(n_clients)]
        for c in clients:
            out, _ = c.communicate(timeout=duration + 120)
            r = json.loads(out.decode().strip().splitlines()[-1])
            total += r["count"] / r["elapsed"]
    for w in workers:
        w.kill()
        w.wait()
    broker.terminate()
    broker.wait()
    print("%-14s %9.0f round trips/s" % (name, total), flush=True)
    return total


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        if sys.argv[2] == "worker":
            role_worker(*sys.argv[3:6])
        else:
            role_client(*sys.argv[3:9])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--builddir", default=None)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="comma-separated scenario names")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (each runs every scenario once); "
                    "the figures reported are the medians")
    a = ap.parse_args()
    if a.builddir:
        broker_bin = os.path.join(a.builddir, "tools", "mdp-broker")
    else:
        broker_bin = sorted(glob.glob(os.path.join(TREE, "build*", "tools", "mdp-broker")))[0]
    impl = baseline_impl()
    print("baseline: %s; broker: %s; python: %s; %d CPUs; duration %.1f s" % (
        impl if impl == "majortomo" else "mtlike (pyzmq, Majortomo's behaviour; majortomo not importable)",
        broker_bin, a.python, os.cpu_count(), a.duration), flush=True)
    scen = [
        ("baseline-1x1", "base", "base", 1, 1, 1, 1),
        ("libmdp-1x1", "libmdp", "libmdp", 1, 1, 1, 1),
        ("baseline-4x4", "base", "base", 4, 4, 1, 1),
        ("libmdp-4x4", "libmdp", "libmdp", 4, 4, 1, 1),
        ("aio-100x4", "aio", "aio", 1, 4, 100, int(os.environ.get("BENCH_AIO_CONC", "25"))),
        ("c-100x100", "c", "c", 1, 100, 100, 1),
        ("aio-100xc", "aio", "c", 1, 100, 100, 1),
        ("c-100x4aio", "c", "aio", 1, 4, 100, int(os.environ.get("BENCH_AIO_CONC", "25"))),
    ]
    ratios = [("libmdp-1x1", "baseline-1x1"), ("libmdp-4x4", "baseline-4x4"), ("aio-100x4", "baseline-4x4"),
              ("c-100x100", "baseline-4x4"), ("aio-100x4", "c-100x100"), ("aio-100xc", "c-100x100"),
              ("c-100x4aio", "c-100x100")]
    only = set(a.only.split(",")) if a.only else None
    runs = {}
    for rnd in range(a.repeat):
        if a.repeat > 1:
            print("-- round %d of %d (load average %s)" % (rnd + 1, a.repeat,
                                                       " ".join("%.2f" % x for x in os.getloadavg())), flush=True)
        for name, kc, kw, nc, nw, infl, conc in scen:
            if only and name not in only:
                continue
            runs.setdefault(name, []).append(
                run_scenario(name, a.python, broker_bin, kc, kw, nc, nw, infl, conc, a.duration))
    res = {name: median(v) for name, v in runs.items()}
    if a.repeat > 1:
        print("-- medians of %d rounds" % a.repeat)
        for name, v in res.items():
            print("%-14s %9.0f round trips/s" % (name, v))
    rat = {}
    for num, den in ratios:
        if num in runs and den in runs:
            per_round = [x / y for x, y in zip(runs[num], runs[den])]
            rat["%s / %s" % (num, den)] = per_round
            print("%-28s = %.2f (median of the rounds' ratios: %s)" % (
                "%s / %s" % (num, den), median(per_round), ", ".join("%.2f" % r for r in per_round)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"baseline": impl, "results": res, "runs": runs, "ratios": rat}, f, indent=1)


if __name__ == "__main__":
    main()
