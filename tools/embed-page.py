#!/usr/bin/env python3
"""Writes a C header holding a file as a string constant, so that
mdp-broker serves its status page (dist/mdp-broker-status.html) from the
binary, with nothing to install beside it.

Usage: embed-page.py INPUT OUTPUT SYMBOL"""
import sys


def c_string(line):
    """One line of text as the inside of a C string literal: quotes and
    backslashes escaped, the newline as \\n, anything outside printable
    ASCII as octal escapes of its UTF-8 bytes."""
    out = []
    for b in line.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif 0x20 <= b < 0x7f and c != "?":  # "?" could start a trigraph
            out.append(c)
        else:
            out.append("\\%03o" % b)
    return "".join(out)


def main():
    src, out, symbol = sys.argv[1:4]
    text = open(src, encoding="utf-8").read()  # UTF-8 only
    lines = ['    "%s"' % c_string(l) for l in text.splitlines(keepends=True)]
    with open(out, "w") as f:
        f.write("/* Generated from %s by tools/embed-page.py: do not edit. */\n"
                % src.split("/")[-1])
        f.write("static const char %s[] =\n%s;\n" % (symbol, "\n".join(lines)))


main()
