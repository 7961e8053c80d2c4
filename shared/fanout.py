"""Fan-out: above `KEEPALIVE_FANOUT_THRESHOLD` calls the timer splits the sweep into work messages.

    timer ── count calls, stop past the threshold ── above? ── plan_ranges ── one message per range
    queue trigger `keepalive_work` ── parse_work ── re-read the range's partitions ── the same Sweep

A message names partitions ("00".."63", see models.partition_of), never calls: the queue function
re-reads them when it runs. A retried message therefore sends the keepAlives again (harmless) and an
ended call's event again under the same `eventId` (the registration id), and a call registered after
the timer ran is swept too. The host retries a failed message (`maxDequeueCount` in host.json) and
then moves it to `<queue>-poison`.

Message text (base64, like every message the app writes, matching the host's default encoding):

    {"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["00", "01"], "tickId": "<uuid>",
     "tenantRate": 31.25}

`tenantRate` is the range's share of KEEPALIVE_TENANT_RATE, per tenant (shared/budget.py): rate x its
partitions / 64, so the ranges of a tick together stay within the budget. A message without it (written
before the field existed) takes the same share of the receiving instance's own KEEPALIVE_TENANT_RATE.

Ranges hold about `KEEPALIVE_FANOUT_THRESHOLD` calls each (the threshold is also the size of a work
item), estimated from one partition's key count since calls spread evenly over the 64 partitions:
10,000 calls at the default 5,000 make 2 messages of 32 partitions; 1,000,000 make 64 of one.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared import jsonsafe
from shared.budget import MAX_TENANT_RATE, MIN_TENANT_SHARE, TenantCounts, tenant_share
from shared.errors import InvalidWorkMessage
from shared.logsafe import get_logger
from shared.models import PARTITIONS
from shared.storage import PAGE_SIZE, Calls, WorkQueue

logger = get_logger(__name__)

SCHEMA_VERSION = 1
MESSAGE_TYPE = "keepaliveRange"
MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount (tests/unit/test_fanout.py keeps them equal)
ALL_PARTITIONS: tuple[str, ...] = tuple(f"{index:02d}" for index in range(PARTITIONS))
SAMPLE_PARTITION = ALL_PARTITIONS[0]
_PARTITION = re.compile(r"^\d{2}$")
_MAX_MESSAGE_CHARS = 4096  # a valid message is far smaller; anything bigger is not ours


class WorkMessage(Protocol):
    """What the queue function needs of `azure.functions.QueueMessage`."""

    @property
    def id(self) -> str | None: ...

    @property
    def dequeue_count(self) -> int | None: ...

    def get_body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class WorkRange:
    """Partitions of the calls table that one work message sweeps, and the timer tick that asked for it."""

    partitions: tuple[str, ...]
    tick_id: str
    tenant_rate: float | None = None  # this range's share of KEEPALIVE_TENANT_RATE, per tenant; None: not given

    def share(self, budget: float) -> float:
        """Requests per second per tenant for this range: the message's share, else its share of `budget`."""
        return self.tenant_rate if self.tenant_rate is not None else tenant_share(budget, len(self.partitions))

    @property
    def label(self) -> str:
        """`07`, or `00-31` for a contiguous group (ranges are contiguous), for the logs."""
        first, last = self.partitions[0], self.partitions[-1]
        return first if first == last else f"{first}-{last}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "type": MESSAGE_TYPE,
            "partitions": list(self.partitions),
            "tickId": self.tick_id,
        }
        if self.tenant_rate is not None:
            data["tenantRate"] = self.tenant_rate
        return data

    def text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))


def plan_ranges(
    estimated_calls: int, calls_per_range: int, tick_id: str, tenant_rate: float | None = None
) -> list[WorkRange]:
    """Every partition, in contiguous groups of about `calls_per_range` calls (at least one group, at most 64).

    With `tenant_rate` (KEEPALIVE_TENANT_RATE), each range carries its share of it (shared/budget.py).
    """
    count = min(PARTITIONS, max(1, math.ceil(estimated_calls / max(1, calls_per_range))))
    bounds = [round(i * PARTITIONS / count) for i in range(count + 1)]
    ranges = [WorkRange(ALL_PARTITIONS[bounds[i] : bounds[i + 1]], tick_id) for i in range(count)]
    if tenant_rate is None:
        return ranges
    return [replace(r, tenant_rate=tenant_share(tenant_rate, len(r.partitions))) for r in ranges]


def parse_work(body: bytes | str) -> WorkRange:
    """A work message's range; `InvalidWorkMessage` (naming the problem) for anything else."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidWorkMessage("not UTF-8 text") from None
    if len(body) > _MAX_MESSAGE_CHARS:
        raise InvalidWorkMessage(f"longer than {_MAX_MESSAGE_CHARS} characters")
    try:
        data = jsonsafe.loads(body)
    except ValueError:
        raise InvalidWorkMessage("not JSON") from None
    if not isinstance(data, dict):
        raise InvalidWorkMessage("not a JSON object")
    if data.get("type") != MESSAGE_TYPE or data.get("schemaVersion") != SCHEMA_VERSION:
        raise InvalidWorkMessage(f"type must be {MESSAGE_TYPE!r} with schemaVersion {SCHEMA_VERSION}")
    partitions = data.get("partitions")
    if not isinstance(partitions, list) or not partitions:
        raise InvalidWorkMessage("partitions must be a non-empty list")
    known = set(ALL_PARTITIONS)
    if not all(isinstance(p, str) and _PARTITION.match(p) and p in known for p in partitions):
        raise InvalidWorkMessage(f"partitions must be among {ALL_PARTITIONS[0]}..{ALL_PARTITIONS[-1]}")
    if len(set(partitions)) != len(partitions):
        raise InvalidWorkMessage("partitions must not repeat")
    tick_id = data.get("tickId")
    if not isinstance(tick_id, str) or not 1 <= len(tick_id) <= 64:
        raise InvalidWorkMessage("tickId must be a string of 1 to 64 characters")
    rate = data.get("tenantRate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not MIN_TENANT_SHARE <= rate <= MAX_TENANT_RATE
    ):  # NaN and the infinities fail the comparison too
        raise InvalidWorkMessage(f"tenantRate must be a number from {MIN_TENANT_SHARE:g} to {MAX_TENANT_RATE}")
    return WorkRange(tuple(sorted(partitions)), tick_id, None if rate is None else float(rate))


@dataclass(frozen=True, slots=True)
class Estimate:
    """About how many calls the table holds, and the largest tenant's share of them (from one partition)."""

    calls: int
    largest: tuple[str, int] | None  # (tenant, about how many calls), None when no sampled call had a tenant


def estimate_calls(calls: Calls, threshold: int, default_tenant: str | None = None) -> Estimate | None:
    """None when the table holds at most `threshold` calls; else an estimate of the table and its largest tenant.

    Reads at most `threshold` + one page of the table's rows, then one partition of the 64 (calls spread
    evenly over them): its calls, counted per tenant, times 64. Not a full read of the table.
    """
    counted = calls.count(more_than=threshold)
    if counted <= threshold:
        return None
    tenants = TenantCounts(default_tenant)
    sampled = 0
    for page in calls.partition_pages(SAMPLE_PARTITION, PAGE_SIZE):
        sampled += len(page)
        tenants.add(page)
    largest = tenants.largest()
    return Estimate(
        calls=max(counted, sampled * PARTITIONS),
        largest=None if largest is None else (largest[0], largest[1] * PARTITIONS),
    )


def enqueue(queue: WorkQueue, ranges: Sequence[WorkRange]) -> None:
    """One message per range on the work queue. Raises `StorageError` part way."""
    backlog = queue.backlog()
    if backlog:
        logger.warning(
            "keepalive fanout backlog=%d: work of an earlier tick is still queued; if this repeats, the ranges "
            "take longer than the schedule (see docs/scaling.md)",
            backlog,
        )
    for work in ranges:
        queue.send(work.text())


def new_tick_id() -> str:
    return str(uuid.uuid4())
