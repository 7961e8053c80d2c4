"""Per-tenant pacing of Graph requests on one instance: its share of the fleet's budget, and a brake on 429.

    with RateLimiter.pacing(share):       a sweep paces each tenant at `share` per second (its share of
                                          KEEPALIVE_TENANT_RATE, see shared/budget.py) while it runs
    RateLimiter.acquire(tenant)           before each request: waits while the tenant is paused, then for its slot
    with RateLimiter.pause(tenant, s):    a call that got 429 waits out its Retry-After inside this block
                                          (the retry policy, with its numbers, is shared/retry.py);
        sleep(s)                          meanwhile no request of that tenant starts, and the tenant's rate is
                                          halved (once per `BRAKE_INTERVAL`); it doubles back every
                                          `RECOVERY_SECONDS` without a 429, up to its share

Each tenant has a token bucket that holds 10 ms of its rate (at least one request): in any T seconds an
instance sends a tenant at most rate x (T + 0.01) + 1 requests, so k instances whose shares add up to the
budget send it at most budget x (T + 0.01) + k. At a high share (one instance sweeping at 3,000/s) a wave
of answers goes out again at once instead of spaced by 1/rate; at a small share (many work items) the
bucket holds one request, so the fleet's excess stays k, not k x burst.
Sweeps running at once in one process add their shares; with none running, a request is paced at
`default` (the whole KEEPALIVE_TENANT_RATE: a lone keepAlive is a sweep of one call).

The pause lasts exactly as long as the throttled call's own wait (the Retry-After it honours, capped at
60 s, or its backoff), whatever clock that wait runs on: the others wait on a condition, not on a timer
of their own (with a real-time deadline as a safety net). Slots are booked, then slept for, so workers
are served in order and nothing spins; a worker whose slot was booked before a 429 books again after the
pause, at the slower rate (a pause forgives the bucket's debt, so the pause is not paid twice).
Clock and sleep are injected for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shared.logsafe import get_logger
from shared.retry import BRAKE_INTERVAL, MIN_FACTOR, RECOVERY_SECONDS

logger = get_logger(__name__)

BURST_SECONDS = 0.01  # a tenant's bucket holds this many seconds of its rate (at least one request)


@dataclass(slots=True)
class _Tenant:
    """One tenant on this instance: its bucket, and its brake after a 429."""

    tokens: float  # at most the burst; negative: slots booked ahead
    updated: float
    factor: float = 1.0  # share of the full rate allowed now
    braked_at: float = float("-inf")  # the last halving
    calm_since: float = 0.0  # the last 429, or the last recovery step
    pausers: int = 0  # calls of this tenant waiting out a 429 right now
    paused_until: float = 0.0  # safety net: nobody waits past this, even if a pauser never resumes
    pauses: int = 0  # pauses begun so far: a booking made before one is made again after it

    def reserve(self, now: float, rate: float) -> float:
        """Take the next slot; returns how long to wait for it."""
        self.tokens = min(burst(rate), self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / rate

    def paused(self, now: float) -> bool:
        return self.pausers > 0 and now < self.paused_until


def burst(rate: float) -> float:
    """Requests a tenant's bucket holds when full: `BURST_SECONDS` of its rate, at least one."""
    return max(1.0, rate * BURST_SECONDS)


class RateLimiter:
    """Each tenant at the running sweeps' share of the budget, and braked by its 429s. Thread-safe."""

    def __init__(
        self,
        default: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if default <= 0:
            raise ValueError("rate must be positive")
        self.default = default
        self._clock = clock
        self._sleep = sleep
        self._shares: list[float] = []
        self._tenants: dict[str, _Tenant] = {}
        self._changed = threading.Condition(threading.Lock())

    @property
    def rate(self) -> float:
        """Requests per second each tenant may get from this instance now, before any brake."""
        with self._changed:
            return self._rate()

    @contextmanager
    def pacing(self, share: float) -> Iterator[None]:
        """Each tenant paced at a sweep's `share` of the budget (per second), for the length of the block."""
        if share <= 0:
            raise ValueError("rate must be positive")
        with self._changed:
            self._shares.append(share)
        try:
            yield
        finally:
            with self._changed:
                self._shares.remove(share)
                if not self._shares:  # between sweeps, only braked tenants are worth remembering
                    now = self._clock()
                    for tenant in [t for t, state in self._tenants.items() if self._idle(state, now)]:
                        del self._tenants[tenant]

    def acquire(self, tenant_id: str) -> float:
        """Wait until a request of `tenant_id` may go; returns the seconds slept for a slot."""
        key = tenant_id.lower()
        slept = 0.0
        with self._changed:
            while True:
                now = self._clock()
                state = self._tenant(key, now)
                while state.paused(now):
                    self._changed.wait(timeout=state.paused_until - now)
                    now = self._clock()
                    state = self._tenant(key, now)
                wait = state.reserve(now, self._rate() * state.factor)
                if wait <= 0:
                    return slept
                booked = state.pauses
                self._changed.release()
                try:
                    self._sleep(wait)
                finally:
                    self._changed.acquire()
                slept += wait
                if self._tenants.get(key) is state and state.pauses == booked:
                    return slept
                # a 429 paused the tenant while this slot was waited for: book again, after it, at the new rate

    @contextmanager
    def pause(self, tenant_id: str, seconds: float) -> Iterator[None]:
        """Graph answered 429 for `tenant_id` and the caller waits `seconds` inside this block.

        Until the block ends, no request of the tenant starts; the tenant's rate is halved (once per episode).
        """
        key = tenant_id.lower()
        with self._changed:
            now = self._clock()
            state = self._tenant(key, now)
            halved = now - state.braked_at >= BRAKE_INTERVAL and state.factor > MIN_FACTOR
            if halved:
                state.factor = max(MIN_FACTOR, state.factor / 2)
                state.braked_at = now
            state.calm_since = now
            state.pausers += 1
            state.pauses += 1
            state.paused_until = max(state.paused_until, now + max(0.0, seconds))
            state.tokens = max(state.tokens, 0.0)  # slots booked before the 429 are booked again after it
            factor, rate = state.factor, self._rate()
        if halved:
            logger.warning(
                "graph throttled tenantId=%s pause=%.1f rate=%.1f factor=%.3f",
                key,
                seconds,
                rate * factor,
                factor,
            )
        try:
            yield
        finally:
            with self._changed:
                state.pausers -= 1
                self._changed.notify_all()

    def factor(self, tenant_id: str) -> float:
        """The fraction of its full rate `tenant_id` may use now (1.0 when not braked)."""
        with self._changed:
            state = self._tenants.get(tenant_id.lower())
            return 1.0 if state is None else self._recover(state, self._clock()).factor

    def paused(self, tenant_id: str) -> bool:
        """Whether new requests of `tenant_id` wait for a throttled call right now."""
        with self._changed:
            state = self._tenants.get(tenant_id.lower())
            return state is not None and state.paused(self._clock())

    # --- internals (under the lock) ------------------------------------------------------------------
    def _rate(self) -> float:
        return sum(self._shares) if self._shares else self.default

    def _tenant(self, key: str, now: float) -> _Tenant:
        state = self._tenants.get(key)
        if state is None:
            state = self._tenants[key] = _Tenant(tokens=burst(self._rate()), updated=now, calm_since=now)
        return self._recover(state, now)

    @staticmethod
    def _recover(state: _Tenant, now: float) -> _Tenant:
        """The tenant after the recovery steps due by `now`."""
        while state.factor < 1.0 and now - state.calm_since >= RECOVERY_SECONDS:
            state.factor = min(1.0, state.factor * 2)
            state.calm_since += RECOVERY_SECONDS
        return state

    @staticmethod
    def _idle(state: _Tenant, now: float) -> bool:
        return RateLimiter._recover(state, now).factor >= 1.0 and state.pausers == 0
