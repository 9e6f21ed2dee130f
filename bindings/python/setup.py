"""Build of libmdp._native, the C shim (a plain CPython extension).

Where libmdp comes from, in this order:
  1. LIBMDP_BUILD_DIR=<meson build dir of this tree>: headers from the tree's
     include/, libmdp.so from <dir>/lib, found at run time through an rpath;
  2. the system's libmdp (pkg-config libmdp, e.g. Debian's libmdp-dev);
  3. the tree this file sits in: ../../include and the first of ../../build*/lib
     holding libmdp.so (rpath as in 1).
libzmq and libuv come from pkg-config (Debian: libzmq3-dev, libuv1-dev).
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.normpath(os.path.join(HERE, "..", ".."))


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out)


def split_flags(flags):
    inc, libdirs, libs, other = [], [], [], []
    for f in flags:
        if f.startswith("-I"):
            inc.append(f[2:])
        elif f.startswith("-L"):
            libdirs.append(f[2:])
        elif f.startswith("-l"):
            libs.append(f[2:])
        else:
            other.append(f)
    return inc, libdirs, libs, other


def find_libmdp():
    build = os.environ.get("LIBMDP_BUILD_DIR")
    if not build and pkg_config("--exists", "libmdp") is not None:
        flags = pkg_config("--cflags", "--libs", "libmdp")
        if flags is not None:
            inc, libdirs, libs, _ = split_flags(flags)
            return inc, libdirs, libs, []
    if not build:
        cands = sorted(glob.glob(os.path.join(TREE, "build*", "lib", "libmdp.so")))
        if not cands:
            raise SystemExit(
                "libmdp not found: install libmdp-dev, or build the tree "
                "(meson setup build && ninja -C build) and set LIBMDP_BUILD_DIR")
        build = os.path.dirname(os.path.dirname(cands[0]))
    build = os.path.abspath(build)
    libdir = os.path.join(build, "lib")
    if not os.path.exists(os.path.join(libdir, "libmdp.so")):
        raise SystemExit("no libmdp.so in %s" % libdir)
    return [os.path.join(TREE, "include")], [libdir], ["mdp"], [libdir]


inc, libdirs, libs, rpath = find_libmdp()
deps = pkg_config("--cflags", "--libs", "libzmq", "libuv")
if deps is None:
    raise SystemExit("pkg-config could not find libzmq and libuv (Debian: libzmq3-dev libuv1-dev)")
dinc, dlibdirs, dlibs, dother = split_flags(deps)

setup(
    ext_modules=[
        Extension(
            "libmdp._native",
            sources=["src/_native.c"],
            include_dirs=inc + dinc,
            library_dirs=libdirs + dlibdirs,
            libraries=libs + [l for l in dlibs if l not in libs],
            runtime_library_dirs=rpath,
            extra_compile_args=["-std=gnu11", "-Wall", "-Wno-missing-field-initializers"] + dother,
        )
    ]
)
