"""App tokens for Microsoft Graph, from MSAL.

One `msal.ConfidentialClientApplication` per tenant, created on first use and kept for the life of the
process, so its token cache carries tokens across ticks (`acquire_token_for_client` serves from the
cache while a token is valid). A per-tenant lock makes many concurrent callers of one tenant on a
cold cache send a single token request.

The credential is exactly one of (see `Settings`):

- a client secret (`GRAPH_CLIENT_SECRET`);
- a certificate (`GRAPH_CLIENT_CERTIFICATE_PATH`, a PEM holding an RSA private key and its certificate;
  MSAL signs a PS256 assertion carrying the certificate's SHA-256 thumbprint and `x5c`, so subject
  name/issuer auth works too);
- a federated credential (`GRAPH_MANAGED_IDENTITY_CLIENT_ID`): the client assertion is a token of the
  user-assigned managed identity for `{token exchange audience}/.default`, from azure-identity's
  `ManagedIdentityCredential` (which caches it).

Errors never carry a token, a secret or a key.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msal  # type: ignore[import-untyped]
import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from msal.exceptions import MsalServiceError  # type: ignore[import-untyped]

from shared.errors import SettingsError, TokenError
from shared.logsafe import get_logger, safe
from shared.settings import Settings

logger = get_logger(__name__)

CERTIFICATE_SETTING = "GRAPH_CLIENT_CERTIFICATE_PATH"
# The identity provider's `error` and `correlation_id` are its to choose: cut like Graph's strings in an event
# (shared/events.py); `lastError` bounds `token: <code>` again to 256 characters (`models.last_error_text`).
CODE_LIMIT = 1024
# A token handed out is handed out again for up to this long without asking MSAL (whose cache lookup,
# under a lock per tenant, costs more than the rest of a keepAlive's own Python), unless it expires
# within EXPIRY_MARGIN of that. invalidate() drops it like MSAL's copy.
RECENT_SECONDS = 60.0
EXPIRY_MARGIN = 300.0
_MAX_PEM_BYTES = 1 << 20
_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class AccessTokenSource(Protocol):
    """What a federated credential needs from azure-identity: `get_token(scope).token`."""

    def get_token(self, *scopes: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A usable certificate credential, as MSAL takes it. The key stays out of `repr`."""

    private_key_pem: str = field(repr=False)
    certificate_pem: str
    sha256_thumbprint: str
    not_after: datetime

    def as_msal(self) -> dict[str, str]:
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}


def load_certificate(path: str, *, now: datetime | None = None) -> CertificateCredential:
    """Read a PEM with an RSA private key and its certificate, or raise `SettingsError` naming the setting.

    Problems are described without ever echoing the file's content.
    """

    def problem(text: str) -> SettingsError:
        return SettingsError([f"{CERTIFICATE_SETTING} {text} (path {path!r})"])

    try:
        with open(Path(path), "rb") as handle:
            data = handle.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise problem(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > _MAX_PEM_BYTES:
        raise problem("is too large for a PEM certificate")
    key_match = _KEY_BLOCK.search(data)
    if key_match is None:
        raise problem("holds no PEM private key")
    if key_match.group(1) == b"ENCRYPTED PRIVATE KEY":
        raise problem("holds an encrypted private key; the app needs it unencrypted")
    try:
        key = serialization.load_pem_private_key(key_match.group(0), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise problem("holds a private key that cannot be parsed") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise problem("must hold an RSA private key")
    cert_match = _CERT_BLOCK.search(data)
    if cert_match is None:
        raise problem("holds no PEM certificate next to the private key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_match.group(0))
    except ValueError:
        raise problem("holds a certificate that cannot be parsed") from None
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise problem("holds a private key that does not match its certificate")
    not_after = certificate.not_valid_after_utc
    if not_after <= (now or datetime.now(UTC)):
        raise problem(f"holds a certificate that expired at {not_after.isoformat()}")
    return CertificateCredential(
        private_key_pem=key_match.group(0).decode("ascii"),
        certificate_pem=cert_match.group(0).decode("ascii"),
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex(),
        not_after=not_after,
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _MsalHttpClient:
    """MSAL's http client: the shared `requests` session with a timeout on every request.

    MSAL passes no timeout of its own. `close()` leaves the session open: its owner closes it.
    """

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._session.post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._session.get(url, **kwargs)

    def close(self) -> None:
        pass


def _default_managed_identity(settings: Settings) -> AccessTokenSource:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)


class TokenProvider:
    """App tokens per tenant. Thread-safe; build one per process and share it."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session,
        *,
        managed_identity: Callable[[], AccessTokenSource] | None = None,
        failure_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._http = _MsalHttpClient(session, settings.request_timeout)
        self._managed_identity_factory = managed_identity or (lambda: _default_managed_identity(settings))
        self._managed_identity: AccessTokenSource | None = None
        self._certificate: CertificateCredential | None = None
        self._guard = threading.Lock()  # guards the dicts below and the lazily built credentials
        self._assertion_lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._apps: dict[str, Any] = {}
        self._failures: dict[str, tuple[float, TokenError]] = {}  # tenant -> (until, error)
        self._issued: dict[str, str] = {}  # tenant -> digest of the token last handed out
        self._recent: dict[str, tuple[str, float]] = {}  # tenant -> (token, clock() until which it is reused)
        self._failure_ttl = failure_ttl
        self._clock = clock

    @property
    def scope(self) -> str:
        return f"{self._settings.graph_base_url}/.default"

    def check(self) -> None:
        """Raise `SettingsError` when the Graph settings or the certificate cannot work. No network."""
        if self._settings.tick_problems:
            raise SettingsError(self._settings.tick_problems)
        if self._settings.certificate_path and not self._settings.dry_run:
            self._load_certificate()

    def token(self, tenant_id: str) -> str:
        """An app token for Graph in `tenant_id`, from MSAL's cache or the identity provider.

        A failure is remembered for `failure_ttl` seconds and raised again without asking the
        identity provider, so a wrong credential costs one token request per tenant, not one per call.
        """
        tenant = tenant_id.lower()
        recent = self._recent.get(tenant)
        if recent is not None and self._clock() < recent[1]:
            return recent[0]
        with self._lock_for(tenant):
            remembered = self._failures.get(tenant)
            if remembered is not None and self._clock() < remembered[0]:
                known = remembered[1]
                raise TokenError(str(known), tenant_id=tenant, code=known.code)
            try:
                token, expires_in = self._acquire(tenant)
            except TokenError as exc:
                self._failures[tenant] = (self._clock() + self._failure_ttl, exc)
                logger.error("graph token failed tenantId=%s error=%s detail=%s", tenant, safe(exc.code), exc)
                raise
            self._failures.pop(tenant, None)
            self._issued[tenant] = _digest(token)
            reuse = min(RECENT_SECONDS, expires_in - EXPIRY_MARGIN) if expires_in is not None else 0.0
            if reuse > 0:
                self._recent[tenant] = (token, self._clock() + reuse)
            return token

    def invalidate(self, tenant_id: str, token: str | None = None) -> None:
        """Drop the cached app token of `tenant_id`: the next `token()` takes a fresh one.

        With `token` (the one Graph refused), nothing is dropped when a fresher token was handed out
        meanwhile: many requests refused at once cause one refresh, not one each.
        """
        tenant = tenant_id.lower()
        with self._lock_for(tenant):
            if token is not None and self._issued.get(tenant) != _digest(token):
                return
            self._failures.pop(tenant, None)
            self._issued.pop(tenant, None)
            self._recent.pop(tenant, None)
            app = self._apps.get(tenant)
            if app is not None:
                app.remove_tokens_for_client()
                logger.debug("graph token dropped tenantId=%s", tenant)

    # --- internals -----------------------------------------------------------------------------
    def _lock_for(self, tenant: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(tenant)
            if lock is None:
                lock = self._locks[tenant] = threading.Lock()
            return lock

    def _acquire(self, tenant: str) -> tuple[str, float | None]:
        """A token from MSAL, and the seconds it is valid for (None when MSAL does not say)."""
        try:
            app = self._apps.get(tenant)
            if app is None:
                app = self._build_app(tenant)
                self._apps[tenant] = app
            result = app.acquire_token_for_client(scopes=[self.scope])
        except SettingsError as exc:
            raise TokenError(self._scrub(str(exc)), tenant_id=tenant, code="invalid_settings") from None
        except Exception as exc:  # MSAL, requests and azure-identity raise many kinds: wrap them all
            raise self._wrap(exc, tenant) from exc
        if not isinstance(result, dict) or "access_token" not in result:
            raise self._refused(result if isinstance(result, dict) else {}, tenant)
        if result.get("token_source") == "identity_provider":
            logger.info(
                "graph token acquired tenantId=%s expiresIn=%s source=identity_provider",
                tenant,
                result.get("expires_in"),
            )
        token = result["access_token"]
        if not isinstance(token, str):
            raise TokenError(f"no_token: no access token for tenant {tenant}", tenant_id=tenant, code="no_token")
        expires_in = result.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else None

    def _build_app(self, tenant: str) -> Any:
        settings = self._settings
        if settings.tick_problems:
            raise SettingsError(settings.tick_problems)
        logger.debug("graph token client created tenantId=%s authority=%s", tenant, settings.authority_host)
        return msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=self._client_credential(),
            authority=f"{settings.authority_host}/{tenant}",
            instance_discovery=settings.instance_discovery,
            http_client=self._http,
            app_name="callkeeper",
        )

    def _client_credential(self) -> str | dict[str, Any]:
        settings = self._settings
        if settings.client_secret:
            return settings.client_secret
        if settings.certificate_path:
            return self._load_certificate().as_msal()
        if settings.managed_identity_client_id:
            return {"client_assertion": self._federated_assertion}
        raise SettingsError(
            [
                "exactly one of GRAPH_CLIENT_SECRET, GRAPH_CLIENT_CERTIFICATE_PATH and "
                "GRAPH_MANAGED_IDENTITY_CLIENT_ID must be set (none is set)"
            ]
        )

    def _load_certificate(self) -> CertificateCredential:
        with self._guard:
            if self._certificate is None:
                assert self._settings.certificate_path is not None
                self._certificate = load_certificate(self._settings.certificate_path)
            return self._certificate

    def _federated_assertion(self) -> str:
        """MSAL's client assertion for a federated credential: a managed-identity token for the exchange audience."""
        with self._guard:
            if self._managed_identity is None:
                self._managed_identity = self._managed_identity_factory()
            credential = self._managed_identity
        with self._assertion_lock:  # one managed-identity request when several tenants start cold at once
            token = credential.get_token(f"{self._settings.token_exchange_audience}/.default").token
        if not isinstance(token, str):
            raise TypeError("the managed identity credential returned no token")
        return token

    def _refused(self, result: Mapping[str, Any], tenant: str) -> TokenError:
        code = str(result.get("error") or "no_token")[:CODE_LIMIT]
        lines = str(result.get("error_description") or "").strip().splitlines() or ["no description"]
        description = lines[0][:500]
        correlation = str(result.get("correlation_id"))[:CODE_LIMIT]
        message = f"{code}: {description} (tenantId={tenant} correlationId={safe(correlation)})"
        return TokenError(self._scrub(message), tenant_id=tenant, code=code)

    def _wrap(self, exc: Exception, tenant: str) -> TokenError:
        if isinstance(exc, requests.Timeout):
            code, detail = "timeout", "the identity provider did not answer in time"
        elif isinstance(exc, requests.exceptions.SSLError):
            code = "tls_error"
            detail = f"the identity provider's TLS certificate is not trusted ({self._settings.tls_hint()})"
        elif isinstance(exc, requests.ConnectionError):
            code, detail = "connection_error", "the identity provider could not be reached"
        elif isinstance(exc, requests.HTTPError | MsalServiceError):
            code, detail = "server_error", f"the identity provider failed: {exc}"
        elif isinstance(exc, OSError) and self._settings.ca_bundle_problem():  # requests: the bundle went missing
            code, detail = "ca_bundle_missing", str(self._settings.ca_bundle_problem())
        elif type(exc).__module__.startswith("azure."):
            code, detail = "managed_identity", f"the managed identity token failed: {type(exc).__name__}: {exc}"
        else:
            code, detail = "error", f"{type(exc).__name__}: {exc}"
        message = f"{code}: {detail[:500]} (tenantId={tenant})"
        return TokenError(self._scrub(message), tenant_id=tenant, code=code)

    def _scrub(self, text: str) -> str:
        secret = self._settings.client_secret
        return text.replace(secret, "***") if secret else text
