#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/fuzz_codec/ and fuzz/corpus/fuzz_broker/.

Seeds come from test/vectors.txt (one per line, in the input format of
fuzz/fuzz_input.h) plus hand-written broker scenarios: round trips in every
dialect, PARTIAL streams, MMI, floods, strangers, queue limits, timers, held
sends, close from a log line, oversize frames and huge frame counts.  The
output is deterministic; run it again after changing vectors.txt or the
input format and commit the result:

    fuzz/gen_corpus.py            # from the repository root or anywhere

Files are named by content (sha1), like libFuzzer's, so crash reproducers
saved by the fuzzer can sit next to them; this script never deletes any.
"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DIALECTS = {"rfc18": 1, "majortomo": 2, "mdp01": 4}
# sender, COMMAND -> (receiving role index: 0 broker, 1 client, 2 worker,
#                     mdp_command_t value)
SENDERS = {
    ("client", "REQUEST"): (0, 1),
    ("broker>client", "PARTIAL"): (1, 2),
    ("broker>client", "FINAL"): (1, 3),
    ("broker>client", "REPLY"): (1, 3),
    ("worker", "READY"): (0, 4),
    ("worker", "PARTIAL"): (0, 6),
    ("worker", "FINAL"): (0, 7),
    ("worker", "REPLY"): (0, 7),
    ("worker", "HEARTBEAT"): (0, 8),
    ("worker", "DISCONNECT"): (0, 9),
    ("broker>worker", "REQUEST"): (2, 5),
    ("broker>worker", "HEARTBEAT"): (2, 8),
    ("broker>worker", "DISCONNECT"): (2, 9),
}


def parse_frames(text):
    frames, i = [], 0
    text = text.strip()
    while i < len(text):
        assert text[i] == '"', text
        i += 1
        buf = bytearray()
        while text[i] != '"':
            c = text[i]
            if c == "\\":
                n = text[i + 1]
                if n == "x":
                    buf.append(int(text[i + 2:i + 4], 16))
                    i += 4
                    continue
                buf.append(ord(n))
                i += 2
                continue
            buf.append(ord(c))
            i += 1
        frames.append(bytes(buf))
        i += 1
        while i < len(text) and text[i] in " \t|":
            i += 1
    return frames


def vectors():
    path = os.path.join(ROOT, "test", "vectors.txt")
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            head, _, rest = line.partition(":")
            dialect, sender, command, validity = head.split()
            role, cmd = SENDERS[(sender, command)]
            yield DIALECTS[dialect], sender, role, cmd, validity == "valid", \
                parse_frames(rest)


# ---- the input format of fuzz/fuzz_input.h ------------------------------

def frame(b):
    if isinstance(b, str):
        b = b.encode()
    if len(b) < 0xFD:
        return bytes([len(b)]) + b
    return b"\xfe" + len(b).to_bytes(2, "big") + b


def ident(k):
    """A frame holding peer k's routing identity ("p<k>")."""
    return b"\xfd" + bytes([k])


def fill(n):
    """A frame of n 'x' bytes that costs three input bytes."""
    return b"\xff" + n.to_bytes(2, "big")


class Raw(bytes):
    """An already-encoded frame (ident(), fill())."""


def message(peer, *fs, kind=0):
    out = bytearray([kind << 3 | peer, len(fs)])
    for f in fs:
        out += f if isinstance(f, Raw) else frame(f)
    return bytes(out)


def op(kind, peer=0):
    return bytes([kind << 3 | peer])


TICK, DRAIN, TOGGLE, RUN = 24, 26, 28, 29


def I(k):
    return Raw(ident(k))


def F(n):
    return Raw(fill(n))


# ---- scenarios ----------------------------------------------------------

W2, C2 = "MDPW02", "MDPC02"


def ready(p, service="echo", d="rfc18"):
    lead = [""] if d != "rfc18" else []
    hdr = "MDPW01" if d == "mdp01" else W2
    return message(p, *lead, hdr, b"\x01", service)


def request(p, service="echo", body=("hello",), d="rfc18"):
    if d == "rfc18":
        return message(p, C2, b"\x01", service, *body)
    if d == "majortomo":
        return message(p, "", C2, b"\x02", service, *body)
    return message(p, "", "MDPC01", service, *body)


def reply(p, client, cmd=b"\x04", body=("world",), d="rfc18"):
    lead = [""] if d != "rfc18" else []
    hdr = "MDPW01" if d == "mdp01" else W2
    return message(p, *lead, hdr, cmd, I(client), "", *body)


def heartbeat(p):
    return message(p, W2, b"\x05")


def disconnect(p):
    return message(p, W2, b"\x06")


def cfg(c0=0, c1=0):
    return bytes([c0, c1])


SCENARIOS = {
    "roundtrip": cfg() + ready(1) + request(0) + reply(1, 0),
    "partials": cfg() + ready(1) + request(0, body=("a", "", "b"))
    + reply(1, 0, b"\x03", ("p1",)) + reply(1, 0, b"\x03", ("", "p2"))
    + reply(1, 0, b"\x04", ("end", "")),
    "majortomo_client": cfg() + ready(1) + request(0, d="majortomo")
    + reply(1, 0, b"\x03") + reply(1, 0),
    "majortomo_worker": cfg() + ready(1, d="majortomo") + request(0)
    + reply(1, 0, d="majortomo"),
    "mdp01_collect": cfg(0x80) + ready(1) + request(0, d="mdp01")
    + reply(1, 0, b"\x03", ("x" * 40,)) + reply(1, 0, b"\x03", ("y" * 40,))
    + reply(1, 0),
    "mdp01_worker": cfg() + ready(1, d="mdp01") + request(0)
    + reply(1, 0, b"\x03", d="mdp01") + heartbeat(1),
    "mmi": cfg() + ready(1) + request(0, "mmi.service", ("echo",))
    + request(0, "mmi.services", ("",)) + request(0, "mmi.workers", ("echo",))
    + request(0, "mmi.workers", ("nosuch",)) + request(0, "mmi.nosuch", ("x",))
    + request(0, "mmi.services", ("",), d="majortomo")
    + request(0, "mmi.service", ("echo",), d="mdp01"),
    "ready_flood": cfg() + b"".join(ready(p) for p in range(8))
    + ready(1) + ready(2, "other") + ready(3, "mmi.service") + heartbeat(1)
    + request(0) + request(0) + request(0),
    "strangers": cfg() + reply(6, 0) + heartbeat(7) + disconnect(7)
    + reply(2, 0, b"\x03") + ready(1) + reply(1, 0),
    "wrong_client": cfg() + ready(1) + request(0) + reply(1, 2)
    + request(0) + request(2) + ready(3) + reply(3, 0),
    "queue_limit": cfg(0x10) + request(0) + request(2) + request(0, "b")
    + request(2, "b") + ready(1) + ready(3, "b"),
    # a lost worker's request comes back over a full queue (max_queue 1,
    # then max_queued_total 3) and is served first
    "retry_over_full_queue": cfg(0x10) + ready(1) + request(0) + request(2)
    + disconnect(1) + request(3) + ready(4) + reply(4, 0) + reply(4, 2),
    "retry_over_total": cfg(0, 0x08) + ready(1) + request(0) + request(2)
    + request(3) + request(5) + disconnect(1) + ready(4) + reply(4, 0),
    "fair": cfg() + b"".join(request(0, body=(str(i),)) for i in range(4))
    + request(2) + ready(1) + reply(1, 0) + reply(1, 2),
    "timers": cfg(0x08) + ready(1) + request(0) + op(TICK) + op(TICK)
    + ready(2) + op(TICK) + request(3, "none") + op(TICK) + op(RUN),
    "timers_redispatch0": cfg(0x48) + ready(1) + request(0) + op(TICK)
    + ready(2) + op(TICK),
    "redispatch": cfg() + ready(1) + request(0) + disconnect(1) + ready(2)
    + reply(2, 0, b"\x03") + disconnect(2) + ready(3),
    "invalid_from_worker": cfg() + ready(1) + request(0)
    + message(1, W2, b"\x04", I(0), "x", "hi") + ready(2) + reply(2, 0),
    "worker_unreachable": cfg() + ready(6) + request(0) + ready(7, "b")
    + request(0, "b") + ready(1) + ready(1, "b"),
    "client_vanishes": cfg() + ready(1) + request(0) + op(TOGGLE, 0)
    + reply(1, 0) + request(2) + op(TOGGLE, 0) + reply(1, 2),
    "held_sends": cfg(0, 0x01) + ready(1) + b"".join(
        request(0, body=(str(i),)) for i in range(6))
    + reply(1, 0) + reply(1, 0) + op(TOGGLE, 0) + op(RUN) + reply(1, 0)
    + op(DRAIN) + op(TOGGLE, 1) + op(RUN) + op(TICK),
    "held_batch1": cfg(0, 0x06) + ready(1) + ready(2) + request(0)
    + request(3) + request(4) + op(TOGGLE, 1) + op(TICK) + op(DRAIN),
    "tight_limits": cfg(0, 0x08) + ready(1) + ready(2) + ready(3)
    + ready(4, "b") + ready(5, "c") + request(0, "c") + request(0, "d")
    + request(0) + request(0) + request(0) + request(0, "b") + request(0, "b"),
    "close_in_log": cfg(0, 0x30) + ready(1) + request(0) + reply(1, 0)
    + request(0),
    "close_in_log_late": cfg(0, 0xf0) + ready(1) + ready(2) + request(0)
    + request(3) + reply(1, 0) + reply(2, 3) + disconnect(1) + ready(4),
    "oversize": cfg() + request(0, F(300)) + ready(1, F(256))
    + message(1, W2, b"\x04", F(300), "", "x") + request(0, "s", (F(4000),))
    + message(0, C2, b"\x01", F(255), "ok"),
    "frame_counts": cfg() + bytes([0, 0xFF, 0x10, 0x00]) + ready(1)
    + message(0, C2, b"\x01", "echo", *([""] * 200))
    + bytes([0, 0xFF, 0x0F, 0xFF]) + frame(C2) + frame(b"\x01")
    + frame("echo"),
    "zero_frames": cfg() + bytes([0, 0]) + bytes([1, 1, 0]) + ready(1)
    + bytes([1, 0]),
    "restricted": cfg(0x01) + ready(1, d="majortomo") + request(0, d="mdp01")
    + ready(2) + request(0),
    "restricted_mdp01": cfg(0x04) + ready(1, d="mdp01") + request(0)
    + request(0, d="mdp01") + reply(1, 0, b"\x03", d="mdp01"),
}


def write(dirname, data, seen):
    name = hashlib.sha1(data).hexdigest()
    if name in seen:
        return
    seen.add(name)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    out = os.path.join(HERE, "corpus")
    codec_dir = os.path.join(out, "fuzz_codec")
    broker_dir = os.path.join(out, "fuzz_broker")
    os.makedirs(codec_dir, exist_ok=True)
    os.makedirs(broker_dir, exist_ok=True)
    seen_codec, seen_broker = set(), set()
    for dialect, sender, role, cmd, valid, fs in vectors():
        body = bytes([len(fs)]) + b"".join(frame(f) for f in fs)
        enc = bytes([3]) + frame("echo") + frame(b"\x00\x6b\x8b\x45\x67") \
            + frame("hello")
        e = dialect | cmd << 3
        # every dialect accepted; a valid line also with only the others
        for mask in (0, 7 & ~dialect) if valid else (0,):
            write(codec_dir, bytes([role | mask << 2, e]) + body + enc,
                  seen_codec)
        if role == 0:
            peer = 1 if sender == "worker" else 0
            write(broker_dir, cfg() + bytes([peer]) + body, seen_broker)
            # the same after a READY, so worker commands meet a known worker
            write(broker_dir, cfg() + ready(1) + request(0) + bytes([1])
                  + body, seen_broker)
    for data in SCENARIOS.values():
        write(broker_dir, data, seen_broker)
    # encoder edge cases: no service, oversize service, invalid dialect and
    # command values, no body
    for e in (0x80 | 1 | 1 << 3, 3 | 1 << 3, 1 | 15 << 3, 0, 2 | 3 << 3,
              4 | 2 << 3, 1 | 4 << 3, 1 | 8 << 3):
        write(codec_dir, bytes([0, e, 0]) + bytes([3]) + fill(300)
              + frame("a") + frame("b"), seen_codec)
        write(codec_dir, bytes([0, e, 0]) + bytes([1]) + frame("svc"),
              seen_codec)
    print("fuzz_codec: %d seeds, fuzz_broker: %d seeds"
          % (len(seen_codec), len(seen_broker)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
