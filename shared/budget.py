"""The fleet's budget of keepAlives per tenant (`KEEPALIVE_TENANT_RATE`): shares, and whether a sweep fits.

    tenant_share(rate, partitions)      a work item's share: rate x partitions / 64, rounded down to 1/1000
    TenantCounts                        calls per tenant, counted while a sweep (or a sample) reads its pages
    warn_if_too_slow(...)               the timer's WARNING when the largest tenant cannot be swept in time, from
                                        the schedule's interval (shared/schedule.py)

Calls spread evenly over the 64 partitions (their keys are hashes), so a range of p partitions holds about
p/64 of every tenant's calls, and its share of the budget is rate x p/64: the shares of a tick's ranges add
up to the rate (never more: each is rounded down), whatever the split (odd ones included), and every range
takes about (its calls of a tenant) / (its share) = (the tenant's calls) / rate seconds: they end together.
A sweep of the whole table (no fan-out, the command line) takes the whole rate. No state is shared beyond
the work messages: an instance paces itself at the share its message names (see shared/ratelimit.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from shared.logsafe import get_logger
from shared.models import PARTITIONS, CallRecord

logger = get_logger(__name__)

MAX_TENANT_RATE = 3000  # KEEPALIVE_TENANT_RATE's most (settings.py); Graph allows 3,333/s per app and tenant
MIN_TENANT_RATE = 1  # and its least
_MILLI = 1000


def tenant_share(rate: float, partitions: int) -> float:
    """Requests per second per tenant for a range of `partitions` of the 64: rounded down to 1/1000 per second."""
    if not 1 <= partitions <= PARTITIONS:
        raise ValueError(f"a range holds 1 to {PARTITIONS} partitions")
    return int(rate * _MILLI) * partitions // PARTITIONS / _MILLI


# The least share a work message can carry: the least rate's share of one partition (0.015/s). A message with
# less (1e-300, 0, a negative, NaN) was not written by the app, and its pacing would overflow the limiter.
MIN_TENANT_SHARE = tenant_share(MIN_TENANT_RATE, 1)


# --- counting the largest tenant --------------------------------------------------------------------------
@dataclass
class TenantCounts:
    """Calls per tenant (a call without one counts under GRAPH_TENANT_ID, as the sweep resolves it)."""

    default_tenant: str | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def pages(self, pages: Iterable[list[CallRecord]]) -> Iterator[list[CallRecord]]:
        """`pages`, passed through, counted on the way."""
        for page in pages:
            self.add(page)
            yield page

    def add(self, records: Iterable[CallRecord]) -> None:
        self.counts.update(tenant for r in records if (tenant := (r.tenant_id or self.default_tenant)) is not None)

    def largest(self) -> tuple[str, int] | None:
        """The tenant with the most calls, and how many; None when no call had a tenant."""
        most = self.counts.most_common(1)
        return most[0] if most else None


def sweep_seconds(calls: int, rate: float) -> float:
    """The least time a sweep of `calls` of one tenant takes at `rate` per second."""
    return calls / rate


def warn_if_too_slow(
    largest: tuple[str, int] | None, rate: float, interval: float | None, *, estimated: bool = False
) -> bool:
    """Log a WARNING when the largest tenant's calls at `rate` cannot fit inside the schedule's `interval`."""
    if largest is None or interval is None:
        return False
    tenant, calls = largest
    seconds = sweep_seconds(calls, rate)
    if seconds <= interval:
        return False
    advice = (
        "raise KEEPALIVE_TENANT_RATE (at most 3000) or lengthen KEEPALIVE_SCHEDULE"
        if rate < MAX_TENANT_RATE
        else "lengthen KEEPALIVE_SCHEDULE (up to 15 minutes keeps 3 chances in 45) or split the bot's calls "
        "over several app registrations"
    )
    logger.warning(
        "keepalive budget too small tenantId=%s calls=%d estimated=%s tenantRate=%g sweepSeconds=%.0f "
        "intervalSeconds=%.0f: the sweep of this tenant cannot finish before the next tick; %s (docs/scaling.md)",
        tenant,
        calls,
        str(estimated).lower(),
        rate,
        seconds,
        interval,
        advice,
    )
    return True
