"""The retry policy for Graph, in one place: what happens after each keepAlive attempt.

| Graph answers                         | what happens                                                              |
|---------------------------------------|---------------------------------------------------------------------------|
| 429, 500, 502, 503, 504, a timeout    | retried within the tick, at most `MAX_RETRIES` (3) times: waiting         |
| or a connection error                 | `Retry-After` (seconds or an HTTP date, capped at `RETRY_AFTER_CAP`,      |
|                                       | 60 s) when Graph sends one, else full-jitter backoff below 1, 2, 4 s      |
| 429, additionally                     | the whole tenant slows down on this instance (shared/ratelimit.py): no    |
|                                       | new request of the tenant starts while the throttled call waits, and the  |
|                                       | tenant's rate is halved (once per `BRAKE_INTERVAL`, 1 s, never below      |
|                                       | `MIN_FACTOR`, 1/64), then doubles back every `RECOVERY_SECONDS` (10 s)    |
|                                       | without a 429, up to the sweep's share of KEEPALIVE_TENANT_RATE           |
| 401                                   | one fresh token and one more request, not counted as a retry (graph.py)   |
| 2xx, 404, 403, any other status       | no retry                                                                  |

`retry_delay` is the one pure decision (how long to wait, or stop); `GraphClient.keep_alive` applies it and
`RateLimiter.pause` applies the tenant's slowdown. `KEEPALIVE_REQUEST_TIMEOUT` bounds each attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 3
RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
BRAKE_INTERVAL = 1.0  # 429s within this many seconds of a halving belong to the same episode: halve once
RECOVERY_SECONDS = 10.0  # calm time after which a braked tenant's rate doubles again
MIN_FACTOR = 1 / 64  # a tenant's rate never drops below this share of its full rate
_DELTA_SECONDS = re.compile(r"^[0-9]+(\.[0-9]+)?\Z")


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds to wait, capped at 60 and never negative; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.match(text):
        return min(float(text), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_CAP)


def retry_delay(
    status: int | None,
    headers: Mapping[str, str],
    attempt: int,
    now: datetime,
    rng: Callable[[], float],
) -> float | None:
    """Seconds to wait before retrying, or None: do not retry.

    `status` is the HTTP status, or None for a timeout or a connection error. `attempt` counts the
    retryable attempts made so far, this one included (1 after the first request), so at most
    `MAX_RETRIES` retries follow. `rng()` returns a float in [0, 1).
    """
    if status is not None and status not in RETRYABLE_STATUSES:
        return None
    if attempt > MAX_RETRIES:
        return None
    after = retry_after_seconds(header(headers, "Retry-After"), now)
    if after is not None:
        return after
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return ceiling * min(max(rng(), 0.0), 1.0)  # full jitter
