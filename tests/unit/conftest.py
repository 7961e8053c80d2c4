"""Unit tests run without services: no Azurite, no HTTPS stand-in, no network connection (`make test-fast`).

A unit test that asks for one of the services' fixtures, or opens a connection, fails with a message saying
where it belongs; the services themselves start only when an integration test asks for them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

_WHERE = "unit tests run without services: a test that needs {} belongs under tests/integration"


@pytest.fixture(scope="session")
def azurite() -> None:
    pytest.fail(_WHERE.format("Azurite"))


@pytest.fixture(scope="session")
def standin_servers() -> None:
    pytest.fail(_WHERE.format("the Graph and identity stand-ins"))


@pytest.fixture(scope="session")
def openid_server() -> None:
    pytest.fail(_WHERE.format("the OpenID stand-in"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(_WHERE.format(f"a connection (to {address!r})"))

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
