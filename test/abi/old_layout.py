#!/usr/bin/env python3
"""Writes the header a program of the previous release was built with:
include/mdp/broker.h with the last field of mdp_broker_options_t and of
mdp_broker_stats_t taken out again, their bytes given back to reserved_,
as docs/abi.md's rule says a new field is added.  test/abi/old_app.c is
compiled against it and run with the current library (test_abi).

Usage: old_layout.py IN OUT"""
import re
import sys

src = open(sys.argv[1]).read()


def fold_last_field(text, struct, field_re, size):
    """Removes the line declaring `field_re` in `struct` and grows its
    reserved_ by `size` bytes."""
    end = text.index("} %s;" % struct)
    start = text.rindex("typedef struct {", 0, end)
    body = text[start:end]
    new, n = re.subn(r"\n[^\n]*" + field_re + r"[^\n]*", "", body, count=1)
    if n != 1:
        sys.exit("old_layout.py: no %s in %s" % (field_re, struct))
    m = re.search(r"reserved_\[(\d+)\]", new)
    new = new[:m.start(1)] + str(int(m.group(1)) + size) + new[m.end(1):]
    return text[:start] + new + text[end:]


# The options' last field, `int ipv6;`, and the stats' last gauge,
# `size_t queued_bytes;` with its comment lines.
out = fold_last_field(src, "mdp_broker_options_t", r"\bint ipv6;", 4)
m = re.search(r"\n  size_t queued_bytes;[^\n]*(\n {30,}[^\n]*)*", out)
out = out[:m.start()] + out[m.end():]
out = re.sub(r"(reserved_\[)(\d+)(\];\n} mdp_broker_stats_t;)",
             lambda g: g.group(1) + str(int(g.group(2)) + 8) + g.group(3), out)
open(sys.argv[2], "w").write(out)
