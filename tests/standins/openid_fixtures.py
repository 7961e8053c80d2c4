"""pytest fixtures for the OpenID-configuration stand-in: `pytest_plugins = ["tests.standins.openid_fixtures"]`.

- `openid_server` (session): the stand-in on its own local HTTPS server (its own trustme CA), started once.
- `openid` (function): the same, reset for the test, with `REQUESTS_CA_BUNDLE` trusting its CA. When
  `REQUESTS_CA_BUNDLE` is set already (say by the `standins` fixture, requested first), the test gets a
  bundle holding both CAs, so a test may use both stand-ins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .openid import OpenIdStandin
from .server import StandinServer
from .tls import TestTLS, make_tls


@dataclass
class OpenId:
    standin: OpenIdStandin
    server: StandinServer
    tls: TestTLS

    @property
    def config_url(self) -> str:
        return self.standin.config_url


@pytest.fixture(scope="session")
def openid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenId]:
    tls = make_tls(tmp_path_factory.mktemp("openid-tls"))
    standin = OpenIdStandin()
    server = StandinServer(standin, tls.server_context).serve_in_thread()
    standin.base_url = server.url
    try:
        yield OpenId(standin, server, tls)
    finally:
        server.stop()


@pytest.fixture
def openid(openid_server: OpenId, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OpenIdStandin]:
    """The stand-in, reset, with requests trusting its CA (and no proxy in the way)."""
    openid_server.standin.reset()
    openid_server.server.errors.clear()
    bundle = openid_server.tls.ca_bundle
    existing = os.environ.get("REQUESTS_CA_BUNDLE")
    if existing and Path(existing).is_file() and Path(existing) != bundle:
        combined = tmp_path / "ca-bundle.pem"
        combined.write_bytes(Path(existing).read_bytes() + b"\n" + bundle.read_bytes())
        bundle = combined
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield openid_server.standin
    errors = list(openid_server.server.errors)
    assert not errors, f"the OpenID stand-in failed: {errors!r}"
