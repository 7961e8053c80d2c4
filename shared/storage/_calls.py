"""The calls table on Azure Table Storage (`CallsTable`, the `Calls` of shared/storage/_base.py): registration,
lookup, paging, counting, and the tick's conditional writes.

A callId only ever reaches the table as a key derived from its hash (see `models.call_keys`), never inside a
filter string. Rows the app cannot read are skipped (`_rows`). Listing pages travel to the caller as
continuation tokens that name an app key (shared/paging.py; any other token is refused).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import chain, islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.errors import StorageUnavailable, TransactionFailed, UnstorableEntity
from shared.loglimit import failure_level
from shared.logsafe import get_logger, safe
from shared.models import CallRecord, call_keys
from shared.paging import decode_token, encode_token, first_key_at_or_after
from shared.storage._base import BATCH_SIZE, PAGE_SIZE, Change, NotSaved
from shared.storage._clients import Storage, storage_errors
from shared.storage._rows import SkippedRows, count_rows, read_rows
from shared.storage._tablewire import query_pages, replace_all, sdk_entity, wire_entity

logger = get_logger(__name__)

_RECORD_PROPERTIES = (
    "PartitionKey", "RowKey", "CallId", "TenantId", "RegisteredAt", "RegistrationId", "LastKeepAliveAt", "LastStatus",
    "LastError", "ConsecutiveFailures", "Metadata",
)  # fmt: skip


class CallsTable:
    """The calls table: registration, lookup, paging, and the tick's conditional writes.

    Every entity written passes `tablewire.wire_entity`'s check of what Table Storage takes first.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def insert(self, record: CallRecord) -> bool:
        """Store a new call; False when one with that callId exists already."""
        with storage_errors("insert"):
            try:
                self._storage.table().create_entity(sdk_entity(record.to_entity()))
            except ResourceExistsError:
                return False
        return True

    def get(self, call_id: str) -> CallRecord | None:
        partition_key, row_key = call_keys(call_id)
        with storage_errors("get"):
            try:
                entity = self._storage.table().get_entity(partition_key, row_key)
            except ResourceNotFoundError:
                return None
        records = read_rows([entity])
        return records[0] if records and records[0].call_id == call_id else None

    def delete(self, record: CallRecord) -> bool:
        """Delete this registration of the call (not a newer one). False when it was gone already."""
        current: CallRecord | None = record
        while current is not None and current.registration_id == record.registration_id:
            partition_key, row_key = current.keys
            statuses: list[int] = []  # the SDK answers a delete of a missing entity quietly: look at the status
            hook = statuses.append
            with storage_errors("delete"):
                try:
                    self._storage.table().delete_entity(
                        partition_key,
                        row_key,
                        etag=current.etag,
                        match_condition=MatchConditions.IfNotModified,
                        raw_response_hook=lambda response, hook=hook: hook(response.http_response.status_code),
                    )
                    return not statuses or statuses[-1] != 404
                except ResourceModifiedError:
                    current = self.get(record.call_id)
        return False

    def update(self, record: CallRecord, change: Change, *, done: CallRecord | None = None) -> CallRecord | None:
        """Apply `change` to the stored call with an ETag condition, never re-creating a deleted call.

        Returns the stored record, or None when the call (this registration of it) is gone. `done`: the
        record as it would be stored if this change had gone through already (a transaction whose answer
        was lost); found on a fresh read, it is not applied a second time. Raises `UnstorableEntity` (nothing
        sent) for a change that storage would refuse.
        """
        current: CallRecord | None = record
        while current is not None and current.registration_id == record.registration_id:
            if done is not None and current is not record and current == done:
                return current
            changed = change(current)
            with storage_errors("update"):
                try:
                    metadata = self._storage.table().update_entity(
                        sdk_entity(changed.to_entity()),
                        mode=UpdateMode.REPLACE,
                        etag=current.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return _with_etag(changed, metadata)
                except ResourceNotFoundError:
                    return None
                except ResourceModifiedError:
                    current = self.get(record.call_id)
        return None

    def list_page(self, top: int, continuation_token: str | None) -> tuple[list[CallRecord], str | None]:
        """One page of at most `top` calls, and the token of the next page if there is one.

        Reads `top` + 1 rows from where the token says (the rest of its partition, then the partitions after
        it): the extra row, if any, is where the next page starts.
        """
        start = decode_token(continuation_token) if continuation_token else None
        size = min(PAGE_SIZE, top + 1)
        with storage_errors("list"):
            table = self._storage.table()
            if start is None:
                sources = [table.list_entities(results_per_page=size)]
            else:
                partition, row = start
                sources = [
                    table.query_entities(
                        "PartitionKey eq @p and RowKey ge @r",
                        parameters={"p": partition, "r": row},
                        results_per_page=size,
                    ),
                    table.query_entities("PartitionKey gt @p", parameters={"p": partition}, results_per_page=size),
                ]
            entities = list(islice(chain.from_iterable(sources), top + 1))
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
        writes: list[tuple[dict[str, Any], str]] = []
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

    def _transaction(self, partition: str, writes: list[tuple[dict[str, Any], str]]) -> list[str | None] | None:
        """The new ETags, or None when storage refused the transaction (then nothing of it was written)."""
        try:
            with storage_errors("update batch"):
                try:
                    return replace_all(self._storage.table(), writes)
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
        except HttpResponseError as error:  # a 4xx the boundary lets through: each call then shows its own answer
            logger.warning("update batch failed status=%s; updating one by one", error.status_code)
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
        outage: StorageUnavailable | None = None
        for index in indexes:
            record, change = changes[index]
            if outage is not None:
                results[index] = NotSaved(type(outage).__name__, outage=True)
                continue
            try:
                results[index] = self.update(record, change, done=changed[index] if after_refusal else None)
            except StorageUnavailable as error:  # an outage, not a refusal: the rest would only wait for it too
                outage = error
                results[index] = NotSaved(type(error).__name__, outage=True)
            except (UnstorableEntity, HttpResponseError) as refused:
                results[index] = self._not_saved(record, refused)
            except Exception as error:  # unexpected: still this call alone, the others are written
                logger.exception("keepalive result not saved callId=%s error=%s", safe(record.call_id), error)
                results[index] = NotSaved(type(error).__name__)

    @staticmethod
    def _not_saved(record: CallRecord, refused: UnstorableEntity | HttpResponseError) -> NotSaved:
        if isinstance(refused, UnstorableEntity):
            reason = refused.reason
        else:
            reason = f"storage refused the entity status={refused.status_code}"
        logger.log(
            failure_level(),
            "keepalive result not saved callId=%s reason=%s; the call keeps its stored state",
            safe(record.call_id),
            reason,
        )
        return NotSaved(reason)

    def pages(self, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None) -> Iterator[list[CallRecord]]:
        """Every call, one page at a time: memory holds one page, not the table. Unreadable rows are
        left out, logged and counted in `skipped` (see `shared.rows`)."""
        with storage_errors("list"):
            pager = query_pages(self._storage.table(), page_size=page_size)
        yield from self._records(pager, skipped)

    def partition_pages(
        self, partition: str, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None
    ) -> Iterator[list[CallRecord]]:
        """The calls of one partition (`00`..`63`), one page at a time (unreadable rows as in `pages`)."""
        with storage_errors("list"):
            pager = query_pages(
                self._storage.table(),
                query_filter="PartitionKey eq @partition",
                parameters={"partition": partition},
                page_size=page_size,
            )
        yield from self._records(pager, skipped)

    def count(self, *, more_than: int, partition: str | None = None) -> int:
        """How many calls (of one partition, or all), stopping once past `more_than`; unreadable rows do not count.

        Reads at most `more_than` + one page: enough to tell whether the table is above a threshold.
        """
        counted = 0
        with storage_errors("count"):
            pages = query_pages(
                self._storage.table(),
                query_filter=None if partition is None else "PartitionKey eq @partition",
                parameters=None if partition is None else {"partition": partition},
                select=_RECORD_PROPERTIES,
            )
            for page in pages:
                counted += count_rows(page)
                if counted > more_than:
                    break
        return counted

    @staticmethod
    def _records(pager: Iterator[Any], skipped: SkippedRows | None) -> Iterator[list[CallRecord]]:
        while True:
            with storage_errors("list"):
                page = next(pager, None)
                if page is None:
                    return
            records = read_rows(page, skipped)
            if records:
                yield records


def _with_etag(record: CallRecord, metadata: Any) -> CallRecord:
    etag = metadata.get("etag") if isinstance(metadata, dict) else None
    return replace(record, etag=etag)
