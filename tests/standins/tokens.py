"""The access tokens the stand-ins issue, shared so that one stand-in can check another's tokens."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class IssuedToken:
    token: str
    tenant: str | None  # the tenant of an app token; None for a managed-identity token
    client_id: str
    audience: str  # the resource the token is for (the scope without "/.default")
    expires_at: float  # epoch seconds
    revoked: bool = False

    def valid(self, now: float | None = None) -> bool:
        return not self.revoked and (now if now is not None else time.time()) < self.expires_at


class TokenRegistry:
    """Issues opaque tokens (or JWT-shaped ones) and answers which are still valid. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}

    def issue(
        self, *, tenant: str | None, client_id: str, audience: str, lifetime: float, jwt_shaped: bool = False
    ) -> IssuedToken:
        if jwt_shaped:  # what a managed identity hands out: a JWT (unsigned here; only its issuer checks it)
            claims = {
                "aud": audience,
                "appid": client_id,
                "exp": int(time.time() + lifetime),
                "jti": secrets.token_hex(8),
            }
            token = ".".join(
                base64.urlsafe_b64encode(part).rstrip(b"=").decode("ascii")
                for part in (
                    json.dumps({"alg": "RS256", "typ": "JWT"}).encode(),
                    json.dumps(claims).encode(),
                    secrets.token_bytes(32),
                )
            )
        else:
            token = "standin-" + secrets.token_urlsafe(32)
        issued = IssuedToken(token, tenant, client_id, audience, time.time() + lifetime)
        with self._lock:
            self._tokens[token] = issued
        return issued

    def lookup(self, token: str) -> IssuedToken | None:
        with self._lock:
            return self._tokens.get(token)

    def revoke_all(self) -> int:
        """Revoke every token issued so far; returns how many were still valid."""
        with self._lock:
            count = sum(1 for issued in self._tokens.values() if issued.valid())
            self._tokens = {key: replace(issued, revoked=True) for key, issued in self._tokens.items()}
        return count

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = {key: replace(issued, expires_at=0.0) for key, issued in self._tokens.items()}

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
