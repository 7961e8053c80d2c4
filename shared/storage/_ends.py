"""The memory of ended calls: every end seen (a 404, a `terminated` notification) for 24 hours, per tenant.

A late `established` notification for a call that ended under the same tenant within 24 hours is
ignored, so the call is not brought back; an end under one tenant never blocks another. An explicit
registration (`POST /api/calls`, `calls add`) clears the memory of that callId, every tenant's.

Table layout (the table named by `Settings.ended_table_name`):

    PartitionKey  "d" + the UTC day of the end ("d20250131")   -> a day of ends per partition
    RowKey        sha256(callId) hex + "-" + tenant ("none")    -> a point read per (day, tenant, callId)
    CallId, TenantId, EndedAt, Reason

A lookup reads at most two rows (today's and yesterday's partition). `purge` removes what is older than
24 hours (whole partitions before yesterday, whose layout of earlier versions, `00`..`63`, sorts before `d`
and goes the same way, and yesterday's expired rows) with one key-range query followed page by page (up to
1,000 keys a page), each page deleted in transactions of up to 100 rows, until nothing expired is left or
its time budget is spent (`purge_budget`: a fifth of the schedule's interval, at most 120 s; the clock is
injected). When the budget stops it while the query still has a continuation token, ends are left:
`purge_quietly` (the timer, after its sweep or fan-out) logs a WARNING and the next invocation goes on.
No extra scan counts them.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.errors import KeepAliveError
from shared.logsafe import get_logger
from shared.storage._clients import Storage, storage_errors

logger = get_logger(__name__)

ENDED_MEMORY = timedelta(hours=24)
PURGE_BATCH = 100  # Table Storage's most operations in one entity group transaction
PURGE_PAGE = 1000  # keys per query page: Table Storage's most
PURGE_BUDGET_SECONDS = 120.0  # the most a timer invocation's purge takes (docs/reliability.md: what it keeps up with)
PURGE_SHARE = 0.2  # and at most this share of the schedule's interval, so a short schedule gets a short purge
_KEYS = ["PartitionKey", "RowKey"]
# Expired: every partition before yesterday's (the day of the cutoff), and yesterday's rows older than the cutoff.
# One key range (`PartitionKey le @day`), so the purge follows one continuation token. The spaces inside the
# parentheses matter: azure-data-tables finds `@name` parameters by splitting the filter on spaces.
_EXPIRED = "PartitionKey le @day and ( PartitionKey lt @day or EndedAt lt @cutoff )"


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge did: rows removed, whether it stopped at its budget with ends left, and how long it took."""

    removed: int
    left: bool
    seconds: float


def purge_budget(interval: float | None) -> float:
    """A timer invocation's purge budget: a fifth of the schedule's interval, at most 2 minutes (120 s at the
    default 10 minutes; the schedule unreadable: 120 s)."""
    return PURGE_BUDGET_SECONDS if interval is None else min(PURGE_BUDGET_SECONDS, interval * PURGE_SHARE)


def _day(moment: datetime) -> str:
    return "d" + moment.astimezone(UTC).strftime("%Y%m%d")


def _row_key(call_id: str, tenant_id: str | None) -> str:
    return hashlib.sha256(call_id.encode("utf-8")).hexdigest() + "-" + (tenant_id or "none")


def ended_entity(call_id: str, *, tenant_id: str | None, reason: str, now: datetime) -> dict[str, Any]:
    """The row that remembers one end (also what tests and benchmarks seed in bulk)."""
    return {
        "PartitionKey": _day(now),
        "RowKey": _row_key(call_id, tenant_id),
        "CallId": call_id,
        "EndedAt": now,
        "Reason": reason,
        **({"TenantId": tenant_id} if tenant_id else {}),
    }


def _prefix_range(call_id: str) -> tuple[str, str]:
    prefix = hashlib.sha256(call_id.encode("utf-8")).hexdigest() + "-"
    return prefix, prefix[:-1] + "."  # "." follows "-": every RowKey of this callId sorts in between


class RecentEnds:
    """Ends remembered for `ENDED_MEMORY` per (tenant, callId), in their own table."""

    def __init__(self, storage: Storage, table_name: str) -> None:
        self._storage = storage
        self._table_name = table_name

    def _table(self) -> TableClient:
        return self._storage.table(self._table_name)

    def remember(self, call_id: str, *, tenant_id: str | None, reason: str, now: datetime) -> None:
        entity = ended_entity(call_id, tenant_id=tenant_id, reason=reason, now=now)
        with storage_errors("remember ended call"):
            self._table().upsert_entity(entity, mode=UpdateMode.REPLACE)

    def recently_ended(self, call_id: str, tenant_id: str | None, now: datetime) -> bool:
        """Whether this call ended under this tenant within the last 24 hours."""
        row_key = _row_key(call_id, tenant_id)
        for partition in dict.fromkeys((_day(now), _day(now - ENDED_MEMORY))):
            with storage_errors("read ended call"):
                try:
                    entity = self._table().get_entity(partition, row_key)
                except ResourceNotFoundError:
                    continue
            ended_at = entity.get("EndedAt")
            if entity.get("CallId") == call_id and isinstance(ended_at, datetime):
                if timedelta(0) <= now - ended_at.astimezone(UTC) <= ENDED_MEMORY or ended_at > now:
                    return True
        return False

    def forget(self, call_id: str, now: datetime) -> None:
        """Clear the memory of this call's end, under every tenant."""
        low, high = _prefix_range(call_id)
        table = self._table()
        for partition in dict.fromkeys((_day(now), _day(now - ENDED_MEMORY))):
            with storage_errors("forget ended call"):
                rows = table.query_entities(
                    "PartitionKey eq @p and RowKey gt @low and RowKey lt @high",
                    parameters={"p": partition, "low": low, "high": high},
                    select=_KEYS,
                )
                for row in rows:
                    table.delete_entity(row["PartitionKey"], row["RowKey"])

    def purge(
        self, now: datetime, *, budget: float = PURGE_BUDGET_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> Purged:
        """Remove ends older than 24 hours, a page at a time, until none is left or `budget` seconds have passed.

        The budget is checked after each page, so one page (at most 1,000 rows) is removed whatever it is.
        """
        started = clock()
        cutoff = now - ENDED_MEMORY
        table = self._table()
        removed = 0
        with storage_errors("purge ended calls"):
            pages = table.query_entities(
                _EXPIRED, parameters={"day": _day(cutoff), "cutoff": cutoff}, select=_KEYS, results_per_page=PURGE_PAGE
            ).by_page()
            for page in pages:
                removed += _delete(table, list(page))
                more = pages.continuation_token is not None  # type: ignore[attr-defined]
                if more and clock() - started >= budget:
                    return Purged(removed, left=True, seconds=clock() - started)
        return Purged(removed, left=False, seconds=clock() - started)


def _delete(table: TableClient, rows: Sequence[Any]) -> int:
    """Delete `rows`: per partition, in transactions of up to 100 (one by one when a transaction is refused)."""
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_partition[row["PartitionKey"]].append(row)
    for partition_rows in by_partition.values():
        keys = [{"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]} for row in partition_rows]
        for start in range(0, len(keys), PURGE_BATCH):
            batch = keys[start : start + PURGE_BATCH]
            with storage_errors("purge ended calls"):
                try:
                    table.submit_transaction([("delete", key) for key in batch])
                except (TableTransactionError, HttpResponseError):  # one was deleted meanwhile: the rest one by one
                    for key in batch:
                        table.delete_entity(key["PartitionKey"], key["RowKey"])
    return len(rows)


def purge_quietly(
    recent_ends: RecentEnds,
    now: Callable[[], datetime],
    *,
    budget: float = PURGE_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Purged | None:
    """The timer's purge, after its sweep or fan-out: logged, never failing the invocation.

    A WARNING when the budget ran out with ends left (the next invocation goes on); None when storage failed.
    """
    try:
        purged = recent_ends.purge(now(), budget=budget, clock=clock)
    except KeepAliveError as error:
        logger.warning("ended calls not purged error=%s; the next timer invocation tries again", type(error).__name__)
        return None
    if purged.left:
        logger.warning(
            "ended calls left to purge removed=%d seconds=%.1f budgetSeconds=%g: the purge stopped at its time "
            "budget and the next timer invocation goes on; if this repeats, ends arrive faster than the purge "
            "removes them (docs/reliability.md)",
            purged.removed,
            purged.seconds,
            budget,
        )
    elif purged.removed:
        logger.info("ended calls purged removed=%d seconds=%.1f", purged.removed, purged.seconds)
    return purged
