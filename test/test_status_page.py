#!/usr/bin/env python3
"""mdp-broker's status page (GET / of --metrics) in a real browser: Debian's
chromium, headless, loads the page from a running broker with a real
mdp-worker; the DOM after the page's script ran (--dump-dom) must show the
service and its worker count.  A screenshot is kept in an artifact
directory (MDP_ARTIFACT_DIR, default BUILD/artifacts) and its path printed.
TAP.

Without chromium the test is skipped (counted, with a message), but not in
CI (CI=true): there it installs Debian's chromium itself (scripts/lib.sh's
mdp_require_packages, as root) and must run; a browser that cannot be
installed is a failure.

Environment (from test/meson.build): MDP_BUILD_DIR, MDP_SOURCE_DIR,
MDP_TEST_SLOW (a multiplier for every time bound)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("MDP_BUILD_DIR", "build")
BROKER = os.path.join(BUILD, "tools", "mdp-broker")
WORKER = os.path.join(BUILD, "tools", "mdp-worker")
REQUEST = os.path.join(BUILD, "tools", "mdp-request")
SLOW = float(os.environ.get("MDP_TEST_SLOW", "1") or 1)
IN_CI = os.environ.get("CI") == "true"
ARTIFACTS = os.environ.get("MDP_ARTIFACT_DIR") or os.path.join(BUILD, "artifacts")

n = 0
failed = 0


def tap(ok, name, directive=""):
    global n, failed
    n += 1
    if not ok:
        failed += 1
    print("%s %d - %s%s" % ("ok" if ok else "not ok", n, name,
                            " # " + directive if directive else ""), flush=True)


def note(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, seconds, step=0.05):
    deadline = time.monotonic() + seconds * SLOW
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5 * SLOW) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except Exception as e:  # not up yet, or refused
        return None, str(e), b""


def chromium_args(chromium, profile):
    # --no-sandbox: CI runs as root, where chromium's sandbox refuses to
    # start; the page is our own, served from loopback.
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile,
            # Let the page's fetch of /status finish before the dump: the
            # virtual clock runs the page's timers and network to this budget.
            "--virtual-time-budget=4000"]


def install_chromium():
    """As scripts/test-operating does: Debian's chromium through
    scripts/lib.sh (as root; idempotent).  Output to our stderr."""
    lib = os.path.join(os.environ.get("MDP_SOURCE_DIR", os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "scripts", "lib.sh")
    if os.geteuid() != 0 or not os.path.exists(lib):
        return
    note("chromium missing: installing it (apt-get install chromium)")
    subprocess.run(["bash", "-c", '. "$1" && mdp_require_packages chromium', "sh", lib],
                   stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL,
                   timeout=600)


def main():
    chromium = find_chromium()
    if chromium is None and IN_CI:
        install_chromium()
        chromium = find_chromium()
    if chromium is None:
        if IN_CI:
            tap(False, "the status page in headless chromium")
            note("chromium is missing in CI (apt-get install chromium)")
        else:
            tap(True, "the status page in headless chromium",
                "SKIP chromium not installed (apt-get install chromium)")
        print("1..%d" % n)
        return 1 if failed else 0
    tmp = tempfile.mkdtemp(prefix="mdp-page-")
    procs = []
    try:
        ep = "tcp://127.0.0.1:%d" % free_port()
        http_port = free_port()
        base = "http://127.0.0.1:%d" % http_port
        err = open(os.path.join(tmp, "broker.err"), "wb")
        b = subprocess.Popen([BROKER, "-b", ep, "--metrics", "127.0.0.1:%d" % http_port],
                             stdout=subprocess.DEVNULL, stderr=err)
        procs.append(b)
        up = wait_for(lambda: http_get(base + "/readyz")[0] == 200, 10)
        tap(bool(up), "the broker serves /readyz")
        w = subprocess.Popen([WORKER, "-b", ep, "-c", "2", "--echo", "page-echo"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(w)
        registered = wait_for(lambda: b'"name":"page-echo","workers":2' in
                              http_get(base + "/status")[2], 20, step=0.2)
        tap(bool(registered), "/status shows the worker group's 2 workers")
        # Some traffic, for the chart.
        r = subprocess.run([REQUEST, "-b", ep, "-n", "50", "-c", "4", "page-echo", "hi"],
                           capture_output=True, timeout=60 * SLOW)
        tap(r.returncode == 0, "requests through the broker")
        if r.returncode:
            note(r.stdout.decode() + r.stderr.decode())
        status, ctype, body = http_get(base + "/")
        tap(status == 200 and ctype.startswith("text/html"), "GET / is an HTML page")
        size = len(body)
        note("status page: %d bytes, self-contained" % size)
        external = re.findall(rb'(?:src|href)="(?:https?:)?//[^"]*"', body)
        tap(not external and size < 64 * 1024,
            "the page is self-contained (no external reference) and small (%d bytes)" % size)
        if external:
            note("external references: %r" % external)

        profile = os.path.join(tmp, "profile")
        dump = subprocess.run(chromium_args(chromium, profile) + ["--dump-dom", base + "/"],
                              capture_output=True, timeout=120 * SLOW)
        dom = dump.stdout.decode("utf-8", "replace")
        row = re.search(r'<tr data-service="page-echo">(.*?)</tr>', dom, re.S)
        workers = re.search(r'<td class="workers">(\d+)</td>', row.group(1)) if row else None
        ok = bool(row) and workers is not None and workers.group(1) == "2"
        tap(ok, "chromium's DOM after the script ran: the service row with 2 workers")
        if not ok:
            note("chromium exit %d; stderr tail:\n%s" % (
                dump.returncode, dump.stderr.decode("utf-8", "replace")[-2000:]))
            note("DOM (first 3000 characters):\n" + dom[:3000])
        tap('data-loaded="1"' in dom and 'id="workers">2<' in dom,
            "the summary cards are filled (workers 2)")

        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.abspath(os.path.join(ARTIFACTS, "status-page.png"))
        if os.path.exists(shot):
            os.unlink(shot)
        # A phone-sized screenshot: the page must read on one.
        s = subprocess.run(chromium_args(chromium, profile + "-shot") +
                           ["--window-size=412,915", "--hide-scrollbars",
                            "--screenshot=" + shot, base + "/"],
                           capture_output=True, timeout=120 * SLOW)
        got = os.path.exists(shot) and os.path.getsize(shot) > 1000
        tap(got, "a screenshot of the page (phone size)")
        if got:
            print("# screenshot: %s" % shot, flush=True)
        else:
            note("chromium exit %d: %s" % (s.returncode, s.stderr.decode()[-2000:]))
        b.send_signal(signal.SIGTERM)
        try:
            rc = b.wait(timeout=10 * SLOW)
        except subprocess.TimeoutExpired:
            rc = None
        tap(rc == 0, "the broker stops cleanly")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10 * SLOW)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % n)
    print("# %d passed, %d failed" % (n - failed, failed))
    return 1 if failed else 0


sys.exit(main())
