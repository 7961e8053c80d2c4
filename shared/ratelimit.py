"""Per-instance pacing of Graph requests: one token bucket for every worker, and a brake per tenant on 429.

    RateLimiter.acquire(tenant)           before each request: waits while the tenant is paused, then for a slot
    with RateLimiter.pause(tenant, s):    a call that got 429 waits out its Retry-After inside this block;
        sleep(s)                          meanwhile no new request of that tenant starts, and the tenant's
                                          rate is halved (once per `BRAKE_INTERVAL`); it doubles back every
                                          `RECOVERY_SECONDS` without a 429, up to the full rate

The full rate is `KEEPALIVE_MAX_REQUESTS_PER_SECOND`: this instance's share of Graph's throttling budget
(50,000 requests per 15 s per app per tenant, see docs/scaling.md). So a 429 slows every worker of the
tenant, not only the call that got it.

The pause lasts exactly as long as the throttled call's own wait (the Retry-After it honours, capped at
60 s, or its backoff), whatever clock that wait runs on: the others wait on a condition, not on a timer
of their own (with a real-time deadline as a safety net). Slots are booked, then slept for, so workers
are served in order and nothing spins. Clock and sleep of the bucket are injected for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BRAKE_INTERVAL = 1.0  # 429s within this many seconds of a halving belong to the same episode: halve once
RECOVERY_SECONDS = 10.0  # calm time after which a braked tenant's rate doubles again
MIN_FACTOR = 1 / 64  # a tenant's rate never drops below this share of the full rate


@dataclass(slots=True)
class _Bucket:
    """A token bucket that books slots: `reserve` returns how long to wait for the slot it took."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def reserve(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class _Brake:
    """A tenant's state after a 429: its share of the full rate, its own bucket, and who is pausing it."""

    factor: float
    bucket: _Bucket
    braked_at: float  # the last halving
    calm_since: float  # the last 429, or the last recovery step
    pausers: int = 0  # calls of this tenant waiting out a 429 right now
    paused_until: float = 0.0  # safety net: nobody waits past this, even if a pauser never resumes


class RateLimiter:
    """At most `rate` requests per second from this process, and tenants braked by their 429s. Thread-safe."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        capacity = burst if burst is not None else max(1.0, rate / 10)  # a tenth of a second of requests
        self._bucket = _Bucket(rate=rate, capacity=capacity, tokens=capacity, updated=clock())
        self._brakes: dict[str, _Brake] = {}
        self._changed = threading.Condition(threading.Lock())

    def acquire(self, tenant_id: str) -> float:
        """Wait until a request of `tenant_id` may go; returns the seconds slept for a slot."""
        tenant = tenant_id.lower()
        with self._changed:
            while True:
                now = self._clock()
                brake = self._brake(tenant, now)
                if brake is None or brake.pausers == 0 or now >= brake.paused_until:
                    break
                self._changed.wait(timeout=brake.paused_until - now)
            wait = self._bucket.reserve(now)
            if brake is not None:
                wait = max(wait, brake.bucket.reserve(now))
        if wait > 0:
            self._sleep(wait)
        return wait

    @contextmanager
    def pause(self, tenant_id: str, seconds: float) -> Iterator[None]:
        """Graph answered 429 for `tenant_id` and the caller waits `seconds` inside this block.

        Until the block ends, no new request of the tenant starts; the tenant's rate is halved (once per episode).
        """
        tenant = tenant_id.lower()
        with self._changed:
            now = self._clock()
            brake = self._brake(tenant, now)
            if brake is None:
                bucket = _Bucket(rate=self.rate, capacity=1.0, tokens=1.0, updated=now)
                brake = self._brakes[tenant] = _Brake(
                    factor=1.0, bucket=bucket, braked_at=now - BRAKE_INTERVAL, calm_since=now
                )
            halved = now - brake.braked_at >= BRAKE_INTERVAL and brake.factor > MIN_FACTOR
            if halved:
                brake.factor = max(MIN_FACTOR, brake.factor / 2)
                brake.bucket.rate = self.rate * brake.factor
                brake.braked_at = now
            brake.calm_since = now
            brake.pausers += 1
            brake.paused_until = max(brake.paused_until, now + max(0.0, seconds))
            factor = brake.factor
        if halved:
            logger.warning(
                "graph throttled tenant=%s pause=%.1f rate=%.1f factor=%.3f",
                tenant,
                seconds,
                self.rate * factor,
                factor,
            )
        try:
            yield
        finally:
            with self._changed:
                brake.pausers -= 1
                self._changed.notify_all()

    def factor(self, tenant_id: str) -> float:
        """The share of the full rate `tenant_id` may use now (1.0 when not braked)."""
        with self._changed:
            brake = self._brake(tenant_id.lower(), self._clock())
            return 1.0 if brake is None else brake.factor

    def paused(self, tenant_id: str) -> bool:
        """Whether new requests of `tenant_id` wait for a throttled call right now."""
        with self._changed:
            now = self._clock()
            brake = self._brake(tenant_id.lower(), now)
            return brake is not None and brake.pausers > 0 and now < brake.paused_until

    def _brake(self, tenant: str, now: float) -> _Brake | None:
        """The tenant's brake after recovery steps due by `now`; None (and dropped) once back at the full rate."""
        brake = self._brakes.get(tenant)
        if brake is None:
            return None
        while brake.factor < 1.0 and now - brake.calm_since >= RECOVERY_SECONDS:
            brake.factor = min(1.0, brake.factor * 2)
            brake.bucket.rate = self.rate * brake.factor
            brake.calm_since += RECOVERY_SECONDS
        if brake.factor >= 1.0 and brake.pausers == 0:
            del self._brakes[tenant]
            return None
        return brake
