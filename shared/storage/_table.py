"""The calls table's rows on Azure Table Storage (`AzureRows`, the `Rows` under `CallsTable`): the SDK's point
operations and the wire path's pages and transactions (`_tablewire`), each behind the storage error boundary.

What the service answers becomes the seam's answers: 409 on an insert is False, 404 is None (or False for a
delete, which the SDK answers quietly), 412 raises `RowModified`; another 4xx of a replace (the service refused
this entity, or the whole changeset request) raises `EntityRefused`; an outage, a refused identity or a bad setting
raise the `StorageError`s of `_faults`. The action each names in the logs is the calls table's (`insert`, `get`,
`delete`, `update`, `update batch`, `list`, `count`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.errors import EntityRefused, RowModified
from shared.storage._base import PAGE_SIZE
from shared.storage._clients import Storage, storage_errors
from shared.storage._tablewire import query_pages, replace_all, sdk_entity


class AzureRows:
    """The calls table's rows, read and written on the table client of `Storage` (created when missing)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def create(self, entity: Mapping[str, Any]) -> bool:
        with storage_errors("insert"):
            try:
                self._storage.table().create_entity(sdk_entity(entity))
            except ResourceExistsError:
                return False
        return True

    def get(self, partition_key: str, row_key: str) -> Mapping[str, Any] | None:
        with storage_errors("get"):
            try:
                return self._storage.table().get_entity(partition_key, row_key)
            except ResourceNotFoundError:
                return None

    def replace(self, entity: Mapping[str, Any], etag: str | None) -> str | None:
        with _refusals(), storage_errors("update"):
            try:
                metadata = self._storage.table().update_entity(
                    sdk_entity(entity),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError:
                return None
            except ResourceModifiedError:
                raise RowModified(412) from None
        etag = metadata.get("etag") if isinstance(metadata, dict) else None
        return etag if isinstance(etag, str) else ""

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> bool:
        statuses: list[int] = []  # the SDK answers a delete of a missing entity quietly: look at the status
        with storage_errors("delete"):
            try:
                self._storage.table().delete_entity(
                    partition_key,
                    row_key,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    raw_response_hook=lambda response: statuses.append(response.http_response.status_code),
                )
            except ResourceModifiedError:
                raise RowModified(412) from None
        return not statuses or statuses[-1] != 404

    def replace_all(self, changes: Sequence[tuple[Mapping[str, Any], str]]) -> list[str | None]:
        with _refusals(), storage_errors("update batch"):
            etags = replace_all(self._storage.table(), changes)
        return etags

    def pages(
        self,
        *,
        partition: str | None = None,
        select: Sequence[str] | None = None,
        page_size: int = PAGE_SIZE,
        action: str = "list",
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        with storage_errors(action):
            pager = query_pages(
                self._storage.table(),
                query_filter=None if partition is None else "PartitionKey eq @partition",
                parameters=None if partition is None else {"partition": partition},
                select=select,
                page_size=page_size,
            )
        while True:
            with storage_errors(action):
                page = next(pager, None)
            if page is None:
                return
            yield page

    def from_key(self, start: tuple[str, str] | None, count: int) -> list[Mapping[str, Any]]:
        size = min(PAGE_SIZE, count)
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
            return list(islice(chain.from_iterable(sources), count))


class _refusals:
    """A 4xx the storage error boundary lets through (the service refused this entity): `EntityRefused`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        if isinstance(error, HttpResponseError) and not isinstance(
            error, ResourceExistsError | ResourceNotFoundError | ResourceModifiedError
        ):
            raise EntityRefused(error.status_code or 0) from error
