"""Small helpers the tests share (fakes live in tests/fakes.py, Azurite in tests/azurite.py)."""

from __future__ import annotations

import socket

from shared.models import call_keys


def ids_in(partition: str, count: int, prefix: str = "c") -> list[str]:
    """`count` callIds (`<prefix><n>`) whose hash puts them in `partition` (`00`..`63`)."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        if call_keys(f"{prefix}{i}")[0] == partition:
            found.append(f"{prefix}{i}")
        i += 1
    return found


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
