"""Unit tests of shared.graph and shared.tokens that need no network: retry decisions, URLs, settings checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from shared import __version__
from shared.errors import SettingsError
from shared.graph import GraphClient, KeepAliveResult, build_session
from shared.retry import RETRY_AFTER_CAP, retry_after_seconds, retry_delay
from shared.settings import load_settings
from shared.tokens import TokenProvider, load_certificate

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


def http_date(offset_seconds: float) -> str:
    return format_datetime(NOW + timedelta(seconds=offset_seconds), usegmt=True)


def half() -> float:
    return 0.5


# --- retry_delay: one table ----------------------------------------------------------------------
# (status, headers, attempt, expected seconds or None)
RETRY_CASES: list[tuple[str, int | None, dict[str, str], int, float | None]] = [
    ("429 Retry-After seconds", 429, {"Retry-After": "7"}, 1, 7.0),
    ("header name in any case", 429, {"retry-after": "7"}, 1, 7.0),
    ("Retry-After zero", 503, {"Retry-After": "0"}, 1, 0.0),
    ("Retry-After fraction", 503, {"Retry-After": "1.5"}, 1, 1.5),
    ("Retry-After padded", 503, {"Retry-After": " 3 "}, 1, 3.0),
    ("Retry-After capped", 429, {"Retry-After": "120"}, 1, RETRY_AFTER_CAP),
    ("Retry-After huge", 429, {"Retry-After": "9" * 40}, 1, RETRY_AFTER_CAP),
    ("HTTP date in the future", 429, {"Retry-After": http_date(30)}, 1, 30.0),
    ("HTTP date in the past", 429, {"Retry-After": http_date(-30)}, 1, 0.0),
    ("HTTP date beyond the cap", 503, {"Retry-After": http_date(3600)}, 2, RETRY_AFTER_CAP),
    ("HTTP date without zone", 503, {"Retry-After": "Fri, 14 Mar 2025 09:27:03 -0000"}, 1, 10.0),
    ("garbage header: backoff", 503, {"Retry-After": "soon"}, 1, 0.5),
    ("negative header: backoff", 503, {"Retry-After": "-5"}, 2, 1.0),
    ("empty header: backoff", 503, {"Retry-After": ""}, 1, 0.5),
    ("500 backoff 1st", 500, {}, 1, 0.5),
    ("502 backoff 2nd", 502, {}, 2, 1.0),
    ("504 backoff 3rd", 504, {}, 3, 2.0),
    ("500 after 3 retries", 500, {}, 4, None),
    ("429 after 3 retries even with Retry-After", 429, {"Retry-After": "1"}, 4, None),
    ("timeout backoff", None, {}, 1, 0.5),
    ("timeout 3rd", None, {}, 3, 2.0),
    ("timeout after 3 retries", None, {}, 4, None),
    ("200 not retried", 200, {}, 1, None),
    ("400 not retried", 400, {}, 1, None),
    ("401 not retried here", 401, {}, 1, None),
    ("403 not retried", 403, {"Retry-After": "1"}, 1, None),
    ("404 not retried", 404, {}, 1, None),
    ("408 not retried", 408, {}, 1, None),
    ("409 not retried", 409, {}, 1, None),
    ("501 not retried", 501, {}, 1, None),
    ("505 not retried", 505, {}, 1, None),
]


@pytest.mark.parametrize(
    ("status", "headers", "attempt", "expected"),
    [case[1:] for case in RETRY_CASES],
    ids=[case[0] for case in RETRY_CASES],
)
def test_retry_delay(status: int | None, headers: dict[str, str], attempt: int, expected: float | None) -> None:
    assert retry_delay(status, headers, attempt, NOW, half) == expected


def test_at_most_three_retries() -> None:
    delays = [retry_delay(503, {}, attempt, NOW, half) for attempt in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, None, None]


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_backoff_is_full_jitter_below_the_ceiling(draw: float) -> None:
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0)):
        delay = retry_delay(429, {}, attempt, NOW, lambda: draw)
        assert delay is not None and 0.0 <= delay <= ceiling
        assert delay == pytest.approx(ceiling * draw)


def test_retry_delay_works_with_response_headers() -> None:
    headers = requests.structures.CaseInsensitiveDict({"RETRY-AFTER": "4"})
    assert retry_delay(429, headers, 1, NOW, half) == 4.0


def test_retry_after_against_a_naive_clock() -> None:
    assert retry_after_seconds(http_date(5), NOW.replace(tzinfo=None)) == 5.0
    assert retry_after_seconds(None, NOW) is None


# --- KeepAliveResult ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "ok", "gone"),
    [(200, True, False), (204, True, False), (404, False, True), (401, False, False), (None, False, False)],
)
def test_keep_alive_result_properties(status: int | None, ok: bool, gone: bool) -> None:
    result = KeepAliveResult(status=status)
    assert (result.ok, result.gone) == (ok, gone)


# --- URL, session -----------------------------------------------------------------------------
BASE = {"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}


class _NoTokens:
    def token(self, tenant_id: str) -> str:
        raise AssertionError("no token needed")

    def invalidate(self, tenant_id: str, token: str | None = None) -> None:
        raise AssertionError("no token needed")


@pytest.mark.parametrize(
    ("cloud", "call_id", "expected"),
    [
        ("global", "abc", "https://graph.microsoft.com/v1.0/communications/calls/abc/keepAlive"),
        ("usgov", "a b", "https://graph.microsoft.us/v1.0/communications/calls/a%20b/keepAlive"),
        ("usgovdod", "x/y?z#", "https://dod-graph.microsoft.us/v1.0/communications/calls/x%2Fy%3Fz%23/keepAlive"),
        ("global", "%+:'é", "https://graph.microsoft.com/v1.0/communications/calls/%25%2B%3A%27%C3%A9/keepAlive"),
    ],
)
def test_keep_alive_url(cloud: str, call_id: str, expected: str) -> None:
    settings = load_settings({**BASE, "GRAPH_CLOUD": cloud})
    with requests.Session() as session:
        assert GraphClient(settings, session, _NoTokens()).url(call_id) == expected


def test_keep_alive_url_with_base_override() -> None:
    settings = load_settings({**BASE, "GRAPH_BASE_URL": "https://127.0.0.1:8443/"})
    with requests.Session() as session:
        url = GraphClient(settings, session, _NoTokens()).url("c")
    assert url == "https://127.0.0.1:8443/v1.0/communications/calls/c/keepAlive"


def test_build_session_pools_for_the_concurrency_and_never_retries() -> None:
    with build_session(200) as session:
        adapter = session.get_adapter("https://graph.microsoft.com/")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        assert adapter._pool_maxsize == 200  # type: ignore[attr-defined]
        assert adapter.max_retries.total == 0
        assert session.trust_env
        assert session.headers["User-Agent"].startswith(f"callkeeper/{__version__} ")  # names the app


# --- TokenProvider.check and certificates -------------------------------------------------------
def test_check_names_bad_graph_settings() -> None:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    with requests.Session() as session, pytest.raises(SettingsError) as raised:
        TokenProvider(settings, session).check()
    assert "GRAPH_CLIENT_ID" in str(raised.value) and "GRAPH_CLIENT_SECRET" in str(raised.value)


def test_check_passes_with_a_secret() -> None:
    with requests.Session() as session:
        TokenProvider(load_settings(BASE), session).check()


def _key_and_cert(days: int = 30) -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=60))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    key, key_pem, cert_pem = _key_and_cert()
    _, other_key_pem, _ = _key_and_cert()
    _, expired_key_pem, expired_cert_pem = _key_and_cert(days=-1)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "good": key_pem + cert_pem,
        "cert first": cert_pem + key_pem,
        "key only": key_pem,
        "cert only": cert_pem,
        "mismatch": other_key_pem + cert_pem,
        "expired": expired_key_pem + expired_cert_pem,
        "encrypted": encrypted + cert_pem,
        "ec": ec_key + cert_pem,
        "broken key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + cert_pem,
        "garbage": b"not a pem",
    }


@pytest.mark.parametrize("name", ["good", "cert first"])
def test_load_certificate(tmp_path: Path, pems: dict[str, bytes], name: str) -> None:
    path = tmp_path / "bot.pem"
    path.write_bytes(pems[name])

    loaded = load_certificate(str(path))

    assert loaded.as_msal()["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert loaded.as_msal()["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(loaded.sha256_thumbprint) == 64
    assert "PRIVATE" not in repr(loaded)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("key only", "no PEM certificate"),
        ("cert only", "no PEM private key"),
        ("mismatch", "does not match"),
        ("expired", "expired"),
        ("encrypted", "encrypted"),
        ("ec", "RSA"),
        ("broken key", "cannot be parsed"),
        ("garbage", "no PEM private key"),
    ],
)
def test_unusable_certificate_is_a_settings_error(
    tmp_path: Path, pems: dict[str, bytes], name: str, problem: str
) -> None:
    path = tmp_path / "bot.pem"
    path.write_bytes(pems[name])
    settings = load_settings({**BASE, "GRAPH_CLIENT_SECRET": "", "GRAPH_CLIENT_CERTIFICATE_PATH": str(path)})

    with requests.Session() as session, pytest.raises(SettingsError) as raised:
        TokenProvider(settings, session).check()

    message = str(raised.value)
    assert message.startswith("invalid settings: GRAPH_CLIENT_CERTIFICATE_PATH") and problem in message
    assert "BEGIN" not in message and "MII" not in message  # nothing of the file is echoed


def test_missing_certificate_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_certificate(str(tmp_path / "absent.pem"))
    assert "GRAPH_CLIENT_CERTIFICATE_PATH cannot be read" in str(raised.value)


def test_not_sent_is_neither_success_nor_failure() -> None:
    result = KeepAliveResult.not_sent()
    assert (result.sent, result.ok, result.gone, result.status, result.attempts) == (False, False, False, None, 0)
    assert KeepAliveResult(status=None, error="token: invalid_client").sent  # a token failure is a failure


def test_graph_fields_for_the_cleanup_event() -> None:
    result = KeepAliveResult(
        status=404,
        error="404 itemNotFound",
        code="itemNotFound",
        message="m" * 2000,
        request_id="r",
        client_request_id="c",
        attempts=1,
    )
    assert result.graph_fields() == {
        "status": 404,
        "code": "itemNotFound",
        "message": "m" * 1024,
        "requestId": "r",
        "clientRequestId": "c",
    }


class _TlsRefusingSession(requests.Session):
    def post(self, url, **kwargs):  # type: ignore[override]
        raise requests.exceptions.SSLError("certificate verify failed: unable to get local issuer certificate")


class _StaticTokens:
    def token(self, tenant_id: str) -> str:
        return "t"

    def invalidate(self, tenant_id: str, token: str | None = None) -> None:
        pass


def test_a_tls_failure_to_graph_is_named_and_points_at_the_ca_bundle() -> None:
    settings = load_settings({"GRAPH_BASE_URL": "https://graph.example"})
    client = GraphClient(settings, _TlsRefusingSession(), _StaticTokens(), sleep=lambda s: None, rng=lambda: 0.0)
    result = client.keep_alive("c1", "t1")
    assert (result.status, result.error) == (None, "tls error (see REQUESTS_CA_BUNDLE)")
    assert (result.attempts, result.retries) == (4, 3)  # retried like a connection error


def test_a_tls_failure_to_the_identity_provider_is_named_and_points_at_the_ca_bundle() -> None:
    settings = load_settings({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s3cret", "GRAPH_DRY_RUN": "false"})
    error = TokenProvider(settings, requests.Session())._wrap(requests.exceptions.SSLError("verify failed"), "t1")
    assert error.code == "tls_error"
    assert "REQUESTS_CA_BUNDLE" in str(error) and "s3cret" not in str(error)
