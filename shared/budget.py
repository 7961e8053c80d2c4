"""The fleet's budget of keepAlives per tenant (`KEEPALIVE_TENANT_RATE`): shares, and whether a sweep fits.

    tenant_share(rate, partitions)      a work item's share: rate x partitions / 64, rounded down to 1/1000
    schedule_interval(KEEPALIVE_SCHEDULE)   the shortest gap between two occurrences of the timer, in seconds
    TenantCounts                        calls per tenant, counted while a sweep (or a sample) reads its pages
    warn_if_too_slow(...)               the timer's WARNING when the largest tenant cannot be swept in time

Calls spread evenly over the 64 partitions (their keys are hashes), so a range of p partitions holds about
p/64 of every tenant's calls, and its share of the budget is rate x p/64: the shares of a tick's ranges add
up to the rate (never more: each is rounded down), whatever the split (odd ones included), and every range
takes about (its calls of a tenant) / (its share) = (the tenant's calls) / rate seconds: they end together.
A sweep of the whole table (no fan-out, the command line) takes the whole rate. No state is shared beyond
the work messages: an instance paces itself at the share its message names (see shared/ratelimit.py).
"""

from __future__ import annotations

import re
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


# --- the schedule ----------------------------------------------------------------------------------------
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")  # App Service plans: "00:10:00", "1.00:00:00"
_NAMES = {
    name: index
    for names in (
        ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
        ("", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    )
    for index, name in enumerate(names)
    if name
}
DAY = 86_400


def _field(text: str, low: int, high: int) -> list[int]:
    """The values an NCRONTAB field allows: `*`, `5`, `1-5`, `*/10`, `10-40/5`, lists of these, names."""
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        else:
            first, _, last = body.partition("-")
            start = _NAMES[first] if first in _NAMES else int(first)
            end = start if not last else (_NAMES[last] if last in _NAMES else int(last))
            if step_text and not last:
                end = high  # "5/10": from 5 on, every 10
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"{part!r} is not within {low}-{high}")
        values.update(range(start, end + 1, step))
    return sorted(values)


def schedule_interval(schedule: str) -> float | None:
    """The shortest time between two runs of the timer, in seconds; None when it cannot be read.

    A six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`) or a TimeSpan
    (`hh:mm:ss`, App Service plans). The gaps are taken within a day and across midnight, so day, month
    and weekday fields are not consulted: a schedule that skips days gives a shorter interval than it has,
    which only makes the warning come sooner (conservative). The host itself validates the schedule.
    """
    text = schedule.strip()
    span = _TIMESPAN.match(text)
    if span:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in span.groups())
        total = days * DAY + hours * 3600 + minutes * 60 + seconds
        return float(total) if total > 0 else None
    fields = text.split()
    if len(fields) != 6:
        return None
    try:
        seconds_, minutes_, hours_ = _field(fields[0], 0, 59), _field(fields[1], 0, 59), _field(fields[2], 0, 23)
        _field(fields[3], 1, 31), _field(fields[4], 1, 12), _field(fields[5], 0, 7)  # well formed, not consulted
    except ValueError:
        return None
    times = [h * 3600 + m * 60 + s for h in hours_ for m in minutes_ for s in seconds_]  # sorted already
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + DAY - times[-1])
    return float(min(gaps))


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
