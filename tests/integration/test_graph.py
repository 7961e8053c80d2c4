"""GraphClient and TokenProvider with real MSAL and real requests against the local HTTPS stand-ins.

Run with the stand-in fixtures loaded (`pytest_plugins = ["tests.standins.fixtures"]`).
Waits between retries go to a fake sleep, so nothing here really sleeps except request timeouts.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import certifi
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.errors import SettingsError, TokenError
from shared.graph import FORBIDDEN_HINT, GraphClient, KeepAliveResult, build_session
from shared.settings import Settings
from shared.tokens import TokenProvider
from tests.standins.fixtures import Standins
from tests.standins.identity import entra_error
from tests.standins.server import RESET, Reply

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass
class Harness:
    settings: Settings
    session: requests.Session
    tokens: TokenProvider
    client: GraphClient
    waits: list[float] = field(default_factory=list)

    def keep_alive(self, call_id: str, tenant: str | None = None) -> KeepAliveResult:
        return self.client.keep_alive(call_id, tenant or self.settings.tenant_id or "")


@pytest.fixture
def harness(standins: Standins) -> Iterator[Callable[..., Harness]]:
    """Builds a client (fresh MSAL apps, fresh session) for settings pointing at the stand-ins."""
    sessions: list[requests.Session] = []

    def build(*, failure_ttl: float = 0.0, **overrides: str | None) -> Harness:
        settings = standins.settings(**overrides)
        session = build_session(settings.concurrency)
        sessions.append(session)
        tokens = TokenProvider(settings, session, failure_ttl=failure_ttl)
        waits: list[float] = []
        client = GraphClient(settings, session, tokens, sleep=waits.append, now=lambda: NOW, rng=lambda: 0.5)
        return Harness(settings, session, tokens, client, waits)

    yield build
    for session in sessions:
        session.close()


def call() -> str:
    return f"call-{uuid.uuid4()}"


# --- the outcome table -------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 202, 204])
def test_2xx_is_success_with_one_request(standins: Standins, harness: Callable[..., Harness], status: int) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, status)

    result = h.keep_alive(call_id)

    assert result.ok and not result.gone
    assert (result.status, result.error, result.attempts, result.retries) == (status, None, 1, 0)
    assert h.waits == []
    [sent] = standins.graph.requests_for(call_id)
    assert sent.method == "POST"
    assert sent.path == f"/v1.0/communications/calls/{call_id}/keepAlive"
    assert sent.header("Content-Length") == "0"
    assert sent.tenant == standins.tenant
    assert (sent.header("Authorization") or "").startswith("Bearer standin-")
    assert sent.header("client-request-id") == result.client_request_id
    assert UUID_RE.match(result.client_request_id or "")
    assert (sent.header("User-Agent") or "").startswith("callkeeper/")
    assert UUID_RE.match(result.request_id or "")  # Graph's request-id header


def test_each_request_gets_a_fresh_client_request_id(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 503, 503, 200)

    result = h.keep_alive(call_id)

    ids = [sent.header("client-request-id") for sent in standins.graph.requests_for(call_id)]
    assert len(set(ids)) == 3 and all(UUID_RE.match(i or "") for i in ids)
    assert result.client_request_id == ids[-1]


def test_404_means_ended_after_one_request(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 404, 200)

    result = h.keep_alive(call_id)

    assert result.gone and not result.ok
    assert (result.status, result.error, result.attempts, result.retries) == (404, "404 itemNotFound", 1, 0)
    assert result.code == "itemNotFound" and result.message == "Not Found"
    [sent] = standins.graph.requests_for(call_id)
    assert result.request_id is not None and result.client_request_id == sent.header("client-request-id")
    assert standins.graph.remaining(call_id) == 1
    assert h.waits == []


def test_429_waits_retry_after_seconds(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, Reply(429, {"Retry-After": "7"}), 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 1)
    assert h.waits == [7.0]


def test_429_waits_retry_after_http_date(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    when = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    standins.graph.script(call_id, Reply(429, {"Retry-After": when}), 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 1)
    assert h.waits == [12.0]


def test_retry_after_is_capped_at_60_seconds(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, Reply(503, {"Retry-After": "3600"}), 200)

    assert h.keep_alive(call_id).ok
    assert h.waits == [60.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_backoff(standins: Standins, harness: Callable[..., Harness], status: int) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, status, 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.status, result.attempts, result.retries) == (200, 2, 1)
    assert h.waits == [0.5]  # full jitter: rng 0.5 of a 1 s ceiling


def test_persistent_503_gives_up_after_exactly_4_attempts(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, *[503] * 6)

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.code) == (503, "503 ServiceUnavailable", "ServiceUnavailable")
    assert (result.attempts, result.retries) == (4, 3)
    assert len(standins.graph.requests_for(call_id)) == 4
    assert standins.graph.remaining(call_id) == 2
    assert h.waits == [0.5, 1.0, 2.0]  # doubling ceilings 1, 2, 4 s times rng 0.5


def test_timeout_is_retried(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(KEEPALIVE_REQUEST_TIMEOUT="0.2")
    call_id = call()
    standins.graph.script(call_id, Reply(200, delay=0.6), 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 1)
    assert h.waits == [0.5]


def test_persistent_timeout_fails_without_status(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(KEEPALIVE_REQUEST_TIMEOUT="0.2")
    h.tokens.token(standins.tenant)  # take the token first: only Graph is slow
    call_id = call()
    standins.graph.script(call_id, *[Reply(200, delay=0.5)] * 4)

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts, result.retries) == (None, "timeout", 4, 3)
    assert not result.ok and not result.gone


def test_connection_reset_is_retried(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, RESET, 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 1)


def test_persistent_connection_reset_fails(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, *[RESET] * 4)

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts, result.retries) == (None, "connection error", 4, 3)


def test_401_takes_a_fresh_token_once(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 401, 200)

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 0)
    assert h.waits == []
    assert standins.identity.requests_of(standins.tenant) == 2
    first, second = standins.graph.requests_for(call_id)
    assert first.header("Authorization") != second.header("Authorization")


def test_revoked_token_is_replaced(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    assert h.keep_alive(call_id).ok
    standins.identity.revoke_all()  # Graph itself now refuses the cached token

    result = h.keep_alive(call_id)

    assert result.ok and (result.attempts, result.retries) == (2, 0)
    assert [sent.status for sent in standins.graph.requests_for(call_id)] == [200, 401, 200]
    assert standins.identity.requests_of(standins.tenant) == 2


def test_401_twice_gives_up_with_a_credentials_hint(
    standins: Standins, harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 401, 401, 200)

    with caplog.at_level(logging.WARNING, logger="shared.graph"):
        result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts, result.retries) == (
        401,
        "401 InvalidAuthenticationToken",
        2,
        0,
    )
    assert standins.identity.requests_of(standins.tenant) == 2
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert call_id in warning.getMessage() and "GRAPH_CLIENT_ID" in warning.getMessage()


def test_403_is_one_request_with_a_permissions_hint(
    standins: Standins, harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 403, 200)

    with caplog.at_level(logging.WARNING, logger="shared.graph"):
        result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts, result.retries) == (403, "403 Forbidden", 1, 0)
    assert len(standins.graph.requests_for(call_id)) == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert call_id in message and FORBIDDEN_HINT in message
    assert "another app registration or tenant" in message and "checks no permission of its own" in message
    assert "Calls.Initiate.All" not in message and "Calls.AccessMedia.All" not in message


def test_403_for_a_call_of_another_tenant(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, tenant=standins.new_tenant())

    result = h.keep_alive(call_id)

    assert (result.status, result.attempts) == (403, 1)
    assert result.message == "The call belongs to another tenant."


@pytest.mark.parametrize("status", [400, 405, 409, 410, 422, 501])
def test_other_errors_are_one_request(standins: Standins, harness: Callable[..., Harness], status: int) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, status, 200)

    result = h.keep_alive(call_id)

    assert (result.status, result.attempts, result.retries) == (status, 1, 0)
    assert not result.ok and not result.gone
    assert result.error is not None and result.error.startswith(f"{status} ")
    assert h.waits == []


def test_graph_error_body_is_read_and_message_cut(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    body = {
        "error": {
            "code": "8502",
            "message": "x" * 5000,
            "innerError": {"request-id": "from-body", "date": "2025-03-14T09:26:53"},
        }
    }
    standins.graph.script(call_id, Reply(400, {"request-id": ""}, body))

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.code) == (400, "400 8502", "8502")
    assert result.message == "x" * 1024
    assert result.request_id == "from-body"


def test_error_without_json_body(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, Reply(502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"), 200)

    result = h.keep_alive(call_id)

    assert result.ok and result.retries == 1


# --- the URL -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call_id",
    ["a b", "%", ":", "'", "+", "é-ü-日本", "a%2Fb", "~tilde", "19:meeting_abc@thread.v2", "q=1&x;y", "\u00a0"],
)
def test_call_id_is_one_percent_encoded_segment(
    standins: Standins, harness: Callable[..., Harness], call_id: str
) -> None:
    h = harness()

    result = h.keep_alive(call_id)

    assert result.ok
    [sent] = standins.graph.requests_for(call_id)
    assert sent.call_id == call_id
    assert sent.path == f"/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"


# --- tokens ------------------------------------------------------------------------------------
def test_one_token_per_tenant_across_calls_and_ticks(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    first, second = standins.new_tenant(), standins.new_tenant().upper()
    for _tick in range(3):
        for tenant in (first, second):
            assert h.keep_alive(call(), tenant).ok

    assert standins.identity.requests_of(first) == 1
    assert standins.identity.requests_of(second) == 1
    assert standins.identity.discovery_requests == {first: 1, second.lower(): 1}
    assert {sent.tenant for sent in standins.graph.requests} == {first, second.lower()}


def test_concurrent_calls_of_one_tenant_on_a_cold_cache_take_one_token(
    standins: Standins, harness: Callable[..., Harness]
) -> None:
    h = harness(KEEPALIVE_CONCURRENCY="32")
    tenant = standins.new_tenant()
    standins.identity.latency = 0.2  # every caller arrives while the one token request is under way
    standins.graph.latency = 0.05
    calls = [call() for _ in range(64)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda call_id: h.keep_alive(call_id, tenant), calls))

    assert all(result.ok for result in results)
    assert standins.identity.requests_of(tenant) == 1
    assert 1 < standins.graph.max_in_flight <= 32


def test_invalidate_makes_the_next_token_fresh(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    first = h.tokens.token(standins.tenant)
    assert h.tokens.token(standins.tenant) == first
    h.tokens.invalidate(standins.tenant)
    assert h.tokens.token(standins.tenant) != first
    assert standins.identity.requests_of(standins.tenant) == 2


def test_identity_provider_refusal_is_a_token_error_without_the_secret(
    standins: Standins, harness: Callable[..., Harness]
) -> None:
    wrong = "wrong-secret-8Q~f00"
    h = harness(GRAPH_CLIENT_SECRET=wrong)

    with pytest.raises(TokenError) as raised:
        h.tokens.token(standins.tenant)

    assert isinstance(raised.value, TokenError) and raised.value.code == "invalid_client"
    assert raised.value.tenant_id == standins.tenant
    message = str(raised.value)
    assert message.startswith("invalid_client: AADSTS7000215")
    assert "correlationId=" in message
    assert wrong not in message and standins.client_secret not in message


def test_secret_echoed_by_the_identity_provider_is_scrubbed(
    standins: Standins, harness: Callable[..., Harness]
) -> None:
    h = harness()
    standins.identity.fail_next(entra_error(400, "invalid_request", 900144, f"bad value {standins.client_secret}"))

    with pytest.raises(TokenError) as raised:
        h.tokens.token(standins.tenant)

    assert standins.client_secret not in str(raised.value) and "***" in str(raised.value)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(500, body={"error": "server_error"}), "server_error"),
        (Reply(503, {"Retry-After": "1"}, {"error": "temporarily_unavailable"}), "server_error"),
        (RESET, "connection_error"),
        (Reply(200, body=b"not json"), "error"),
    ],
)
def test_identity_provider_failures_are_token_errors(
    standins: Standins, harness: Callable[..., Harness], reply: Reply, code: str
) -> None:
    h = harness()
    standins.identity.fail_next(reply)

    with pytest.raises(TokenError) as raised:
        h.tokens.token(standins.tenant)

    assert raised.value.code == code
    assert standins.client_secret not in str(raised.value)


def test_keep_alive_without_a_token_sends_nothing(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(GRAPH_CLIENT_SECRET="wrong")
    call_id = call()

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts, result.retries) == (None, "token: invalid_client", 0, 0)
    assert result.message is not None and "AADSTS7000215" in result.message
    assert standins.graph.requests == []


def test_token_refresh_failing_after_401(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    call_id = call()
    standins.graph.script(call_id, 401)
    h.tokens.token(standins.tenant)
    standins.identity.fail_next(entra_error(400, "unauthorized_client", 700016, "Application not found."))

    result = h.keep_alive(call_id)

    assert (result.status, result.error, result.attempts) == (401, "token: unauthorized_client", 1)


def test_a_failure_is_remembered_per_tenant_for_a_while(standins: Standins) -> None:
    settings = standins.settings(GRAPH_CLIENT_SECRET="wrong")
    clock = [100.0]
    with build_session(4) as session:
        tokens = TokenProvider(settings, session, failure_ttl=30.0, clock=lambda: clock[0])
        for _ in range(5):
            with pytest.raises(TokenError):
                tokens.token(standins.tenant)
        assert standins.identity.requests_of(standins.tenant) == 1
        clock[0] += 31
        with pytest.raises(TokenError):
            tokens.token(standins.tenant)
        assert standins.identity.requests_of(standins.tenant) == 2


def test_unknown_authority_is_a_token_error(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(GRAPH_AUTHORITY_HOST="https://127.0.0.1:9")  # nothing listens on the discard port

    with pytest.raises(TokenError) as raised:
        h.tokens.token(standins.tenant)

    assert raised.value.code == "connection_error"


def test_requests_ca_bundle_decides_trust(
    standins: Standins, harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # the public CAs: the stand-ins are untrusted

    with pytest.raises(TokenError) as raised:
        h.tokens.token(standins.tenant)

    assert raised.value.code == "tls_error"  # named as such, with what to fix
    assert "REQUESTS_CA_BUNDLE" in str(raised.value)


def test_secrets_and_tokens_never_reach_the_logs(
    standins: Standins, harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness()
    ok_call, failing_call = call(), call()
    standins.graph.script(failing_call, 401, 401)

    assert h.keep_alive(ok_call).ok
    assert h.keep_alive(failing_call).status == 401
    bad = harness(GRAPH_CLIENT_SECRET="another-wrong-secret")
    assert bad.keep_alive(call()).error == "token: invalid_client"

    issued = {sent.header("Authorization") for sent in standins.graph.requests}
    tokens = {value.removeprefix("Bearer ") for value in issued if value}
    assert tokens
    text = caplog.text + "".join(repr(record.args) for record in caplog.records)
    for secret in (standins.client_secret, "another-wrong-secret", *tokens):
        assert secret not in text


# --- other credentials -------------------------------------------------------------------------
def _certificate(directory: Path, name: str) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = directory / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    return path, cert_pem


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    directory = tmp_path_factory.mktemp("certificates")
    return {name: _certificate(directory, name) for name in ("registered", "other")}


def test_certificate_credential(
    standins: Standins, harness: Callable[..., Harness], certificates: dict[str, tuple[Path, bytes]]
) -> None:
    path, cert_pem = certificates["registered"]
    standins.identity.configure(certificate_pem=cert_pem)
    h = harness(GRAPH_CLIENT_SECRET=None, GRAPH_CLIENT_CERTIFICATE_PATH=str(path))
    h.tokens.check()

    assert h.keep_alive(call()).ok
    assert h.keep_alive(call()).ok

    [record] = standins.identity.records
    assert (record.credential, record.status) == ("certificate", 200)


def test_certificate_not_registered_is_refused(
    standins: Standins, harness: Callable[..., Harness], certificates: dict[str, tuple[Path, bytes]]
) -> None:
    standins.identity.configure(certificate_pem=certificates["registered"][1])
    h = harness(GRAPH_CLIENT_SECRET=None, GRAPH_CLIENT_CERTIFICATE_PATH=str(certificates["other"][0]))

    result = h.keep_alive(call())

    assert (result.status, result.error) == (None, "token: invalid_client")
    assert "PRIVATE KEY" not in (result.message or "")


def test_missing_certificate_is_a_settings_error(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(GRAPH_CLIENT_SECRET=None, GRAPH_CLIENT_CERTIFICATE_PATH="/nonexistent/bot.pem")

    with pytest.raises(SettingsError) as raised:
        h.tokens.check()
    assert "GRAPH_CLIENT_CERTIFICATE_PATH" in str(raised.value)

    result = h.keep_alive(call())
    assert (result.status, result.error, result.attempts) == (None, "token: invalid_settings", 0)
    assert standins.identity.records == []


def test_federated_credential_from_the_managed_identity(
    standins: Standins, harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", standins.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", standins.managed_identity.identity_header)
    h = harness(GRAPH_CLIENT_SECRET=None, GRAPH_MANAGED_IDENTITY_CLIENT_ID=standins.managed_identity_client_id)
    h.tokens.check()
    other_tenant = standins.new_tenant()

    assert h.keep_alive(call()).ok
    assert h.keep_alive(call(), other_tenant).ok
    assert h.keep_alive(call()).ok

    assert [(r.tenant, r.credential, r.status) for r in standins.identity.records] == [
        (standins.tenant, "federated", 200),
        (other_tenant, "federated", 200),
    ]
    [mi_request] = standins.managed_identity.requests  # azure-identity cached the assertion for the second tenant
    query = {key: values[-1] for key, values in mi_request.query.items()}
    assert query == {
        "api-version": "2019-08-01",
        "resource": "api://AzureADTokenExchange",
        "client_id": standins.managed_identity_client_id,
    }
    assert mi_request.header("X-IDENTITY-HEADER") == standins.managed_identity.identity_header


def test_federated_credential_in_us_government_cloud(
    standins: Standins, harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", standins.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", standins.managed_identity.identity_header)
    h = harness(
        GRAPH_CLOUD="usgov",
        GRAPH_CLIENT_SECRET=None,
        GRAPH_MANAGED_IDENTITY_CLIENT_ID=standins.managed_identity_client_id,
    )

    assert h.keep_alive(call()).ok
    [mi_request] = standins.managed_identity.requests
    assert mi_request.query["resource"] == ["api://AzureADTokenExchangeUSGov"]


def test_unknown_managed_identity_is_a_token_error(
    standins: Standins, harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", standins.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", standins.managed_identity.identity_header)
    h = harness(GRAPH_CLIENT_SECRET=None, GRAPH_MANAGED_IDENTITY_CLIENT_ID=str(uuid.uuid4()))

    result = h.keep_alive(call())

    assert (result.status, result.error, result.attempts) == (None, "token: managed_identity", 0)
    assert "No User Assigned" in (result.message or "")
    assert standins.identity.records == []


def test_the_stand_in_takes_256_concurrent_requests(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(KEEPALIVE_CONCURRENCY="256")
    h.tokens.token(standins.tenant)
    standins.graph.latency = 0.3  # every request is still in flight when the last one arrives
    calls = [call() for _ in range(256)]

    with ThreadPoolExecutor(max_workers=256) as pool:
        results = list(pool.map(h.keep_alive, calls))

    assert all(result.ok for result in results)
    assert 64 <= standins.graph.max_in_flight <= 256


def test_many_calls_refused_at_once_cause_one_refresh(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness(KEEPALIVE_CONCURRENCY="32")
    h.tokens.token(standins.tenant)
    standins.identity.revoke_all()  # every request below is first refused by Graph
    standins.graph.latency = 0.2  # the refusals arrive together, after every request was sent
    calls = [call() for _ in range(32)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(h.keep_alive, calls))

    assert all(result.ok for result in results)
    refused = sum(1 for sent in standins.graph.requests if sent.status == 401)
    assert refused > 1 and sum(result.attempts for result in results) == 32 + refused
    assert standins.identity.requests_of(standins.tenant) == 2  # the first token and one refresh


def test_invalidate_with_a_stale_token_keeps_a_fresher_one(standins: Standins, harness: Callable[..., Harness]) -> None:
    h = harness()
    stale = h.tokens.token(standins.tenant)
    h.tokens.invalidate(standins.tenant, stale)
    fresh = h.tokens.token(standins.tenant)
    h.tokens.invalidate(standins.tenant, stale)  # a late 401 for the old token

    assert h.tokens.token(standins.tenant) == fresh != stale
    assert standins.identity.requests_of(standins.tenant) == 2
