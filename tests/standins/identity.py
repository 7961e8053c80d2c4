"""A Microsoft Entra ID stand-in: what MSAL's `ConfidentialClientApplication` needs for app tokens.

With `instance_discovery=False` MSAL 1.39 sends exactly two kinds of requests (msal/authority.py):

- `GET /{tenant}/v2.0/.well-known/openid-configuration` once per app (tenant discovery);
- `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, `client_id`, `scope`,
  `client_info=1` and either `client_secret` or `client_assertion_type` + `client_assertion`.

The token endpoint checks the client id, the scope (`{resource}/.default`) and the credential: the
secret; a certificate's JWT assertion (claims, and its signature against the configured certificate);
or a federated assertion, which must be a valid token of the managed-identity stand-in for the token
exchange audience. Failures can be scripted (`fail_next`); all tokens can be revoked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .server import RESET, Reply, Request, Service
from .tokens import TokenRegistry

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATED_AUDIENCES = frozenset({"api://AzureADTokenExchange", "api://AzureADTokenExchangeUSGov"})
_DISCOVERY = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
_KEYS = re.compile(r"^/([^/]+)/discovery/v2\.0/keys$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")

__all__ = ["FEDERATED_AUDIENCES", "IdentityStandin", "TokenRequestRecord", "RESET", "Reply", "entra_error"]


@dataclass(frozen=True)
class TokenRequestRecord:
    """One request to the token endpoint (secrets and assertions left out)."""

    tenant: str
    credential: str | None  # "secret", "certificate", "federated", or None when none was recognised
    client_id: str | None
    scope: str | None
    status: int | None  # what the stand-in answered; None for a reset
    client_request_id: str | None
    arrival: float


def entra_error(status: int, error: str, code: int, description: str, correlation_id: str | None = None) -> Reply:
    """An error answer shaped like Entra ID's (`error`, `error_description`, `error_codes`, ids)."""
    trace_id = str(uuid.uuid4())
    correlation = correlation_id or str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return Reply(
        status,
        body={
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation,
        },
    )


def _b64json(part: str) -> dict[str, Any]:
    padded = part + "=" * (-len(part) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


class IdentityStandin(Service):
    """Entra ID for one app registration (`client_id`), any tenant. Thread-safe."""

    def __init__(
        self,
        *,
        tokens: TokenRegistry,
        federated: TokenRegistry | None = None,
        client_id: str = "00000000-0000-0000-0000-00000000c11e",
        client_secret: str = "standin-client-secret",
    ) -> None:
        self.tokens = tokens
        self.federated = federated
        self._defaults = (client_id, client_secret)
        self._lock = threading.Lock()
        self.reset()

    # --- configuration -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget counters, scripted failures and configuration changes (tokens are kept: see revoke_all)."""
        with self._lock:
            self.client_id, self.client_secret = self._defaults
            self.resource: str | None = None  # the expected scope is f"{resource}/.default"; None: any .default
            self.certificate: x509.Certificate | None = None
            self.federated_client_id: str | None = None  # the managed identity trusted by the federated credential
            self.expires_in = 3599
            self.latency = 0.0
            self.token_requests: Counter[str] = Counter()
            self.discovery_requests: Counter[str] = Counter()
            self.records: list[TokenRequestRecord] = []
            self._failures: dict[str | None, deque[Reply]] = {}

    def configure(
        self,
        *,
        resource: str | None = None,
        client_secret: str | None = None,
        certificate_pem: bytes | None = None,
        federated_client_id: str | None = None,
    ) -> None:
        with self._lock:
            if resource is not None:
                self.resource = resource.rstrip("/")
            if client_secret is not None:
                self.client_secret = client_secret
            if certificate_pem is not None:
                self.certificate = x509.load_pem_x509_certificate(certificate_pem)
            if federated_client_id is not None:
                self.federated_client_id = federated_client_id

    def fail_next(self, *replies: Reply, tenant: str | None = None) -> None:
        """Answer the next token requests (of `tenant`, or of any tenant) with these replies, in order."""
        key = tenant.lower() if tenant else None
        with self._lock:
            self._failures.setdefault(key, deque()).extend(replies)

    def revoke_all(self) -> int:
        """Revoke every app token issued so far: Graph then answers 401 until a fresh token is taken."""
        return self.tokens.revoke_all()

    def requests_of(self, tenant: str) -> int:
        with self._lock:
            return self.token_requests[tenant.lower()]

    # --- serving -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        base = f"https://{request.header('Host')}"
        path = request.path
        if request.method == "GET" and (match := _DISCOVERY.match(path)):
            tenant = match.group(1).lower()
            with self._lock:
                self.discovery_requests[tenant] += 1
            return Reply(200, body=self._openid_configuration(base, match.group(1)))
        if request.method == "GET" and _KEYS.match(path):
            return Reply(200, body={"keys": []})
        if request.method == "POST" and (match := _TOKEN.match(path)):
            reply, record = self._token(request, base, match.group(1))
            with self._lock:
                self.records.append(record)
            if self.latency and not reply.reset:
                reply = Reply(reply.status, reply.headers, reply.body, reply.delay + self.latency)
            return reply
        return Reply(404, body={"error": "not_found", "error_description": f"no stand-in route for {path}"})

    @staticmethod
    def _openid_configuration(base: str, tenant: str) -> dict[str, Any]:
        root = f"{base}/{tenant}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "WW",
        }

    def _token(self, request: Request, base: str, tenant_segment: str) -> tuple[Reply, TokenRequestRecord]:
        tenant = tenant_segment.lower()
        form = request.form()
        correlation = request.header("client-request-id")
        with self._lock:
            self.token_requests[tenant] += 1
            scripted = self._pop_failure(tenant)
            client_id, secret, resource = self.client_id, self.client_secret, self.resource
            certificate, federated_client_id, expires_in = self.certificate, self.federated_client_id, self.expires_in
        credential = "secret" if form.get("client_secret") else ("assertion" if form.get("client_assertion") else None)

        def record(reply: Reply, kind: str | None = credential) -> tuple[Reply, TokenRequestRecord]:
            return reply, TokenRequestRecord(
                tenant=tenant,
                credential=kind,
                client_id=form.get("client_id"),
                scope=form.get("scope"),
                status=None if reply.reset else reply.status,
                client_request_id=correlation,
                arrival=request.arrival,
            )

        if scripted is not None:
            return record(scripted)
        if form.get("grant_type") != "client_credentials":
            return record(
                entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
            )
        if form.get("client_id") != client_id:
            return record(
                entra_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
                    correlation,
                )
            )
        scope = form.get("scope") or ""
        if not scope.endswith("/.default") or " " in scope or (resource and scope != f"{resource}/.default"):
            return record(
                entra_error(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid.")
            )
        if form.get("client_secret"):
            if secret and secrets.compare_digest(form["client_secret"].encode(), secret.encode()):
                return record(self._issue(tenant, client_id, scope, expires_in), "secret")
            return record(
                entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
                    correlation,
                )
            )
        assertion = form.get("client_assertion")
        if not assertion or form.get("client_assertion_type") != JWT_BEARER:
            return record(
                entra_error(
                    400,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                    correlation,
                )
            )
        if self.federated is not None and (issued := self.federated.lookup(assertion)) is not None:
            if not issued.valid():
                return record(
                    entra_error(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
                )
            if issued.audience not in FEDERATED_AUDIENCES or (
                federated_client_id is not None and issued.client_id != federated_client_id
            ):
                return record(
                    entra_error(
                        400,
                        "invalid_client",
                        70021,
                        "No matching federated identity record found for presented assertion.",
                        correlation,
                    ),
                    "federated",
                )
            return record(self._issue(tenant, client_id, scope, expires_in), "federated")
        problem = self._check_assertion(assertion, f"{base}/{tenant_segment}/oauth2/v2.0/token", client_id, certificate)
        if problem:
            return record(entra_error(401, "invalid_client", 700027, problem, correlation), "certificate")
        return record(self._issue(tenant, client_id, scope, expires_in), "certificate")

    def _pop_failure(self, tenant: str) -> Reply | None:
        for key in (tenant, None):
            queue = self._failures.get(key)
            if queue:
                return queue.popleft()
        return None

    @staticmethod
    def _check_assertion(
        assertion: str, token_endpoint: str, client_id: str, certificate: x509.Certificate | None
    ) -> str | None:
        """Why this certificate assertion is refused, or None when it is good."""
        parts = assertion.split(".")
        if len(parts) != 3:
            return "Client assertion is not a JWT."
        try:
            header, claims = _b64json(parts[0]), _b64json(parts[1])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return "Client assertion failed to parse."
        if claims.get("aud") != token_endpoint:
            return f"Client assertion audience claim does not match Realm issuer {token_endpoint}."
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "Client assertion issuer or subject does not match the client id."
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time():
            return "Client assertion is not within its valid time range."
        if certificate is None:
            return "Client assertion contains an invalid signature. No certificate is registered for this app."
        thumbprint = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
        presented = header.get("x5t#S256")
        if presented is not None and str(presented).rstrip("=") != thumbprint:  # MSAL keeps the padding
            return "Client assertion contains an invalid signature. [Reason - The key was not found.]"
        algorithm = header.get("alg")
        if algorithm not in ("PS256", "RS256"):
            return f"Client assertion uses an unsupported algorithm {algorithm!r}."
        try:
            jwt.decode(
                assertion,
                key=certificate.public_key(),  # type: ignore[arg-type]
                algorithms=[algorithm],
                audience=token_endpoint,
                issuer=client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"Client assertion contains an invalid signature. [Reason - {type(exc).__name__}]"
        return None

    def _issue(self, tenant: str, client_id: str, scope: str, expires_in: int) -> Reply:
        issued = self.tokens.issue(
            tenant=tenant, client_id=client_id, audience=scope.removesuffix("/.default"), lifetime=expires_in
        )
        return Reply(
            200,
            body={
                "token_type": "Bearer",
                "expires_in": expires_in,
                "ext_expires_in": expires_in,
                "access_token": issued.token,
            },
        )
