"""The memory of ended calls: every end seen (a 404, a `terminated` notification) for 24 hours, per tenant.

A late `established` notification for a call that ended under the same tenant within 24 hours is
ignored, so the call is not brought back; an end under one tenant never blocks another. An explicit
registration (`POST /api/calls`, `calls add`) clears the memory of that callId, every tenant's.

Table layout (the table named by `Settings.ended_table_name`):

    PartitionKey  "d" + the UTC day of the end ("d20250131")   -> a day of ends per partition
    RowKey        sha256(callId) hex + "-" + tenant ("none")    -> a point read per (day, tenant, callId)
    CallId, TenantId, EndedAt, Reason

A lookup reads at most two rows (today's and yesterday's partition). `purge` removes what is older than
24 hours: whole partitions before yesterday (the layout of earlier versions, `00`..`63`, sorts before
`d` and goes the same way), and yesterday's expired rows, at most `PURGE_BATCHES` batches of 100 per
call: each batch is a query and a transaction per day partition it spans (rows deleted one by one when
a transaction is refused), so about 20 requests per tick. The timer calls it once per tick, so
the table holds about one day of ends (plus what a tick could not purge, caught up by the next ones).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.errors import KeepAliveError
from shared.logsafe import get_logger
from shared.storage import Storage, storage_errors

logger = get_logger(__name__)

ENDED_MEMORY = timedelta(hours=24)
PURGE_BATCH = 100  # Table Storage's most operations in one entity group transaction
PURGE_BATCHES = 10  # batches per purge: at most 1,000 rows, about 20 requests per tick
_KEYS = ["PartitionKey", "RowKey"]


def _day(moment: datetime) -> str:
    return "d" + moment.astimezone(UTC).strftime("%Y%m%d")


def _row_key(call_id: str, tenant_id: str | None) -> str:
    return hashlib.sha256(call_id.encode("utf-8")).hexdigest() + "-" + (tenant_id or "none")


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
        entity = {
            "PartitionKey": _day(now),
            "RowKey": _row_key(call_id, tenant_id),
            "CallId": call_id,
            "EndedAt": now,
            "Reason": reason,
            **({"TenantId": tenant_id} if tenant_id else {}),
        }
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

    def purge(self, now: datetime, *, batches: int = PURGE_BATCHES) -> int:
        """Remove ends older than 24 hours, at most `batches` x 100 rows; returns how many were removed."""
        cutoff = now - ENDED_MEMORY
        yesterday = _day(cutoff)
        queries: Sequence[tuple[str, dict[str, Any]]] = (
            ("PartitionKey lt @day", {"day": yesterday}),
            ("PartitionKey eq @day and EndedAt lt @cutoff", {"day": yesterday, "cutoff": cutoff}),
        )
        removed = 0
        table = self._table()
        for query, parameters in queries:
            while batches > 0:
                with storage_errors("purge ended calls"):
                    page = table.query_entities(
                        query, parameters=parameters, select=_KEYS, results_per_page=PURGE_BATCH
                    )
                    rows = list(next(page.by_page(), []))
                if not rows:
                    break
                batches -= 1
                removed += _delete(table, rows)
        return removed


def _delete(table: TableClient, rows: Sequence[Any]) -> int:
    """Delete `rows` (each partition's in one transaction; one by one when a transaction is refused)."""
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_partition[row["PartitionKey"]].append(row)
    for partition_rows in by_partition.values():
        keys = [{"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]} for row in partition_rows]
        with storage_errors("purge ended calls"):
            try:
                table.submit_transaction([("delete", key) for key in keys])
            except (TableTransactionError, HttpResponseError):  # one was deleted meanwhile: the rest one by one
                for key in keys:
                    table.delete_entity(key["PartitionKey"], key["RowKey"])
    return len(rows)


def purge_quietly(recent_ends: RecentEnds, now: Callable[[], datetime]) -> None:
    """The timer's purge: logged, never failing the tick (what it cannot remove waits for the next one)."""
    try:
        removed = recent_ends.purge(now())
    except KeepAliveError as error:
        logger.warning("ended calls not purged error=%s; the next tick tries again", type(error).__name__)
        return
    if removed:
        logger.info("ended calls purged removed=%d", removed)
