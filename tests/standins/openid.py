"""A stand-in for the OpenID configuration of Graph's notification tokens, and a way to mint such tokens.

Serves `/.well-known/OpenIdConfiguration` (issuer, `jwks_uri`, RS256) and `/keys` (the JWKS of the
signing keys it publishes), counts the fetches of each, can rotate its keys, fail on purpose, and
signs tokens with `sign(claims, kid=..., key=..., alg=...)`: RS256 with a published key or any other
RSA key, `none` (unsigned), or HS256 keyed with the public key's PEM (the algorithm-confusion attack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .server import Reply, Request, Service

CONFIG_PATH = "/.well-known/OpenIdConfiguration"
KEYS_PATH = "/keys"
ISSUER = "https://api.botframework.com"


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its key id."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(
            kid or f"standin-{uuid.uuid4().hex[:12]}", rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as Microsoft publishes it (no `alg`; `use: sig`)."""
        public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": public["n"], "e": public["e"]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class OpenIdStandin(Service):
    """The OpenID configuration and its key set. Thread-safe; `base_url` is set once the server runs."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = list(keys) if keys else [SigningKey.generate()]
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._published = list(self._initial)
            self._current = self._initial[0]
            self.config_fetches = 0
            self.keys_fetches = 0
            self.failure: Reply | None = None  # answered to every request while set
            self.hold: threading.Event | None = None  # while set, a configuration request waits for it
            self.held = threading.Event()  # set once a configuration request is waiting on `hold`

    # --- what it serves ---
    def handle(self, request: Request) -> Reply:
        hold = self.hold
        if hold is not None and request.path == CONFIG_PATH:  # a slow endpoint, released by the test
            self.held.set()
            hold.wait(30)
        with self._lock:
            if request.method != "GET":
                return Reply(405)
            if request.path == CONFIG_PATH:
                self.config_fetches += 1
                if self.failure is not None:
                    return self.failure
                return Reply(body=self.configuration())
            if request.path == KEYS_PATH:
                self.keys_fetches += 1
                if self.failure is not None:
                    return self.failure
                return Reply(body={"keys": [key.jwk() for key in self._published]})
            return Reply(404)

    def configuration(self) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com/v1/.well-known/keys",
            "jwks_uri": self.base_url + KEYS_PATH,
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    @property
    def config_url(self) -> str:
        return self.base_url + CONFIG_PATH

    @property
    def fetches(self) -> int:
        """How many times the key set was fetched."""
        with self._lock:
            return self.keys_fetches

    # --- keys ---
    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self._current

    def rotate(self, *, keep_old: bool = True) -> SigningKey:
        """Publish a new key and sign with it from now on; `keep_old=False` withdraws the others."""
        new = SigningKey.generate()
        with self._lock:
            self._published = [new, *self._published] if keep_old else [new]
            self._current = new
        return new

    # --- tokens ---
    @staticmethod
    def claims(*, audience: str, tenant: str, lifetime: float = 3600.0, **overrides: Any) -> dict[str, Any]:
        """Claims like those of a real notification token; `name=None` leaves a claim out."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "tid": tenant,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": int(now + lifetime),
            "serviceurl": "https://api.botframework.com",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str | None = None,
        key: SigningKey | None = None,
        alg: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A compact JWT of `claims`, signed with `key` (default: the current key), `kid` defaulting to the key's.

        `headers` are added to the JOSE header as given (`name=None` leaves one out), unchecked.
        """
        key = key or self.current
        header: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": kid if kid is not None else key.kid}
        header.update(headers or {})
        header = {name: value for name, value in header.items() if value is not None}  # `name=None` leaves it out
        signing_input = _segment(header) + "." + _segment(claims)
        if alg == "RS256":
            rs256 = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
            return signing_input + "." + _b64(rs256.sign(signing_input.encode("ascii"), key.private_key))
        if alg == "none":
            return signing_input + "."
        if alg == "HS256":  # keyed with the public key: what a verifier that trusts the header's alg would accept
            digest = hmac.new(key.public_pem, signing_input.encode("ascii"), hashlib.sha256).digest()
            return signing_input + "." + _b64(digest)
        raise ValueError(f"the stand-in cannot sign with {alg}")


def tamper(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_segment(claims)}.{signature}"
