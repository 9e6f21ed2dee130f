"""Shared helpers of the Python layer (not public)."""
from __future__ import annotations

import itertools
import re
import math
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from . import _native
from .errors import InvalidArgument, StateError, from_code  # noqa: F401

_native.set_error_factory(from_code)

FOREVER_MS = (1 << 64) - 1

DIALECTS = {
    "rfc18": _native.DIALECT_RFC18,
    "majortomo": _native.DIALECT_MAJORTOMO,
    "mdp01": _native.DIALECT_MDP01,
}
SPREADS = {
    "round-robin": _native.SPREAD_ROUND_ROBIN,
    "fewest": _native.SPREAD_FEWEST,
    "failover": _native.SPREAD_FAILOVER,
}

# Request tags: unique per process (next() on a count is atomic under the GIL).
_tags = itertools.count(1)


def next_tag() -> int:
    return next(_tags)


_ENDPOINT = re.compile(r"^(tcp://[^/]+:(\d+|\*)|ipc://.+|inproc://.+)$")

Brokers = Union[str, Sequence[str]]


def endpoints(brokers: Brokers) -> List[str]:
    """A broker URL, or a list of them (several brokers: live-live)."""
    if isinstance(brokers, str):
        eps = [brokers]
    elif isinstance(brokers, (bytes, bytearray)):
        eps = [bytes(brokers).decode()]
    else:
        eps = [e.decode() if isinstance(e, (bytes, bytearray)) else e for e in brokers]
    if not eps:
        raise InvalidArgument("at least one broker endpoint is needed")
    for e in eps:
        if not isinstance(e, str) or not _ENDPOINT.match(e):
            raise InvalidArgument("malformed broker endpoint %r (expected e.g. tcp://127.0.0.1:5555)" % (e,))
    return eps


def dialect(name: str) -> int:
    try:
        return DIALECTS[name]
    except (KeyError, TypeError):
        raise InvalidArgument("unknown dialect %r: one of %s" % (name, ", ".join(DIALECTS))) from None


def spread(name: str) -> int:
    try:
        return SPREADS[name]
    except (KeyError, TypeError):
        raise InvalidArgument("unknown spread %r: one of %s" % (name, ", ".join(SPREADS))) from None


def service_bytes(service: Union[str, bytes]) -> bytes:
    if isinstance(service, str):
        try:
            service = service.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidArgument("service name must be ASCII: %r" % service) from None
    if not isinstance(service, (bytes, bytearray)):
        raise TypeError("service must be bytes or str, not %s" % type(service).__name__)
    if not 1 <= len(service) <= 255:
        raise InvalidArgument("service name must be 1..255 bytes")
    return bytes(service)


def seconds_to_ms(seconds: Optional[float], name: str, none_ms: int = 0) -> int:
    """Seconds (float) to ms for libmdp; None gives `none_ms`; inf: forever."""
    if seconds is None:
        return none_ms
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("%s must be a number of seconds" % name)
    if seconds != seconds or seconds <= 0:
        raise InvalidArgument("%s must be > 0 seconds" % name)
    if math.isinf(seconds):
        return FOREVER_MS
    return max(1, int(round(seconds * 1000)))


def keys(server: Optional[str], public: Optional[str], secret: Optional[str]) -> Tuple[Optional[str], ...]:
    given = [k is not None for k in (server, public, secret)]
    if any(given) and not all(given):
        raise InvalidArgument("CURVE needs all three keys (server, public, secret) or none")
    return (server, public, secret)


def check_frames(frames: Iterable[object]) -> List[bytes]:
    out = list(frames)
    for i, f in enumerate(out):
        if not isinstance(f, (bytes, bytearray, memoryview)):
            raise TypeError("frame %d must be bytes, not %s" % (i, type(f).__name__))
    return out  # type: ignore[return-value]
