"""The signing keys of Graph's notification tokens: the OpenID configuration's key set, cached.

- Fetched over HTTPS only: the configuration at `GRAPH_NOTIFICATION_OPENID_URL` and its `jwks_uri`
  (a redirect through `http://` counts as `http://`); anything else is refused with an ERROR.
- Each document is read as a stream and given up past `MAX_DOCUMENT_BYTES`, so a huge answer costs
  1 MiB of memory at most. Both documents together get `FETCH_DEADLINE_SECONDS`, enforced during the
  reads: the body is read with `read1` (what has arrived, not a whole chunk) and before every read the
  socket's timeout is cut to the time left, so a peer that drips a byte a second cannot hold a request
  past the deadline. (Connecting and the answer's headers wait at most `FETCH_TIMEOUT_SECONDS` per read.)
- Keys are cached up to 24 hours. An unknown `kid` makes it fetch again once, at most once a minute;
  while no usable keys are cached, at most once every 10 seconds.
- A request whose key is cached never waits: it reads the cache under a short lock, and only requests
  that lack their key queue up behind a fetch in progress (one fetch at a time).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jwt
import requests
import urllib3

from shared import jsonsafe
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

    def __init__(
        self,
        url: str,
        session: requests.Session,
        now: Callable[[], datetime],
        *,
        deadline: float = FETCH_DEADLINE_SECONDS,
    ) -> None:
        self._url = url
        self._session = session
        self._now = now
        self._deadline = deadline  # seconds for one fetch, both documents (tests make it short)
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
        deadline = time.monotonic() + self._deadline
        config = self._get_json(self._url, deadline)
        jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable("the OpenID configuration has no jwks_uri")
        document = self._get_json(jwks_uri, deadline)
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

    def _get_json(self, url: str, deadline: float) -> Any:
        if not url.lower().startswith("https://"):
            raise KeysUnavailable(f"refused {safe(url[:200])}: signing keys are fetched over https only")
        try:
            response = self._session.get(
                url,
                timeout=min(FETCH_TIMEOUT_SECONDS, max(0.001, deadline - time.monotonic())),
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                stream=True,
            )
        except requests.RequestException as error:
            raise KeysUnavailable(type(error).__name__) from None
        with response:
            hops = [r.url for r in response.history] + [response.url]
            if not all(hop.lower().startswith("https://") for hop in hops):
                raise KeysUnavailable(f"refused a redirect from {safe(url[:200])} to http: https only")
            if response.status_code != 200:
                raise KeysUnavailable(f"HTTP {response.status_code} from {safe(url[:200])}")
            body = _read_bounded(response, url, deadline)
        try:
            return jsonsafe.loads(body)
        except ValueError:
            raise KeysUnavailable(f"document from {safe(url[:200])} is not JSON") from None


def _read_bounded(response: requests.Response, url: str, deadline: float) -> bytes:
    """The body, read as it arrives: given up past `MAX_DOCUMENT_BYTES` (decoded) or at `deadline`.

    `read1` returns what one read of the socket brings, and the socket's timeout is cut to the time left
    before each read, so no read outlasts the deadline however slowly the peer drips. The body is decoded
    here (gzip or deflate; identity was asked for) so that decoding, too, happens between those reads.
    """
    where = safe(url[:200])
    too_large = KeysUnavailable(f"document from {where} is larger than {MAX_DOCUMENT_BYTES} bytes")
    too_slow = KeysUnavailable(f"document from {where} took over the fetch deadline")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise too_large
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "deflate"):
        raise KeysUnavailable(f"document from {where} has an unsupported Content-Encoding")
    decoder = zlib.decompressobj(wbits=47) if encoding in ("gzip", "deflate") else None  # 47: gzip or zlib header
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise too_slow
            _cut_timeout(raw, left)
            data = raw.read1(_CHUNK, decode_content=False)
            if not data:
                break
            if decoder is not None:  # at most one byte past the limit: more left to decode is too large
                data = decoder.decompress(data, MAX_DOCUMENT_BYTES + 1 - size)
                if decoder.unconsumed_tail:
                    raise too_large
            size += len(data)
            if size > MAX_DOCUMENT_BYTES:
                raise too_large
            chunks.append(data)
        if decoder is not None:
            chunks.append(decoder.flush())
            if size + len(chunks[-1]) > MAX_DOCUMENT_BYTES:
                raise too_large
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, zlib.error) as error:
        if time.monotonic() >= deadline:
            raise too_slow from None
        raise KeysUnavailable(type(error).__name__) from None
    return b"".join(chunks)


def _cut_timeout(raw: urllib3.HTTPResponse, seconds: float) -> None:
    """Make the next read of `raw`'s socket wait at most `seconds` (and at most `FETCH_TIMEOUT_SECONDS`)."""
    sock = getattr(raw.connection, "sock", None)
    if sock is not None and sock.fileno() != -1:  # once the body is all read, the connection is let go
        sock.settimeout(min(seconds, FETCH_TIMEOUT_SECONDS))
