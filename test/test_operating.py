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
        lines = [l for l in b.stderr().decode().split("\n") if l]
        stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mdp-broker [a-z]+: "
        for line in lines:
            check(problems, re.match(stamp, line), "text line %r" % line)
        check(problems, any(re.match(stamp + "libmdp ", l) for l in lines),
              "no 'libmdp ...' starting line in %r" % lines)
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
            if m and m.group(1) not in ("bind", "curve-secret-key", "curve-allow", "curve-acl",
                                        "log-file", "metrics"):
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


@test("dist/mdp-broker.conf lists every setting (each long option but the command-line-only ones)")
def shipped_conf_complete(problems):
    text = open(SHIPPED_CONF).read()
    listed = set(re.findall(r"^#?([a-z][a-z0-9-]*) = ", text, re.M))
    helptext = subprocess.run([BROKER, "--help"], capture_output=True).stdout.decode()
    options = set(re.findall(r"--([a-z][a-z0-9-]+)", helptext))
    # Aliases, and what a config file cannot hold.
    options -= {"bind-url", "busy-timeout", "config", "help", "version", "check-config"}
    missing = sorted(options - listed)
    check(problems, not missing, "not in dist/mdp-broker.conf: %s" % ", ".join(missing))


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
                     "ExecReload=/bin/kill -HUP $MAINPID",
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



WORKER = os.path.join(BUILD, "tools", "mdp-worker")
REQUEST = os.path.join(BUILD, "tools", "mdp-request")
KEYGEN = os.path.join(BUILD, "tools", "mdp-keygen")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def hup_and_wait(b, needle, seconds=10):
    """SIGHUP, then waits until `needle` (bytes) appears once more in the
    broker's stderr than before; True if it did."""
    before = b.stderr().count(needle)
    b.proc.send_signal(signal.SIGHUP)
    return wait_for(lambda: b.stderr().count(needle) > before or b.proc.poll() is not None,
                    seconds) and b.proc.poll() is None


@test("SIGHUP does not stop the broker: it reloads, logs it and goes on serving (issue 19 item 7)")
def sighup_keeps_running(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        port = free_port()
        conf = os.path.join(tmp, "b.conf")
        write(conf, "bind = tcp://127.0.0.1:%d\n" % port)
        b = Broker(["-c", conf], tmp=tmp)
        check(problems, wait_for(lambda: b"listening on" in b.stderr(), 10), "did not start")
        for i in range(3):
            check(problems, hup_and_wait(b, b"reloaded in"),
                  "no 'reloaded in' after SIGHUP %d (exit %r): %s"
                  % (i + 1, b.proc.poll(), b.stderr().decode()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=bound(5)).close()
        except OSError as e:
            problems.append("not serving after SIGHUP: %s" % e)
        m = re.search(rb"reloaded in (\d+\.\d+) ms", b.stderr())
        if m:
            print("# reload latency %s ms" % m.group(1).decode(), flush=True)
        b.proc.send_signal(signal.SIGTERM)
        rc = b.wait()
        check(problems, rc == 0, "exit %r after SIGTERM: %s" % (rc, b.stderr().decode()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("SIGHUP under systemd: RELOADING=1 (with MONOTONIC_USEC), then READY=1", skip=NO_SYSTEMD)
def sighup_notifies(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        ns = NotifySocket(tmp)
        b = Broker(["-b", "tcp://127.0.0.1:%d" % free_port()],
                   env={"NOTIFY_SOCKET": ns.path}, tmp=tmp)
        check(problems, ns.recv_until(lambda m: "READY=1" in lines_of(m), 10), "no READY=1")
        b.proc.send_signal(signal.SIGHUP)
        r = ns.recv_until(lambda m: "RELOADING=1" in lines_of(m), 10)
        if check(problems, r is not None, "no RELOADING=1"):
            check(problems, any(l.startswith("MONOTONIC_USEC=") for l in lines_of(r)),
                  "no MONOTONIC_USEC with RELOADING=1: %r" % r)
            check(problems, ns.recv_until(lambda m: "READY=1" in lines_of(m), 10) is not None,
                  "no READY=1 after the reload")
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        b.kill()
        ns.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("reload: log format and level change; a config with an error is refused whole (file:line)")
def reload_changes_and_refusals(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        port = free_port()
        conf = os.path.join(tmp, "b.conf")
        write(conf, "bind = tcp://127.0.0.1:%d\nlog-format = text\n" % port)
        b = Broker(["-c", conf], tmp=tmp)
        check(problems, wait_for(lambda: b"listening on" in b.stderr(), 10), "did not start")
        # An error on line 3: refused whole (the json of line 2 not taken).
        write(conf, "bind = tcp://127.0.0.1:%d\nlog-format = json\nmax-queue = lots\n" % port)
        check(problems, hup_and_wait(b, b"reload refused"), "no refusal: %s" % b.stderr().decode())
        err = b.stderr().decode()
        check(problems, (conf + ":3: invalid max-queue 'lots'") in err,
              "the refusal does not name file:line: %s" % err)
        check(problems, not err.rstrip("\n").split("\n")[-1].startswith("{"),
              "the format changed although the config was refused")
        # A good config: from the next line on, JSON.
        write(conf, "bind = tcp://127.0.0.1:%d\nlog-format = json\n" % port)
        check(problems, hup_and_wait(b, b"reloaded in"), "no reload")
        last = b.stderr().rstrip(b"\n").split(b"\n")[-1]
        try:
            o = json.loads(last)
            check(problems, o["message"].startswith("reloaded in"), "last line %r" % o)
        except ValueError:
            problems.append("not JSON after the reload: %r" % last)
        # -q through the file: the program's info lines stop.
        write(conf, "bind = tcp://127.0.0.1:%d\nlog-format = json\nquiet = true\n" % port)
        b.proc.send_signal(signal.SIGHUP)
        time.sleep(bound(0.3))
        write(conf, "bind = tcp://127.0.0.1:%d\nlog-format = json\nquiet = true\n"
              "max-queue = nope\n" % port)
        check(problems, hup_and_wait(b, b"reload refused"), "errors are still logged under -q")
        n_reloaded = b.stderr().count(b"reloaded in")
        check(problems, n_reloaded == 1, "%d 'reloaded in' lines: -q not applied" % n_reloaded)
        # What needs a restart is said so and left as it runs.
        write(conf, "bind = tcp://127.0.0.1:%d\nheartbeat-interval = 1\n" % free_port())
        check(problems, hup_and_wait(b, b"needs a restart"), "no restart warning")
        err = b.stderr().decode()
        check(problems, "reload: bind changed, which needs a restart" in err, err)
        check(problems, "heartbeat-interval/heartbeat-timeout/heartbeat-liveness changed" in err, err)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=bound(5)).close()
        except OSError as e:
            problems.append("the old endpoint is gone: %s" % e)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mmi_services(ep):
    r = subprocess.run([REQUEST, "-b", ep, "-t", str(bound(5)), "--mmi", "services"],
                       capture_output=True, timeout=bound(30))
    return r.returncode, r.stdout.decode(errors="replace")


@test("reload: a limit changes at run time (max-mmi-reply-bytes)")
def reload_limit(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    w = None
    try:
        ep = "tcp://127.0.0.1:%d" % free_port()
        conf = os.path.join(tmp, "b.conf")
        write(conf, "bind = %s\nmax-mmi-reply-bytes = 1\n" % ep)
        b = Broker(["-c", conf], tmp=tmp)
        check(problems, wait_for(lambda: b"listening on" in b.stderr(), 10), "did not start")
        w = subprocess.Popen([WORKER, "-b", ep, "--echo", "reload-echo"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_for(lambda: subprocess.run(
            [REQUEST, "-b", ep, "-t", "1", "--mmi", "service", "reload-echo"],
            capture_output=True).returncode == 0, 20, step=0.1)
        check(problems, ok, "the worker did not register")
        rc, out = mmi_services(ep)
        check(problems, "reload-echo" not in out, "listed under a 1-byte bound: %r" % out)
        write(conf, "bind = %s\nmax-mmi-reply-bytes = 65536\n" % ep)
        check(problems, hup_and_wait(b, b"reloaded in"), "no reload")
        rc, out = mmi_services(ep)
        check(problems, rc == 0 and "reload-echo" in out,
              "not listed after the reload raised the bound: %d %r" % (rc, out))
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
    finally:
        if w is not None:
            w.terminate()
            try:
                w.wait(timeout=bound(10))
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@test("--log-file: lines go to the file; SIGHUP reopens it after logrotate moved it")
def log_file_reopen(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        log = os.path.join(tmp, "broker.log")
        b = Broker(["-b", "tcp://127.0.0.1:%d" % free_port(), "--log-file", log,
                    "--log-format", "json"], tmp=tmp)
        check(problems, wait_for(lambda: os.path.exists(log) and
                                 b"listening on" in open(log, "rb").read(), 10),
              "nothing logged to the file")
        check(problems, b.stderr() == b"", "stderr not empty: %r" % b.stderr())
        os.rename(log, log + ".1")
        b.proc.send_signal(signal.SIGHUP)
        check(problems, wait_for(lambda: os.path.exists(log) and
                                 b"reloaded in" in open(log, "rb").read(), 10),
              "no new file after SIGHUP")
        old = open(log + ".1", "rb").read()
        check(problems, b"SIGHUP received" in old and b"reloaded in" not in old,
              "old file: %r" % old)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        for line in open(log, "rb").read().split(b"\n")[:-1]:
            try:
                json.loads(line)
            except ValueError:
                problems.append("not JSON in the log file: %r" % line)
        check(problems, b'"stopped"' in open(log, "rb").read(), "no 'stopped' in the new file")
        # A log file that cannot be opened: exit 2 at start, said why.
        b = Broker(["--log-file", os.path.join(tmp, "no", "such", "dir.log")], tmp=tmp)
        check(problems, b.wait() == 2, "unwritable --log-file not refused")
        check(problems, b"--log-file" in b.stderr(), b.stderr().decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("--check-config: 'configuration ok' exit 0 without binding; the first error with file:line, exit 2")
def check_config(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        port = free_port()
        conf = os.path.join(tmp, "b.conf")
        write(conf, "bind = tcp://127.0.0.1:%d\nmax-queue = 5\n" % port)
        # Hold the port: a check that bound would fail, and we would see it.
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                           timeout=bound(30))
        check(problems, r.returncode == 0 and r.stdout == b"configuration ok\n",
              "exit %d: %r %r" % (r.returncode, r.stdout, r.stderr))
        holder.close()
        check(problems, subprocess.run([BROKER, "--check-config", "-c", SHIPPED_CONF],
                                       capture_output=True, timeout=bound(30)).returncode == 0,
              "the shipped config does not pass --check-config")
        write(conf, "bind = tcp://127.0.0.1:%d\n\nmax-queue = -4\n" % port)
        r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                           timeout=bound(30))
        check(problems, r.returncode == 2, "exit %d" % r.returncode)
        check(problems, (conf + ":3: invalid max-queue").encode() in r.stderr, r.stderr.decode())
        check(problems, b"configuration ok" not in r.stdout, "said ok")
        # An allow-list file with a bad line: named with its line.
        allow = os.path.join(tmp, "allow.keys")
        write(allow, "# keys\nnot a key\n")
        kg = subprocess.run([KEYGEN, os.path.join(tmp, "broker")], capture_output=True)
        if check(problems, kg.returncode == 0, "mdp-keygen: %r" % kg.stderr):
            write(conf, "curve-secret-key = %s\ncurve-allow = %s\n"
                  % (os.path.join(tmp, "broker.secret"), allow))
            r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                               timeout=bound(30))
            check(problems, r.returncode == 2 and (allow + ":2:").encode() in r.stderr,
                  "exit %d: %s" % (r.returncode, r.stderr.decode()))
        # --check-config is for the command line only.
        write(conf, "check-config = true\n")
        r = subprocess.run([BROKER, "-c", conf], capture_output=True, timeout=bound(30))
        check(problems, r.returncode == 2 and b"unknown key 'check-config'" in r.stderr,
              r.stderr.decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("an out-of-range port in -b is refused with exit 2 and says so (issue 19 item 6)")
def bind_port_range(problems):
    for ep in ("tcp://127.0.0.1:99999", "tcp://127.0.0.1:70000", "tcp://127.0.0.1:-1",
               "tcp://*:65536"):
        r = subprocess.run([BROKER, "-b", ep], capture_output=True, timeout=bound(30))
        check(problems, r.returncode == 2, "%s: exit %d" % (ep, r.returncode))
        check(problems, ("'%s': the port is out of range" % ep).encode() in r.stderr,
              "%s: %s" % (ep, r.stderr.decode()))


@test("mdp-keygen --force refuses to write through a symbolic link or a hard link (issue 19 item 10)")
def keygen_no_links(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        victim = os.path.join(tmp, "victim")
        write(victim, "precious\n")
        os.chmod(victim, 0o644)
        base = os.path.join(tmp, "k")
        os.symlink(victim, base + ".secret")
        r = subprocess.run([KEYGEN, "--force", base], capture_output=True)
        check(problems, r.returncode == 73, "symlink: exit %d" % r.returncode)
        check(problems, b"symbolic link" in r.stderr, r.stderr.decode())
        check(problems, open(victim).read() == "precious\n", "the link's target was written")
        check(problems, os.stat(victim).st_mode & 0o777 == 0o644, "the target's mode changed")
        os.unlink(base + ".secret")
        os.link(victim, base + ".secret")
        r = subprocess.run([KEYGEN, "--force", base], capture_output=True)
        check(problems, r.returncode == 73, "hard link: exit %d" % r.returncode)
        check(problems, open(victim).read() == "precious\n", "the hard link's file was written")
        check(problems, os.stat(victim).st_mode & 0o777 == 0o644, "the target's mode changed")
        os.unlink(base + ".secret")
        # A symlink at NAME.pub too.
        os.symlink(victim, base + ".pub")
        r = subprocess.run([KEYGEN, "--force", base], capture_output=True)
        check(problems, r.returncode == 73, "pub symlink: exit %d" % r.returncode)
        check(problems, open(victim).read() == "precious\n", "the .pub link's target was written")
        os.unlink(base + ".pub")
        # Plain files are still overwritten with --force, with their modes.
        r1 = subprocess.run([KEYGEN, base], capture_output=True)
        os.chmod(base + ".secret", 0o666)
        r2 = subprocess.run([KEYGEN, "--force", base], capture_output=True)
        check(problems, r1.returncode == 0 and r2.returncode == 0 and r1.stdout != r2.stdout,
              "regular overwrite: %r %r" % (r1, r2))
        check(problems, os.stat(base + ".secret").st_mode & 0o777 == 0o600,
              "mode %o" % (os.stat(base + ".secret").st_mode & 0o777))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def keygen(directory, name):
    r = subprocess.run([KEYGEN, os.path.join(directory, name)], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("mdp-keygen %s: %r" % (name, r.stderr))


def curve_request(ep, keys, who, args, timeout=1.5):
    """mdp-request with `who`'s key pair; (exit status, stdout)."""
    r = subprocess.run([REQUEST, "-b", ep, "-t", str(timeout), "-r", "0",
                        "-S", os.path.join(keys, "broker.pub"),
                        "-K", os.path.join(keys, who + ".secret")] + args,
                       capture_output=True, timeout=bound(60))
    return r.returncode, r.stdout.decode(errors="replace")


def curve_worker(ep, keys, who, service):
    return subprocess.Popen([WORKER, "-b", ep, "-S", os.path.join(keys, "broker.pub"),
                             "-K", os.path.join(keys, who + ".secret"), "--echo", service],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_proc(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=bound(10))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@test("--curve-acl: per-service access by key name; mmi.service says 404 to a denied key; "
      "reloaded on SIGHUP with the allow-list")
def curve_acl(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    procs = []
    try:
        keys = os.path.join(tmp, "keys")
        allow = os.path.join(tmp, "allow")
        os.makedirs(keys)
        os.makedirs(allow)
        for who in ("broker", "client-1", "client-2", "worker-1", "worker-2"):
            keygen(keys, who)
            if who != "broker":
                shutil.copy(os.path.join(keys, who + ".pub"), allow)
        acl = os.path.join(tmp, "acl")
        write(acl, "# who may do what\n"
                   "echo    request client-1\n"
                   "echo    serve   worker-1   # one worker key\n"
                   "open.*  request *\n")
        ep = "tcp://127.0.0.1:%d" % free_port()
        conf = os.path.join(tmp, "b.conf")
        write(conf, "bind = %s\ncurve-secret-key = %s\ncurve-allow = %s\ncurve-acl = %s\n"
              "verbose = true\n" % (ep, os.path.join(keys, "broker.secret"), allow, acl))
        r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                           timeout=bound(30))
        check(problems, r.returncode == 0 and r.stdout == b"configuration ok\n",
              "check-config: %d %r" % (r.returncode, r.stderr))
        b = Broker(["-c", conf], tmp=tmp)
        check(problems, wait_for(lambda: b"listening on" in b.stderr() or
                                 b.proc.poll() is not None, 10),
              "did not start: %s" % b.stderr().decode())
        procs.append(curve_worker(ep, keys, "worker-1", "echo"))
        ok = wait_for(lambda: curve_request(ep, keys, "client-1",
                                            ["--mmi", "service", "echo"])[0] == 0, 20, step=0.2)
        check(problems, ok, "worker-1 not registered for echo: %s" % b.stderr().decode())
        rc, out = curve_request(ep, keys, "client-1", ["echo", "hi"])
        check(problems, rc == 0 and "hi" in out, "client-1 denied: %d %r" % (rc, out))
        rc, out = curve_request(ep, keys, "client-2", ["echo", "hi"])
        check(problems, rc == 75, "client-2 not denied: exit %d %r" % (rc, out))
        check(problems, b"request for 'echo' from key client-2 denied by the access list"
              in b.stderr(), "no denial line naming the key: %s" % b.stderr().decode())
        rc, out = curve_request(ep, keys, "client-2", ["--mmi", "service", "echo"])
        check(problems, rc == 1, "mmi.service for client-2: exit %d, 1 (404) expected" % rc)
        # A service no line names is open; a prefix line with *.
        procs.append(curve_worker(ep, keys, "worker-2", "other"))
        procs.append(curve_worker(ep, keys, "worker-2", "open.x"))
        for svc in ("other", "open.x"):
            ok = wait_for(lambda: curve_request(ep, keys, "client-2", [svc, "x"])[0] == 0, 20,
                          step=0.2)
            check(problems, ok, "client-2 cannot use the open service %s" % svc)
        # worker-2 may not serve echo: DISCONNECT, counted.
        procs.append(curve_worker(ep, keys, "worker-2", "echo"))
        check(problems, wait_for(lambda: b"READY for 'echo' from key worker-2 denied"
                                 in b.stderr(), 10), "worker-2's READY not denied")
        # Reload: client-2 allowed now; client-1's key removed from the allow-list.
        write(acl, "echo request client-1 client-2 ghost\necho serve worker-1\n")
        os.unlink(os.path.join(allow, "client-1.pub"))
        check(problems, hup_and_wait(b, b"reloaded in"), "no reload")
        check(problems, b"ghost has no key in the allow-list" in b.stderr(),
              "no warning about a name without a key")
        rc, out = curve_request(ep, keys, "client-2", ["echo", "hi"])
        check(problems, rc == 0 and "hi" in out, "client-2 still denied after the reload: %d" % rc)
        rc, out = curve_request(ep, keys, "client-1", ["echo", "hi"])
        check(problems, rc == 75, "client-1 (key removed) still served: exit %d" % rc)
        # --check-config warns about the name without a key, and exits 0.
        r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                           timeout=bound(30))
        check(problems, r.returncode == 0 and b"ghost has no key" in r.stderr,
              "check-config: %d %r" % (r.returncode, r.stderr))
        # A bad access list: refused at start (file:line, exit 2) and on reload.
        write(acl, "echo request client-1\necho fetch worker-1\n")
        check(problems, hup_and_wait(b, b"reload refused"), "bad list not refused on reload")
        check(problems, (acl + ":2: ROLE must be request or serve").encode() in b.stderr(),
              b.stderr().decode()[-600:])
        rc, out = curve_request(ep, keys, "client-2", ["echo", "hi"])
        check(problems, rc == 0, "the old list was not kept after a refused reload")
        r = subprocess.run([BROKER, "--check-config", "-c", conf], capture_output=True,
                           timeout=bound(30))
        check(problems, r.returncode == 2 and (acl + ":2:").encode() in r.stderr,
              "check-config on a bad list: %d %r" % (r.returncode, r.stderr))
        # A reload that takes echo from worker-1 (still connected and
        # registered): it is sent DISCONNECT at once, and its READY again
        # is refused, so echo has no worker; worker-2's open services stay.
        write(acl, "echo request client-1 client-2\necho serve client-2\n")
        check(problems, hup_and_wait(b, b"reloaded in"), "no reload")
        check(problems, b"reload: 1 worker no longer allowed by the access list or the "
              b"allow-list sent DISCONNECT" in b.stderr(),
              "worker-1 not revoked at reload: %s" % b.stderr().decode()[-800:])
        check(problems, b"leaves: no longer allowed by the access list" in b.stderr(),
              "no line for the revoked worker")
        ok = wait_for(lambda: curve_request(ep, keys, "client-2",
                                            ["--mmi", "service", "echo"])[0] == 1, 20, step=0.2)
        check(problems, ok, "echo still has a worker after worker-1 was revoked")
        rc, out = curve_request(ep, keys, "client-2", ["other", "x"])
        check(problems, rc == 0, "worker-2's open service lost at the reload: %d" % rc)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
        # Without CURVE the list means nothing: refused.
        r = subprocess.run([BROKER, "--curve-acl", acl], capture_output=True, timeout=bound(30))
        check(problems, r.returncode == 2 and b"needs CURVE" in r.stderr, r.stderr.decode())
    finally:
        for p in procs:
            stop_proc(p)
        shutil.rmtree(tmp, ignore_errors=True)



def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=bound(30), **kw)


@test("one option vocabulary: -V verbose, --version long, -c config (tools: -C), usage errors exit 2")
def option_vocabulary(problems):
    tools = {"mdp-broker": BROKER, "mdp-request": REQUEST, "mdp-worker": WORKER,
             "mdp-keygen": KEYGEN}
    for name, path in tools.items():
        r = run([path, "--no-such-option"])
        check(problems, r.returncode == 2, "%s: usage error exit %d, 2 expected"
              % (name, r.returncode))
        r = run([path, "--version"])
        check(problems, r.returncode == 0 and r.stdout.startswith(name.encode() + b" (libmdp) "),
              "%s --version: %d %r" % (name, r.returncode, r.stdout))
        h = run([path, "--help"]).stdout.decode()
        check(problems, not re.search(r"^\s*-V, --version", h, re.M),
              "%s: -V is still --version" % name)
        if name != "mdp-keygen":
            check(problems, re.search(r"-V\b.*--verbose", h) is not None,
                  "%s: -V is not --verbose in --help" % name)
    # -V is verbose, not the version: with it alone the tools want a service.
    for path in (REQUEST, WORKER):
        r = run([path, "-V"])
        check(problems, r.returncode == 2 and b"(libmdp)" not in r.stdout,
              "%s -V: %d %r" % (path, r.returncode, r.stdout))
    r = run([KEYGEN, "-V"])
    check(problems, r.returncode == 2, "mdp-keygen -V: %d" % r.returncode)
    # -C is concurrency in the tools; -c still works there, with a warning.
    for path in (REQUEST, WORKER):
        h = run([path, "--help"]).stdout.decode()
        check(problems, "-C, --concurrency N" in h, "%s: no -C" % path)
        r = run([path, "-c", "0", "svc"])
        check(problems, r.returncode == 2 and b"-c is deprecated, use -C" in r.stderr,
              "%s -c: %d %r" % (path, r.returncode, r.stderr))
        r = run([path, "-d", "nope", "svc"])
        check(problems, b"-d is deprecated, use --dialect" in r.stderr,
              "%s -d: %r" % (path, r.stderr))


@test("a bad broker endpoint is named in the tools' error; an out-of-range port exits 2")
def tool_endpoints(problems):
    for path, extra in ((REQUEST, ["svc"]), (WORKER, ["--echo", "svc"])):
        for ep in ("tcp://127.0.0.1:99999", "tcp://127.0.0.1:-1"):
            r = run([path, "-b", ep] + extra)
            check(problems, r.returncode == 2 and ("'%s'" % ep).encode() in r.stderr and
                  b"out of range" in r.stderr,
                  "%s -b %s: %d %r" % (path, ep, r.returncode, r.stderr))
    r = run([REQUEST, "-b", "bogus://x", "-t", "0.2", "svc"])
    check(problems, r.returncode != 0 and b"bogus://x" in r.stderr,
          "a malformed endpoint not named: %d %r" % (r.returncode, r.stderr))


@test("mdp-request exits 69 on a command service's error reply (two frames, 'error: ...')")
def request_error_reply(problems):
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    w = None
    try:
        ep = "tcp://127.0.0.1:%d" % free_port()
        b = Broker(["-b", ep], tmp=tmp)
        check(problems, wait_for(lambda: b"listening on" in b.stderr(), 10), "did not start")
        w = subprocess.Popen([WORKER, "-b", ep, "failing", "--", "sh", "-c", "echo partial; exit 3"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_for(lambda: run([REQUEST, "-b", ep, "-t", "1", "--mmi", "service",
                                   "failing"]).returncode == 0, 20, step=0.1)
        check(problems, ok, "the worker did not register")
        r = run([REQUEST, "-b", ep, "-t", str(bound(10)), "failing", "x"])
        check(problems, r.returncode == 69, "exit %d, 69 expected: %r" % (r.returncode, r.stdout))
        check(problems, b"error: exit status 3" in r.stdout, "not printed: %r" % r.stdout)
        b.proc.send_signal(signal.SIGTERM)
        check(problems, b.wait() == 0, "exit status")
    finally:
        if w is not None:
            stop_proc(w)
        shutil.rmtree(tmp, ignore_errors=True)



@test("scripts/run-broker builds every tool the quick start uses, then runs the broker")
def run_broker_script(problems):
    script = os.path.join(SOURCE, "scripts", "run-broker")
    env = dict(os.environ, MDP_BUILDDIR=os.path.abspath(BUILD))
    r = subprocess.run([script, "--version"], capture_output=True, env=env,
                       timeout=bound(300))
    check(problems, r.returncode == 0 and r.stdout.startswith(b"mdp-broker (libmdp) "),
          "exit %d: %r %r" % (r.returncode, r.stdout, r.stderr[-800:]))
    check(problems, b"mdp-broker, mdp-worker, mdp-request, mdp-keygen" in r.stderr,
          "does not say it built every tool: %r" % r.stderr[-800:])
    text = open(script).read()
    for t in ("tools/mdp-broker", "tools/mdp-worker", "tools/mdp-request", "tools/mdp-keygen"):
        check(problems, t in text, "scripts/run-broker does not build %s" % t)



@test("docs/api.md: a heading per public type; each option struct's fields with their defaults")
def api_reference_types(problems):
    api = open(os.path.join(SOURCE, "docs", "api.md")).read()
    headers = os.path.join(SOURCE, "include", "mdp")
    types = set()
    for h in os.listdir(headers):
        types |= set(re.findall(r"^\}\s*(mdp_[a-z0-9_]+_t);", open(os.path.join(headers, h)).read(),
                                re.M))
    for t in sorted(types):
        check(problems, ("### `%s` (type)" % t) in api, "no heading for %s" % t)
        if t.endswith("_options_t"):
            sec = api.split("### `%s` (type)" % t, 1)[-1].split("\n### ", 1)[0]
            check(problems, "| field | type | default | meaning |" in sec,
                  "%s: no table of fields with defaults" % t)
    check(problems, "`max_frames` | `size_t` | `1024`" in api, "max_frames's default not shown")
    for doc in ("operating.md", "abi.md", "api.md"):
        text = open(os.path.join(SOURCE, "docs", doc)).read()
        check(problems, not re.search(r"exports its internal", text),
              "docs/%s says the library exports its internals" % doc)



HELP2MAN = shutil.which("help2man")
MAN_SKIP = None if HELP2MAN or os.environ.get("CI") == "true" else \
    "no help2man (Debian package help2man)"


@test("man pages: NAME, SYNOPSIS (every form), OPTIONS, FILES, SIGNALS, EXIT STATUS, SEE ALSO; "
      "mdp-broker.conf(5)", skip=MAN_SKIP)
def man_pages(problems):
    if not check(problems, HELP2MAN is not None, "help2man missing in CI"):
        return
    tmp = tempfile.mkdtemp(prefix="mdp-ops-")
    try:
        names = dict(l.rstrip("\n").split(": ", 1)
                     for l in open(os.path.join(SOURCE, "debian", "man-names")))
        forms = {"mdp-broker": 5, "mdp-request": 4, "mdp-worker": 3, "mdp-keygen": 3}
        for tool, path in (("mdp-broker", BROKER), ("mdp-request", REQUEST),
                           ("mdp-worker", WORKER), ("mdp-keygen", KEYGEN)):
            out = os.path.join(tmp, tool + ".1")
            # As debian/rules makes them.
            r = subprocess.run([HELP2MAN, "--no-info", "--no-discard-stderr", "--section", "1",
                                "--name", names[tool], "--include",
                                os.path.join(SOURCE, "dist", "man", tool + ".h2m"),
                                "--output", out, path], capture_output=True, timeout=bound(60))
            if not check(problems, r.returncode == 0, "%s: help2man: %r" % (tool, r.stderr)):
                continue
            page = open(out).read()
            sections = re.findall(r'^\.SH "?([A-Z ]+)"?$', page, re.M)
            for want in ("NAME", "SYNOPSIS", "OPTIONS", "FILES", "SIGNALS", "EXIT STATUS",
                         "SEE ALSO"):
                check(problems, want in sections, "%s.1: no %s section (%r)"
                      % (tool, want, sections))
            syn = page.split(".SH SYNOPSIS", 1)[-1].split(".SH ", 1)[0]
            n_forms = len(re.findall(r"^\.B %s\b" % re.escape(tool), syn, re.M))
            check(problems, n_forms == forms[tool], "%s.1: %d SYNOPSIS forms, %d expected"
                  % (tool, n_forms, forms[tool]))
            desc = page.split(".SH DESCRIPTION", 1)[-1].split(".SH OPTIONS", 1)[0]
            # The broken SYNOPSIS of old: usage lines spilling into DESCRIPTION.
            check(problems, "[FRAME" not in desc and "Usage:" not in desc,
                  "%s.1: usage lines in DESCRIPTION" % tool)
        conf5 = open(os.path.join(SOURCE, "dist", "man", "mdp-broker.conf.5")).read()
        for want in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
            check(problems, re.search(r"^\.SH %s$" % want, conf5, re.M),
                  "mdp-broker.conf.5: no %s" % want)
        check(problems, "dist/man/mdp-broker.conf.5" in
              open(os.path.join(SOURCE, "debian", "mdp-broker.manpages")).read(),
              "mdp-broker.conf.5 not packaged")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


n = len(results)
failed = sum(1 for ok, _, _ in results if not ok)
print("1..%d" % n)
print("# %d passed, %d failed" % (n - failed, failed))
sys.exit(1 if failed else 0)
