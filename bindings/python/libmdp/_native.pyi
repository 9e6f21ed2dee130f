"""Type stub of the C shim (bindings/python/src/_native.c)."""
from typing import Any, Callable, List, Optional, Sequence, Tuple

Event = Tuple[int, int, int, int, Optional[List[bytes]], int, int]

EV_REPLY: int
EV_REQUEST: int
EV_CLOSED: int
DIALECT_RFC18: int
DIALECT_MAJORTOMO: int
DIALECT_MDP01: int
SPREAD_ROUND_ROBIN: int
SPREAD_FEWEST: int
SPREAD_FAILOVER: int
ETIMEDOUT: int
ECANCELED: int
ECLOSING: int
ESTATE: int
EINVAL: int
ESERVICE: int

class Channel:
    def __init__(self) -> None: ...
    def get(self, timeout: Optional[float] = ...) -> Optional[Event]: ...
    def drain(self) -> List[Event]: ...
    def fileno(self) -> int: ...

class Handle:
    closed: bool
    def request(self, channel: Channel, tag: int, service: bytes, frames: Sequence[bytes],
                timeout_ms: int = ..., retries: int = ..., deadline_ms: int = ...) -> None: ...
    def cancel(self, tag: int) -> None: ...
    def reply(self, h1: int, h2: int, final: bool, frames: Sequence[bytes]) -> None: ...
    def close(self, wait_for_request: bool = ...) -> None: ...

def client_new(channel: Channel, endpoints: Sequence[str], dialect: int, timeout_ms: int, retries: int,
               spread: int, max_sockets: int, server_key: Optional[str] = ..., public_key: Optional[str] = ...,
               secret_key: Optional[str] = ...) -> Handle: ...
def worker_new(channel: Channel, endpoints: Sequence[str], service: bytes, dialect: int, interval_ms: int,
               liveness: int, concurrency: int, server_key: Optional[str] = ..., public_key: Optional[str] = ...,
               secret_key: Optional[str] = ...) -> Handle: ...
def set_error_factory(factory: Callable[[int, str], Any]) -> None: ...
def strerror(code: int) -> str: ...
def curve_keypair() -> Tuple[str, str]: ...
