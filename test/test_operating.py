#!/usr/bin/env python3
"""mdp-broker as an operator runs it: systemd notifications (READY, WATCHDOG,
STOPPING) on a NOTIFY_SOCKET this test owns, JSON log lines, the shipped
config file, and the shipped unit checked by systemd-analyze.  TAP.

Environment (from test/meson.build): MDP_BUILD_DIR, MDP_SOURCE_DIR,
MDP_HAVE_SYSTEMD (1 if mdp-broker was built with libsystemd), MDP_TEST_SLOW
(a multiplier for every time bound)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("MDP_BUILD_DIR", "build")
SOURCE = os.environ.get("MDP_SOURCE_DIR",
                        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = os.path.join(BUILD, "tools", "mdp-broker")
HAVE_SYSTEMD = os.environ.get("MDP_HAVE_SYSTEMD") == "1"
SLOW = float(os.environ.get("MDP_TEST_SLOW", "1") or 1)

results = []  # (ok, name, directive)


def bound(seconds):
    return seconds * SLOW


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, seconds, step=0.005):
    """Polls cond() until it is true or the (slow-scaled) time is up."""
    deadline = time.monotonic() + bound(seconds)
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


class Broker:
    """mdp-broker as a child process, its stderr in a file."""

    def __init__(self, args, env=None, tmp=None, wrap_pid=False):
        self.tmp = tmp or tempfile.mkdtemp(prefix="mdp-ops-")
        self.err_path = os.path.join(self.tmp, "stderr")
        e = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            e.pop(k, None)
        e.update(env or {})
        argv = [BROKER] + list(args)
        if wrap_pid:
            # WATCHDOG_PID must name the broker's own pid before it starts:
            # the shell's pid, which exec hands on to the broker.
            argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"',
                    "sh"] + argv
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, env=e, stdout=subprocess.DEVNULL,
                                         stderr=err)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read()

    def wait(self, seconds=10):
        try:
            return self.proc.wait(timeout=bound(seconds))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class NotifySocket:
    """The service manager's end: an AF_UNIX datagram socket."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.log = []  # (monotonic time, message)

    def recv(self, seconds):
        """The next message, or None after `seconds` (scaled)."""
        self.sock.settimeout(bound(seconds))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        msg = data.decode("utf-8", "replace")
        self.log.append((time.monotonic(), msg))
        return msg

    def recv_until(self, pred, seconds):
        deadline = time.monotonic() + bound(seconds)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return None
            msg = data.decode("utf-8", "replace")
            self.log.append((time.monotonic(), msg))
            if pred(msg):
                return msg

    def close(self):
        self.sock.close()


def lines_of(msg):
    return msg.split("\n")


def test(name, skip=None):
    def deco(fn):
        if skip:
            results.append((True, name, "# SKIP " + skip))
            print("ok %d - %s # SKIP %s" % (len(results), name, skip), flush=True)
            return fn
        problems = []
        try:
            fn(problems)
        except Exception as e:  # a crash of the test is a failure
            problems.append("exception: %r" % (e,))
        ok = not problems
        results.append((ok, name, ""))
        print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name), flush=True)
        for p in problems:
            for line in str(p).splitlines():
                print("# " + line, flush=True)
        return fn
    return deco


def check(problems, cond, what):
    if not cond:
        problems.append(what)
    return cond


NO_SYSTEMD = None if HAVE_SYSTEMD else "built without libsystemd (-Dsystemd)"


@test("READY=1 only once every endpoint is bound; STOPPING=1 after SIGTERM",
      skip=NO_SYSTEMD)
def ready_and_stopping(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        ns = NotifySocket(tmp)
        port = free_port()
        ipc = os.path.join(tmp, "broker.sock")
        b = Broker(["-b", "tcp://127.0.0.1:%d" % port, "-b", "ipc://" + ipc],
                   env={"NOTIFY_SOCKET": ns.path}, tmp=tmp)
        ready = ns.recv_until(lambda m: "READY=1" in lines_of(m), 10)
        if check(problems, ready is not None, "no READY=1 arrived"):
            # At READY, both endpoints take connections and both are logged.
            err = b.stderr()
            check(problems, b"listening on tcp://127.0.0.1:%d" % port in err,
                  "READY=1 before the tcp endpoint was logged:\n" + err.decode())
            check(problems, ("listening on ipc://" + ipc).encode() in err,
                  "READY=1 before the ipc endpoint was logged:\n" + err.decode())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=bound(5)).close()
            except OSError as e:
                problems.append("tcp endpoint not connectable at READY: %s" % e)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
                    u.connect(ipc)
            except OSError as e:
                problems.append("ipc endpoint not connectable at READY: %s" % e)
            check(problems, any(l.startswith("STATUS=listening on 2 endpoints")
                                for l in lines_of(ready)), "no STATUS: %r" % ready)
        check(problems, not any("STOPPING=1" in m for _, m in ns.log),
              "STOPPING=1 before the signal")
        b.proc.send_signal(signal.SIGTERM)
        stopping = ns.recv_until(lambda m: "STOPPING=1" in lines_of(m), 10)
        check(problems, stopping is not None, "no STOPPING=1 after SIGTERM")
        rc = b.wait()
        check(problems, rc == 0, "exit %r: %s" % (rc, b.stderr().decode()))
        check(problems, not any("WATCHDOG=1" in m for _, m in ns.log),
              "WATCHDOG=1 without WATCHDOG_USEC: %r" % ns.log)
        b.kill()
        ns.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def watchdog_run(problems, wrap_pid, env_extra):
    """Runs the broker with a 200 ms watchdog; returns the messages' times."""
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        ns = NotifySocket(tmp)
        env = {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "200000"}
        env.update(env_extra)
        b = Broker(["-b", "tcp://127.0.0.1:%d" % free_port()], env=env, tmp=tmp,
                   wrap_pid=wrap_pid)
        check(problems, ns.recv_until(lambda m: "READY=1" in lines_of(m), 10),
              "no READY=1")
        times = []
        while len(times) < 5:
            m = ns.recv_until(lambda m: "WATCHDOG=1" in lines_of(m), 10)
            if m is None:
                break
            times.append(time.monotonic())
        b.proc.send_signal(signal.SIGTERM)
        rc = b.wait()
        check(problems, rc == 0, "exit %r: %s" % (rc, b.stderr().decode()))
        b.kill()
        ns.close()
        return times
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("WATCHDOG=1 repeatedly at half of WATCHDOG_USEC (WATCHDOG_PID the broker's)",
      skip=NO_SYSTEMD)
def watchdog_with_pid(problems):
    times = watchdog_run(problems, True, {})
    if check(problems, len(times) >= 5, "%d WATCHDOG=1 messages, 5 expected"
             % len(times)):
        # Every 100 ms: 5 messages span at least 4 intervals less jitter
        # (a lower bound only; a slow machine may take longer).
        check(problems, times[4] - times[0] >= 0.3,
              "5 WATCHDOG=1 within %.3f s: not from a 100 ms timer"
              % (times[4] - times[0]))


@test("WATCHDOG=1 repeatedly with WATCHDOG_PID unset", skip=NO_SYSTEMD)
def watchdog_without_pid(problems):
    times = watchdog_run(problems, False, {})
    check(problems, len(times) >= 5, "%d WATCHDOG=1 messages, 5 expected" % len(times))


@test("no WATCHDOG=1 when WATCHDOG_PID names another process", skip=NO_SYSTEMD)
def watchdog_other_pid(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        ns = NotifySocket(tmp)
        b = Broker(["-b", "tcp://127.0.0.1:%d" % free_port()],
                   env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "100000",
                        "WATCHDOG_PID": "1"}, tmp=tmp)
        check(problems, ns.recv_until(lambda m: "READY=1" in lines_of(m), 10),
              "no READY=1")
        # Ten 50 ms intervals without a ping (a negative check needs a wait).
        m = ns.recv_until(lambda m: "WATCHDOG=1" in lines_of(m), 0.5 / SLOW)
        check(problems, m is None, "WATCHDOG=1 for another process's watchdog")
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        b.kill()
        ns.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(problems, err):
    """Every line of `err` (bytes) as a JSON object with our keys."""
    objs = []
    for n, raw in enumerate(err.split(b"\n")[:-1], 1):
        try:
            o = json.loads(raw.decode("utf-8"))  # strict: valid UTF-8 only
        except (UnicodeDecodeError, ValueError) as e:
            problems.append("line %d is not JSON (%s): %r" % (n, e, raw))
            continue
        if not check(problems, isinstance(o, dict) and
                     set(o) == {"time", "level", "program", "message"},
                     "line %d: keys %r" % (n, o)):
            continue
        check(problems, RFC3339_MS.match(o["time"]) is not None,
              "line %d: time %r" % (n, o["time"]))
        check(problems, o["level"] in ("error", "warn", "info", "debug"),
              "line %d: level %r" % (n, o["level"]))
        check(problems, o["program"] == "mdp-broker", "line %d: program" % n)
        objs.append(o)
    check(problems, err.endswith(b"\n"), "the last line has no newline")
    return objs


@test("--log-format json: every stderr line a JSON object (time, level, program, message)")
def log_json_serving(problems):
    port = free_port()
    b = Broker(["--log-format", "json", "-v", "-b", "tcp://127.0.0.1:%d" % port,
                "--stats-interval", "0.05"])
    wait_for(lambda: b"stats: workers" in b.stderr(), 10)
    b.proc.send_signal(signal.SIGTERM)
    rc = b.wait()
    check(problems, rc == 0, "exit %r" % rc)
    objs = json_lines(problems, b.stderr())
    msgs = [o["message"] for o in objs]
    check(problems, "listening on tcp://127.0.0.1:%d" % port in msgs, "no listening line: %r" % msgs)
    check(problems, any(m.startswith("stats: workers 0") for m in msgs), "no stats line")
    check(problems, "SIGTERM received, stopping" in msgs, "no SIGTERM line")
    check(problems, msgs[-1:] == ["stopped"], "last line %r" % msgs[-1:])


@test("--log-format json escapes quotes, backslashes, control characters, invalid UTF-8")
def log_json_escaping(problems):
    # A malformed endpoint is logged (as an error) with the bytes given.
    bad = b'tcp://"q\\b\x01\x1f\t\x7f\xff\xc3(\xed\xa0\x80\xf0\x9f\x98\x80\xc3\xa9'
    b = Broker([b"--log-format", b"json", b"-b", bad])
    rc = b.wait()
    # (no port: refused by mdp_endpoint_check before libzmq, a usage error)
    check(problems, rc == 2, "exit %r, 2 expected" % rc)
    objs = json_lines(problems, b.stderr())
    errors = [o for o in objs if o["level"] == "error"]
    want = 'cannot bind to tcp://"q\\b\x01\x1f\t\x7f\ufffd\ufffd(\ufffd\ufffd\ufffd\U0001F600\u00e9: '
    # (the library logs the failure too, and the program once more)
    if check(problems, len(errors) >= 1, "error lines: %r" % objs):
        for e in errors:
            check(problems, e["message"].startswith(want),
                  "message %r\n   expected to start %r" % (e["message"], want))
    raw = b.stderr()
    check(problems, b"\\u0001" in raw and b'\\"q\\\\b' in raw and b"\\ufffd" in raw,
          "escapes as expected in %r" % raw)


@test("log-format in the config file; --log-format text is today's format; a bad one exits 2")
def log_format_config(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        conf = os.path.join(tmp, "c.conf")
        with open(conf, "w") as f:
            f.write("log-format = json\nbind = tcp://127.0.0.1:%d\n" % free_port())
        b = Broker(["-c", conf], tmp=tmp)
        wait_for(lambda: b"listening on" in b.stderr(), 10)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        objs = json_lines(problems, b.stderr())
        check(problems, any(o["message"].startswith("listening on") for o in objs),
              "no listening line")
        # The command line overrides the file.
        b = Broker(["-c", conf, "--log-format", "text"], tmp=tmp)
        wait_for(lambda: b"listening on" in b.stderr(), 10)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        first = b.stderr().split(b"\n")[0].decode()
        check(problems, re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mdp-broker info: libmdp ",
                                 first), "text line %r" % first)
        for args in (["--log-format", "xml"], ["--log-format", ""]):
            b = Broker(args, tmp=tmp)
            rc = b.wait()
            check(problems, rc == 2, "%r: exit %r" % (args, rc))
            check(problems, b"text or json expected" in b.stderr(), b.stderr().decode())
        with open(conf, "w") as f:
            f.write("log-format = yaml\n")
        b = Broker(["-c", conf], tmp=tmp)
        check(problems, b.wait() == 2, "bad log-format in a file")
        check(problems, (conf + ":1: invalid log-format").encode() in b.stderr(),
              b.stderr().decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SHIPPED_CONF = os.path.join(SOURCE, "dist", "mdp-broker.conf")


def start_stop_with_conf(problems, conf, extra=()):
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        b = Broker(["-c", conf, "-b", "tcp://127.0.0.1:%d" % port] + list(extra), tmp=tmp)
        up = wait_for(lambda: b"listening on" in b.stderr() or b.proc.poll() is not None, 10)
        check(problems, up and b.proc.poll() is None,
              "did not start: %s" % b.stderr().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=bound(5)).close()
        except OSError as e:
            problems.append("not serving on the -b port: %s" % e)
        b.proc.send_signal(signal.SIGTERM)
        rc = b.wait()
        check(problems, rc == 0, "exit %r: %s" % (rc, b.stderr().decode()))
        return b.stderr()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("the shipped dist/mdp-broker.conf runs the broker (-b overriding its bind)")
def shipped_conf(problems):
    start_stop_with_conf(problems, SHIPPED_CONF)


@test("every commented-out setting of dist/mdp-broker.conf is a valid key and value")
def shipped_conf_commented(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        keys = []
        out = []
        for line in open(SHIPPED_CONF):
            m = re.match(r"^#([a-z-]+) = (.*)$", line.rstrip("\n"))
            if m and m.group(1) not in ("bind", "curve-secret-key", "curve-allow"):
                keys.append(m.group(1))
                out.append("%s = %s\n" % (m.group(1), m.group(2)))
        check(problems, len(keys) >= 20, "only %d commented settings found" % len(keys))
        conf = os.path.join(tmp, "all.conf")
        with open(conf, "w") as f:
            f.writelines(out)
        err = start_stop_with_conf(problems, conf)
        check(problems, b"heartbeat 2.500 s x 4" in err, "defaults: %s" % err.decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unit_for_verify(tmp):
    """The built unit, its ExecStart pointed at the built broker and the
    shipped config (systemd-analyze verify checks that ExecStart exists, and
    the installed path does not exist before installing)."""
    with open(os.path.join(BUILD, "dist", "mdp-broker.service")) as f:
        text = f.read()
    exec_lines = re.findall(r"^ExecStart=(.*)$", text, re.M)
    path = os.path.join(tmp, "mdp-broker.service")
    new = re.sub(r"^ExecStart=.*$", "ExecStart=%s -c %s" % (
        os.path.abspath(BROKER), os.path.abspath(SHIPPED_CONF)), text, flags=re.M)
    with open(path, "w") as f:
        f.write(new)
    return path, exec_lines


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@test("systemd-analyze verify: the unit (ExecStart at the built broker) is clean",
      skip=None if SYSTEMD_ANALYZE else "no systemd-analyze (Debian package systemd)")
def unit_verify(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        path, exec_lines = unit_for_verify(tmp)
        check(problems, len(exec_lines) == 1 and
              re.match(r"^/\S*/mdp-broker -c /\S*/mdp-broker\.conf$", exec_lines[0]),
              "ExecStart= %r" % exec_lines)
        r = subprocess.run([SYSTEMD_ANALYZE, "verify", path], capture_output=True,
                           timeout=bound(60))
        check(problems, r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
              "systemd-analyze verify: exit %d\n%s%s" % (r.returncode, r.stdout.decode(),
                                                        r.stderr.decode()))
        # The same check catches a broken unit (the test can fail).
        with open(path, "a") as f:
            f.write("[Service]\nNoSuchSetting=1\n")
        r = subprocess.run([SYSTEMD_ANALYZE, "verify", path], capture_output=True,
                           timeout=bound(60))
        check(problems, b"NoSuchSetting" in r.stdout + r.stderr,
              "verify did not notice an unknown key")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("the unit: Type=notify, WatchdogSec, Restart=on-failure, hardened (systemd-analyze security)",
      skip=None if SYSTEMD_ANALYZE else "no systemd-analyze (Debian package systemd)")
def unit_hardening(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        path, _ = unit_for_verify(tmp)
        text = open(path).read()
        for want in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
                     "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     "NoNewPrivileges=yes",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                     "SystemCallFilter=@system-service", "RuntimeDirectory=mdp-broker"):
            check(problems, re.search("^" + re.escape(want), text, re.M), "no " + want)
        r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", path],
                           capture_output=True, timeout=bound(60))
        m = re.search(rb"Overall exposure level for mdp-broker.service: (\d+\.\d+)", r.stdout)
        if check(problems, m, "no exposure level: %s%s" % (r.stdout.decode(), r.stderr.decode())):
            # 1.5 today ("OK"); a unit without the hardening is 9.6 ("UNSAFE").
            check(problems, float(m.group(1)) <= 2.0, "exposure %s > 2.0" % m.group(1).decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


n = len(results)
failed = sum(1 for ok, _, _ in results if not ok)
print("1..%d" % n)
print("# %d passed, %d failed" % (n - failed, failed))
sys.exit(1 if failed else 0)
