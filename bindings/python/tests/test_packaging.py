"""The installed package: type information, and the extension found."""
import os

import libmdp
import libmdp.majortomo
from libmdp import _native


def test_typed_markers_installed():
    base = os.path.dirname(libmdp.__file__)
    assert os.path.exists(os.path.join(base, "py.typed"))
    assert os.path.exists(os.path.join(base, "_native.pyi"))
    assert os.path.exists(os.path.join(os.path.dirname(libmdp.majortomo.__file__), "py.typed"))


def test_extension_loads_libmdp():
    assert _native.strerror(_native.ETIMEDOUT) == "timed out"
    pub, sec = libmdp.curve_keypair()
    assert len(pub) == 40 and len(sec) == 40
