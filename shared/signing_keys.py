"""The signing keys of Graph's notification tokens: the OpenID configuration's key set, cached.

- Fetched over HTTPS only: the configuration at `GRAPH_NOTIFICATION_OPENID_URL` and its `jwks_uri`
  (a redirect through `http://` counts as `http://`); anything else is refused with an ERROR.
- Each document is read as a stream and given up past `MAX_DOCUMENT_BYTES`, so a huge answer costs
  1 MiB of memory at most, and at most `FETCH_DEADLINE_SECONDS` however slowly it drips.
- Keys are cached up to 24 hours. An unknown `kid` makes it fetch again once, at most once a minute;
  while no usable keys are cached, at most once every 10 seconds.
- A request whose key is cached never waits: it reads the cache under a short lock, and only requests
  that lack their key queue up behind a fetch in progress (one fetch at a time).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jwt
import requests

from shared.errors import InvalidToken, KeysUnavailable
from shared.logsafe import get_logger, safe

logger = get_logger(__name__)

ALGORITHM = "RS256"
KEYS_LIFETIME = timedelta(hours=24)
REFETCH_INTERVAL = timedelta(minutes=1)  # at most one fetch a minute while keys are cached
RETRY_INTERVAL = timedelta(seconds=10)  # at most one attempt every 10 s while no usable keys are cached
FETCH_TIMEOUT_SECONDS = 10.0
FETCH_DEADLINE_SECONDS = 30.0
MAX_DOCUMENT_BYTES = 1 << 20
_CHUNK = 64 * 1024


class NotificationKeys:
    """The signing keys of the OpenID configuration at `url`. Thread-safe."""

    def __init__(self, url: str, session: requests.Session, now: Callable[[], datetime]) -> None:
        self._url = url
        self._session = session
        self._now = now
        self._lock = threading.Lock()  # guards the cache; never held during a fetch
        self._fetching = threading.Lock()  # one fetch at a time; only requests lacking their key wait on it
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: datetime | None = None  # last successful fetch
        self._attempted_at: datetime | None = None  # last attempt, successful or not

    def key_for(self, kid: str) -> jwt.PyJWK:
        """The key with this id. Raises `InvalidToken` for an unknown id or when no keys can be had."""
        with self._lock:
            key = self._cached(kid, self._now())
        if key is not None:
            return key
        with self._fetching:
            with self._lock:
                now = self._now()
                key = self._cached(kid, now)  # the fetch this request waited for may have brought it
                due = key is None and self._due(kid, now)
                if due:
                    self._attempted_at = now
            if due:
                keys = self._fetch_logged(kid)
                with self._lock:
                    if keys is not None:
                        self._keys, self._fetched_at = keys, now
                    key = self._cached(kid, self._now())
        if key is not None:
            return key
        with self._lock:
            usable = self._usable(self._now())
        raise InvalidToken("token signing key is unknown" if usable else "signing keys unavailable")

    def _usable(self, now: datetime) -> bool:
        return self._fetched_at is not None and now - self._fetched_at <= KEYS_LIFETIME

    def _cached(self, kid: str, now: datetime) -> jwt.PyJWK | None:
        return self._keys.get(kid) if self._usable(now) else None

    def _due(self, kid: str, now: datetime) -> bool:
        if self._attempted_at is None:
            return True
        interval = REFETCH_INTERVAL if self._usable(now) else RETRY_INTERVAL
        return now - self._attempted_at >= interval

    def _fetch_logged(self, kid: str) -> dict[str, jwt.PyJWK] | None:
        """Fetch the keys (no lock held); on failure log an ERROR and keep what is cached."""
        if self._fetched_at is not None:
            logger.info("notification signing key unknown kid=%s: fetching the keys again", safe(kid[:64]))
        try:
            keys = self._fetch()
        except KeysUnavailable as error:
            logger.error("notification signing keys unavailable url=%s error=%s", safe(self._url), error)
            return None
        logger.info("notification signing keys fetched count=%d", len(keys))
        return keys

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        config = self._get_json(self._url)
        jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable("the OpenID configuration has no jwks_uri")
        document = self._get_json(jwks_uri)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise KeysUnavailable("the key set has no keys")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            try:
                keys[kid] = jwt.PyJWK(entry, algorithm=ALGORITHM)
            except jwt.PyJWTError:
                logger.warning("notification signing key unreadable kid=%s", safe(kid[:64]))
        if not keys:
            raise KeysUnavailable("the key set holds no RSA signing key")
        return keys

    def _get_json(self, url: str) -> Any:
        if not url.lower().startswith("https://"):
            raise KeysUnavailable(f"refused {safe(url[:200])}: signing keys are fetched over https only")
        try:
            response = self._session.get(
                url, timeout=FETCH_TIMEOUT_SECONDS, headers={"Accept": "application/json"}, stream=True
            )
        except requests.RequestException as error:
            raise KeysUnavailable(type(error).__name__) from None
        with response:
            hops = [r.url for r in response.history] + [response.url]
            if not all(hop.lower().startswith("https://") for hop in hops):
                raise KeysUnavailable(f"refused a redirect from {safe(url[:200])} to http: https only")
            if response.status_code != 200:
                raise KeysUnavailable(f"HTTP {response.status_code} from {safe(url[:200])}")
            body = _read_bounded(response, url)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise KeysUnavailable(f"document from {safe(url[:200])} is not JSON") from None


def _read_bounded(response: requests.Response, url: str) -> bytes:
    """The body, read a chunk at a time: given up past `MAX_DOCUMENT_BYTES` or `FETCH_DEADLINE_SECONDS`."""
    too_large = KeysUnavailable(f"document from {safe(url[:200])} is larger than {MAX_DOCUMENT_BYTES} bytes")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise too_large
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise too_large
            if time.monotonic() > deadline:
                raise KeysUnavailable(f"document from {safe(url[:200])} took over {FETCH_DEADLINE_SECONDS:g} s")
            chunks.append(chunk)
    except requests.RequestException as error:
        raise KeysUnavailable(type(error).__name__) from None
    return b"".join(chunks)
