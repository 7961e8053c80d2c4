"""pytest fixtures for the stand-ins: `pytest_plugins = ["tests.standins.fixtures"]` in a conftest.

- `standin_tls` (session): the one test CA of the session, its server certificate and its CA bundle file.
  Every HTTPS stand-in serves a certificate of this CA, so `REQUESTS_CA_BUNDLE` is always this one file.
- `standin_servers` (session): the identity, Graph and managed-identity stand-ins, started once.
- `standins` (function): the same, reset for the test, with `REQUESTS_CA_BUNDLE` pointing at the test CA
  (requests reads it; the app itself is configured only through `Settings`), and helpers to build the
  app's settings mapping.
- `openid_server` (session) and `openid` (function): the OpenID-configuration stand-in (Graph's notification
  signing keys) on its own HTTPS server, likewise; a test may ask for both `standins` and `openid`.
- `topic_server` (session) and `topic` (function): the Event Grid topic stand-in on its own HTTPS server,
  likewise, with `settings()` for the app's CALL_EVENTS_* settings; every CloudEvent the app published during a
  test is validated against docs/schemas/ at its end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.settings import Settings, load_settings
from tests.reference import validate_cloud_event  # the published schemas (docs/schemas/)

from .graph import GraphStandin
from .identity import IdentityStandin
from .managed_identity import ManagedIdentityStandin
from .openid import OpenIdStandin
from .server import StandinServer
from .tls import TestTLS, make_tls
from .tokens import TokenRegistry
from .topic import TopicStandin

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6a1c2b3d-0000-4000-8000-00000000b07a"
CLIENT_SECRET = "standin-secret-Zq7~not-a-real-one"
MANAGED_IDENTITY_CLIENT_ID = "3d9f1e2a-0000-4000-8000-0000000000a1"


@dataclass
class Standins:
    """The running stand-ins and what a test needs to point the app at them."""

    tls: TestTLS
    identity: IdentityStandin
    graph: GraphStandin
    managed_identity: ManagedIdentityStandin
    identity_server: StandinServer
    graph_server: StandinServer
    managed_identity_server: StandinServer
    tenant: str = TENANT
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    managed_identity_client_id: str = MANAGED_IDENTITY_CLIENT_ID

    @property
    def ca_bundle(self) -> Path:
        return self.tls.ca_bundle

    @property
    def graph_url(self) -> str:
        return self.graph_server.url

    @property
    def authority_host(self) -> str:
        return self.identity_server.url

    @property
    def identity_endpoint(self) -> str:
        """The `IDENTITY_ENDPOINT` of the managed-identity stand-in (plain http, as in Azure)."""
        return self.managed_identity.endpoint(self.managed_identity_server.url)

    def environ(self, **overrides: str | None) -> dict[str, str]:
        """App settings pointing at the stand-ins (client secret credential); `NAME=None` removes a setting."""
        values: dict[str, str | None] = {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "GRAPH_TENANT_ID": self.tenant,
            "GRAPH_CLIENT_ID": self.client_id,
            "GRAPH_CLIENT_SECRET": self.client_secret,
            "GRAPH_BASE_URL": self.graph_url,
            "GRAPH_AUTHORITY_HOST": self.authority_host,
            "KEEPALIVE_REQUEST_TIMEOUT": "5",
        }
        values.update(overrides)
        return {name: value for name, value in values.items() if value is not None}

    def settings(self, **overrides: str | None) -> Settings:
        return load_settings(self.environ(**overrides))

    @staticmethod
    def new_tenant() -> str:
        return str(uuid.uuid4())

    def reset(self) -> None:
        self.graph.reset()
        self.identity.reset()
        self.identity.configure(resource=self.graph_url, federated_client_id=self.managed_identity_client_id)
        self.managed_identity.reset()
        self.managed_identity.add_identity(self.managed_identity_client_id)
        for server in (self.identity_server, self.graph_server, self.managed_identity_server):
            server.errors.clear()

    def errors(self) -> list[BaseException]:
        return [
            *self.identity_server.errors,
            *self.graph_server.errors,
            *self.managed_identity_server.errors,
        ]


def _trust(monkeypatch: pytest.MonkeyPatch, tls: TestTLS) -> None:
    """requests trusts the test CA (one bundle file for every stand-in), and no proxy is in the way."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def standin_tls(tmp_path_factory: pytest.TempPathFactory) -> TestTLS:
    """The session's one test CA: every HTTPS stand-in serves its certificate for 127.0.0.1 and localhost."""
    return make_tls(tmp_path_factory.mktemp("standin-tls"))


@pytest.fixture(scope="session")
def standin_servers(standin_tls: TestTLS) -> Iterator[Standins]:
    tls = standin_tls
    app_tokens, managed_identity_tokens = TokenRegistry(), TokenRegistry()
    identity = IdentityStandin(
        tokens=app_tokens, federated=managed_identity_tokens, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    graph = GraphStandin(tokens=app_tokens)
    managed_identity = ManagedIdentityStandin(tokens=managed_identity_tokens)
    servers: list[StandinServer] = []
    try:
        identity_server = StandinServer(identity, tls.server_context).serve_in_thread()
        servers.append(identity_server)
        graph_server = StandinServer(graph, tls.server_context).serve_in_thread()
        servers.append(graph_server)
        managed_identity_server = StandinServer(managed_identity).serve_in_thread()
        servers.append(managed_identity_server)
        yield Standins(
            tls=tls,
            identity=identity,
            graph=graph,
            managed_identity=managed_identity,
            identity_server=identity_server,
            graph_server=graph_server,
            managed_identity_server=managed_identity_server,
        )
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def standins(standin_servers: Standins, monkeypatch: pytest.MonkeyPatch) -> Iterator[Standins]:
    """The stand-ins, reset, with requests trusting the test CA and no proxy or forced region in the way."""
    standin_servers.reset()
    _trust(monkeypatch, standin_servers.tls)
    for name in (
        "MSAL_FORCE_REGION",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "MSI_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    yield standin_servers
    errors = standin_servers.errors()
    assert not errors, f"a stand-in failed: {errors!r}"


@dataclass
class OpenId:
    standin: OpenIdStandin
    server: StandinServer
    tls: TestTLS

    @property
    def config_url(self) -> str:
        return self.standin.config_url


@pytest.fixture(scope="session")
def openid_server(standin_tls: TestTLS) -> Iterator[OpenId]:
    standin = OpenIdStandin()
    server = StandinServer(standin, standin_tls.server_context).serve_in_thread()
    standin.base_url = server.url
    try:
        yield OpenId(standin, server, standin_tls)
    finally:
        server.stop()


@pytest.fixture
def openid(openid_server: OpenId, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenIdStandin]:
    """The stand-in, reset, with requests trusting the test CA (and no proxy in the way)."""
    openid_server.standin.reset()
    openid_server.server.errors.clear()
    _trust(monkeypatch, openid_server.tls)
    yield openid_server.standin
    errors = list(openid_server.server.errors)
    assert not errors, f"the OpenID stand-in failed: {errors!r}"


@dataclass
class Topic:
    standin: TopicStandin
    server: StandinServer
    tls: TestTLS

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/api/events"

    def settings(self, **overrides: str | None) -> dict[str, str | None]:
        """The app's CALL_EVENTS_* settings for this topic, with its key (`NAME=None` removes a setting)."""
        return {"CALL_EVENTS_TOPIC_ENDPOINT": self.endpoint, "CALL_EVENTS_TOPIC_KEY": self.standin.key, **overrides}


@pytest.fixture(scope="session")
def topic_server(standin_tls: TestTLS) -> Iterator[Topic]:
    standin = TopicStandin(key="standin-topic-key-" + uuid.uuid4().hex)
    server = StandinServer(standin, standin_tls.server_context).serve_in_thread()
    try:
        yield Topic(standin, server, standin_tls)
    finally:
        server.stop()


@pytest.fixture
def topic(topic_server: Topic, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topic]:
    """The Event Grid topic stand-in, reset, with requests (and so azure-core) trusting the test CA."""
    topic_server.standin.reset()
    topic_server.server.errors.clear()
    _trust(monkeypatch, topic_server.tls)
    yield topic_server
    errors = list(topic_server.server.errors)
    assert not errors, f"the topic stand-in failed: {errors!r}"
    for envelope in topic_server.standin.raw_events:  # every CloudEvent a test made the app publish
        validate_cloud_event(envelope)
