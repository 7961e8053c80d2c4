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
its time budget is spent (the timer's: a fifth of the schedule's interval, at most 120 s, shared/keepalive.py;
the clock is injected). When the budget stops it while the query still has a continuation token, ends are left
(`Purged.left`): the timer logs a WARNING and the next invocation goes on. No extra scan counts them.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.storage._base import BATCH_SIZE, PAGE_SIZE, Purged
from shared.storage._clients import Storage, storage_errors

ENDED_MEMORY = timedelta(hours=24)
PURGE_BUDGET_SECONDS = 120.0  # the most a purge takes unless told otherwise (the timer's: shared/keepalive.py)
_KEYS = ["PartitionKey", "RowKey"]
# Expired: every partition before yesterday's (the day of the cutoff), and yesterday's rows older than the cutoff.
# One key range (`PartitionKey le @day`), so the purge follows one continuation token. The spaces inside the
# parentheses matter: azure-data-tables finds `@name` parameters by splitting the filter on spaces.
_EXPIRED = "PartitionKey le @day and ( PartitionKey lt @day or EndedAt lt @cutoff )"


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
    """Ends remembered for `ENDED_MEMORY` per (tenant, callId), in their own table (the `EndMemory` of Azure)."""

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
                _EXPIRED, parameters={"day": _day(cutoff), "cutoff": cutoff}, select=_KEYS, results_per_page=PAGE_SIZE
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
        for start in range(0, len(keys), BATCH_SIZE):
            batch = keys[start : start + BATCH_SIZE]
            with storage_errors("purge ended calls"):
                try:
                    table.submit_transaction([("delete", key) for key in batch])
                except (TableTransactionError, HttpResponseError):  # one was deleted meanwhile: the rest one by one
                    for key in batch:
                        table.delete_entity(key["PartitionKey"], key["RowKey"])
    return len(rows)
