"""The calls table (`CallsTable`, the `Calls` of `_base`): registration, lookup, paging, counting, and the tick's
conditional writes, decided here over the table's rows (`Rows`: Azure's in `_table`; in memory in tests/fakes.py,
so that every decision runs in the unit tests too).

A callId only ever reaches the table as a key derived from its hash (see `models.call_keys`), never inside a
filter string. Rows the app cannot read are skipped (`_rows`). Listing pages travel to the caller as
continuation tokens that name an app key (shared/paging.py; any other token is refused).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from shared.errors import EntityRefused, RowModified, StorageError, TransactionFailed, UnstorableEntity
from shared.loglimit import failure_level
from shared.logsafe import get_logger, safe
from shared.models import CallRecord, call_keys
from shared.paging import decode_token, encode_token, first_key_at_or_after
from shared.storage._base import BATCH_SIZE, PAGE_SIZE, Change, NotSaved
from shared.storage._rows import SkippedRows, count_rows, read_rows
from shared.storage._tablewire import wire_entity

logger = get_logger(__name__)

_RECORD_PROPERTIES = (
    "PartitionKey", "RowKey", "CallId", "TenantId", "RegisteredAt", "RegistrationId", "LastKeepAliveAt", "LastStatus",
    "LastError", "ConsecutiveFailures", "Metadata",
)  # fmt: skip


class Rows(Protocol):
    """What the calls table does to its table's rows, with Table Storage's answers: the seam under `CallsTable`.

    A read row is a mapping of the row's properties with its ETag in `metadata["etag"]` (as the SDK's entities
    and `_tablewire.WireEntity` hold it). Storage that cannot serve raises a `StorageError`.
    """

    def create(self, entity: Mapping[str, Any]) -> bool:
        """Insert the row; False when a row holds its keys already (409)."""
        ...

    def get(self, partition_key: str, row_key: str) -> Mapping[str, Any] | None:
        """The row; None when there is none (404)."""
        ...

    def replace(self, entity: Mapping[str, Any], etag: str | None) -> str | None:
        """Replace the row if its ETag is `etag`: its new ETag (`""` when the service sent none); None when the row
        is gone (404); `RowModified` when it changed meanwhile (412); `EntityRefused` when the service refused it."""
        ...

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> bool:
        """Delete the row if its ETag is `etag`: False when it was gone (404); `RowModified` when it changed (412)."""
        ...

    def replace_all(self, changes: Sequence[tuple[Mapping[str, Any], str]]) -> list[str | None]:
        """`replace` of each (entity as `wire_entity` made it, ETag), rows of one partition, all or none: the new
        ETags in order; `TransactionFailed` when refused (nothing written), `EntityRefused` when the request was."""
        ...

    def pages(
        self,
        *,
        partition: str | None = None,
        select: Sequence[str] | None = None,
        page_size: int = PAGE_SIZE,
        action: str = "list",
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        """The rows (of one partition, or all) in key order, a page at a time, read as they are needed; `action`
        names the reading in a storage fault's log."""
        ...

    def from_key(self, start: tuple[str, str] | None, count: int) -> list[Mapping[str, Any]]:
        """Up to `count` rows in key order from `start` on (the rest of its partition, then the partitions after
        it), or from the first row."""
        ...


class CallsTable:
    """The calls table: registration, lookup, paging, and the tick's conditional writes.

    Every outcome a tick writes passes `_tablewire.wire_entity`'s check of what Table Storage takes first.
    """

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    def insert(self, record: CallRecord) -> bool:
        """Store a new call; False when one with that callId exists already."""
        return self._rows.create(record.to_entity())

    def get(self, call_id: str) -> CallRecord | None:
        entity = self._rows.get(*call_keys(call_id))
        records = read_rows([entity]) if entity is not None else []
        return records[0] if records and records[0].call_id == call_id else None

    def delete(self, record: CallRecord) -> bool:
        """Delete this registration of the call (not a newer one). False when it was gone already."""
        current: CallRecord | None = record
        while current is not None and current.registration_id == record.registration_id:
            try:
                return self._rows.delete(*current.keys, current.etag)
            except RowModified:
                current = self.get(record.call_id)
        return False

    def update(self, record: CallRecord, change: Change, *, done: CallRecord | None = None) -> CallRecord | None:
        """Apply `change` to the stored call with an ETag condition, never re-creating a deleted call.

        Returns the stored record, or None when the call (this registration of it) is gone. `done`: the
        record as it would be stored if this change had gone through already (a transaction whose answer
        was lost); found on a fresh read, it is not applied a second time. Raises `UnstorableEntity` (nothing
        sent) for a change that storage would refuse, `EntityRefused` for one it refused.
        """
        current: CallRecord | None = record
        while current is not None and current.registration_id == record.registration_id:
            if done is not None and current is not record and current == done:
                return current
            changed = change(current)
            try:
                etag = self._rows.replace(changed.to_entity(), current.etag)
            except RowModified:
                current = self.get(record.call_id)
                continue
            return None if etag is None else replace(changed, etag=etag or None)
        return None

    def list_page(self, top: int, continuation_token: str | None) -> tuple[list[CallRecord], str | None]:
        """One page of at most `top` calls, and the token of the next page if there is one.

        Reads `top` + 1 rows from where the token says (the rest of its partition, then the partitions after
        it): the extra row, if any, is where the next page starts.
        """
        start = decode_token(continuation_token) if continuation_token else None
        entities = self._rows.from_key(start, top + 1)
        after = entities[top] if len(entities) > top else None
        next_key = None if after is None else first_key_at_or_after(after["PartitionKey"], after["RowKey"])
        return read_rows(entities[:top]), None if next_key is None else encode_token(next_key)

    def update_all(
        self,
        changes: Sequence[tuple[CallRecord, Change]],
        changed: Sequence[CallRecord],
    ) -> list[CallRecord | None | NotSaved]:
        """`update` for calls of one partition (at most 100) at once: one entity group transaction.

        Each outcome passes the check of what storage takes before it joins the transaction; one that fails it
        is `NotSaved` alone. Each replace is conditional on the ETag the call was read with, and the transaction
        is all or nothing. When it is refused (a call was changed or deleted meanwhile, or storage refused one
        entity), the same changes go one by one through `update`, which re-reads a changed call and never
        re-creates a deleted one; a call whose own write fails there is `NotSaved`, and the others are still
        written (storage unavailable stops the rest, which are `NotSaved` too). `changed`: each change applied
        to its record already (computed once by the caller). Returns, in order, the stored record, None when
        the call is gone, or `NotSaved`. Raises when the transaction itself meets storage unavailable.
        """
        if len(changes) > BATCH_SIZE or len({record.keys[0] for record, _ in changes}) > 1:
            raise ValueError(f"update_all takes at most {BATCH_SIZE} calls of one partition")
        results: list[CallRecord | None | NotSaved] = [None] * len(changes)
        joined: list[int] = []  # the outcomes that passed the check, in order
        writes: list[tuple[Mapping[str, Any], str]] = []
        for index, ((record, _), new) in enumerate(zip(changes, changed, strict=True)):
            try:
                writes.append((wire_entity(new.to_entity()), record.etag or ""))
            except UnstorableEntity as refused:
                results[index] = self._not_saved(record, refused)
                continue
            joined.append(index)
        if len(joined) > 1 and all(changes[index][0].etag is not None for index in joined):
            etags = self._transaction(changes[0][0].keys[0], writes)
            if etags is not None:
                for index, etag in zip(joined, etags, strict=True):
                    results[index] = replace(changed[index], etag=etag)
                return results
            self._one_by_one(changes, changed, joined, results, after_refusal=True)
        else:
            self._one_by_one(changes, changed, joined, results, after_refusal=False)
        return results

    def _transaction(self, partition: str, writes: list[tuple[Mapping[str, Any], str]]) -> list[str | None] | None:
        """The new ETags, or None when storage refused the transaction (then nothing of it was written)."""
        try:
            return self._rows.replace_all(writes)
        except TransactionFailed as refused:
            logger.log(
                logging.INFO if refused.conflict else logging.WARNING,
                "update batch refused partition=%s calls=%d status=%d index=%s code=%s; updating one by one",
                partition,
                len(writes),
                refused.status,
                refused.index,
                safe(refused.code),
            )
        except EntityRefused as error:  # the request itself refused: each call then shows its own answer
            logger.warning("update batch failed status=%s; updating one by one", error.status)
        return None

    def _one_by_one(
        self,
        changes: Sequence[tuple[CallRecord, Change]],
        changed: Sequence[CallRecord],
        indexes: list[int],
        results: list[CallRecord | None | NotSaved],
        *,
        after_refusal: bool,
    ) -> None:
        """`update` each of `indexes`, its result into `results`: a call whose write fails costs only itself."""
        outage: StorageError | None = None
        for index in indexes:
            record, change = changes[index]
            if outage is not None:
                results[index] = NotSaved(type(outage).__name__, outage=True)
                continue
            try:
                results[index] = self.update(record, change, done=changed[index] if after_refusal else None)
            except StorageError as error:  # storage cannot serve (not a refusal): the rest would only wait for it too
                outage = error
                results[index] = NotSaved(type(error).__name__, outage=True)
            except (UnstorableEntity, EntityRefused) as refused:
                results[index] = self._not_saved(record, refused)
            except Exception as error:  # unexpected: still this call alone, the others are written
                logger.exception("keepalive result not saved callId=%s error=%s", safe(record.call_id), error)
                results[index] = NotSaved(type(error).__name__)

    @staticmethod
    def _not_saved(record: CallRecord, refused: UnstorableEntity | EntityRefused) -> NotSaved:
        if isinstance(refused, UnstorableEntity):
            reason = refused.reason
        else:
            reason = f"storage refused the entity status={refused.status}"
        logger.log(
            failure_level(),
            "keepalive result not saved callId=%s reason=%s; the call keeps its stored state",
            safe(record.call_id),
            reason,
        )
        return NotSaved(reason)

    def pages(self, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None) -> Iterator[list[CallRecord]]:
        """Every call, one page at a time: memory holds one page, not the table. Unreadable rows are
        left out, logged and counted in `skipped` (see `_rows`)."""
        return self._records(self._rows.pages(page_size=page_size), skipped)

    def partition_pages(
        self, partition: str, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None
    ) -> Iterator[list[CallRecord]]:
        """The calls of one partition (`00`..`63`), one page at a time (unreadable rows as in `pages`)."""
        return self._records(self._rows.pages(partition=partition, page_size=page_size), skipped)

    def count(self, *, more_than: int, partition: str | None = None) -> int:
        """How many calls (of one partition, or all), stopping once past `more_than`; unreadable rows do not count.

        Reads at most `more_than` + one page: enough to tell whether the table is above a threshold.
        """
        counted = 0
        for page in self._rows.pages(partition=partition, select=_RECORD_PROPERTIES, action="count"):
            counted += count_rows(page)
            if counted > more_than:
                break
        return counted

    @staticmethod
    def _records(
        pages: Iterator[Sequence[Mapping[str, Any]]], skipped: SkippedRows | None
    ) -> Iterator[list[CallRecord]]:
        for page in pages:
            records = read_rows(page, skipped)
            if records:
                yield records
