"""Table Storage on the wire, for the sweep's hot paths: query pages and entity group transactions.

The SDK's `TableClient` deserializes every property of every entity through its generic machinery
(dates through `strptime`), and `submit_transaction` builds and parses the `$batch` body with the
`email` package, running every sub-request through a pipeline: together several times the CPU of the
keepAlive each call costs, on a machine where the sweep's Python is the bottleneck. So, for the tick:

- `query_pages` sends Table Storage's query (`GET {table}()?$top=…&$filter=…`, continuation headers)
  and hands back each entity as the service's JSON (`WireEntity`, which `CallRecord.from_entity` reads);
- `replace_all` sends one changeset of `PUT … If-Match` (the body the SDK would send) and reads only
  the status line and ETag of each part;
- `wire_entity` is the one check of what Table Storage takes, before anything is written to the calls table
  (the transactions here, and `sdk_entity` for the SDK's own inserts and updates): Int32 values in range,
  doubles finite, dates from 1601-01-01 to 9999-12-31 (written with four-digit years), strings of at most
  64 KiB as UTF-16 and no lone surrogate, keys of at most 1 KiB without `/ \\ # ?` or control characters,
  at most 252 properties and 1 MiB in all. What it refuses raises `UnstorableEntity` and is never sent, so it
  costs only its own entity, not a transaction of a hundred
  (https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).

Both go through the table client's own pipeline (authentication, retries, the request counter) and fall
back to the SDK's public calls when that pipeline is not where it used to be. Filter values are bound
with `bind`, which quotes them as OData literals: no value is ever spliced into a filter unquoted.
A changeset is all or nothing: when one entity changed or was deleted meanwhile (412 or 404), or any
part fails, `TransactionFailed` says so and nothing was written.
"""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlencode

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from shared.errors import TransactionFailed, UnstorableEntity
from shared.models import EARLIEST, LATEST
from shared.storage._base import BATCH_SIZE, PAGE_SIZE

LOST_ANSWER_RETRIES = 2  # a transaction whose answer was lost is sent again this many times at most
_PARAMETER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_STATUS = re.compile(rb"(?:^|\r\n)HTTP/1\.1 (\d{3})[^\r\n]*\r\n(.*?)\r\n\r\n", re.DOTALL)
_ETAG = re.compile(rb"(?im)^etag:[ \t]*(.+?)[ \t]*$")
_INDEX = re.compile(r"^(\d+):")
_INT32 = range(-(2**31), 2**31)
MAX_STRING_BYTES = 64 * 1024  # of one string property, as UTF-16
MAX_KEY_BYTES = 1024  # of PartitionKey and of RowKey, as UTF-16
MAX_ENTITY_BYTES = 1024 * 1024  # of all of an entity's data
MAX_PROPERTIES = 252 + 2  # 252 of the app's own, and the two keys (Timestamp is the service's)
_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


class WireEntity(dict[str, Any]):
    """An entity as the service's JSON (`odata=minimalmetadata`), with its ETag where the SDK keeps it."""

    __slots__ = ("metadata",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.metadata: dict[str, Any] = {"etag": data.get("odata.etag")}


def bind(query_filter: str, parameters: Mapping[str, str]) -> str:
    """`query_filter` with each `@name` replaced by its string value as a quoted OData literal."""

    def literal(match: re.Match[str]) -> str:
        value = parameters[match.group(1)]
        if not isinstance(value, str):
            raise TypeError("only string parameters are bound here")
        return "'" + value.replace("'", "''") + "'"

    return _PARAMETER.sub(literal, query_filter)


def query_pages(
    table: TableClient,
    *,
    query_filter: str | None = None,
    parameters: Mapping[str, str] | None = None,
    select: Sequence[str] | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[list[WireEntity]]:
    """The entities of `table` (matching `query_filter`, values bound from `parameters`), a page at a time.

    Raises what the pipeline raises, and `HttpResponseError` for an error answer (the caller's storage
    error boundary sorts those out).
    """
    generated = _pipeline(table)
    if generated is None:
        yield from _query_pages_with_sdk(table, query_filter, parameters, select, page_size)
        return
    query: dict[str, str] = {"$top": str(min(max(1, page_size), PAGE_SIZE))}
    if query_filter is not None:
        query["$filter"] = bind(query_filter, parameters or {})
    if select:
        query["$select"] = ",".join(select)
    account_url = table.url.split("?", 1)[0].rstrip("/")
    headers = {
        "x-ms-version": table.api_version,
        "DataServiceVersion": "3.0",
        "Accept": "application/json;odata=minimalmetadata",
    }
    continuation: dict[str, str] = {}
    while True:
        url = f"{account_url}/{table.table_name}()?{urlencode({**query, **continuation}, quote_via=quote)}"
        response = generated.send_request(HttpRequest("GET", url, headers=headers), stream=True)
        body = response.read()
        if response.status_code != 200:
            raise HttpResponseError(message=f"query failed status={response.status_code}", response=response)
        yield [WireEntity(item) for item in json.loads(body)["value"]]
        continuation = {
            name: value
            for name, value in (
                ("NextPartitionKey", response.headers.get("x-ms-continuation-NextPartitionKey")),
                ("NextRowKey", response.headers.get("x-ms-continuation-NextRowKey")),
            )
            if value
        }
        if not continuation:
            return


def _query_pages_with_sdk(
    table: TableClient,
    query_filter: str | None,
    parameters: Mapping[str, str] | None,
    select: Sequence[str] | None,
    page_size: int,
) -> Iterator[list[WireEntity]]:
    if query_filter is None:
        entities = table.list_entities(select=list(select) if select else None, results_per_page=page_size)
    else:
        entities = table.query_entities(
            query_filter,
            parameters=dict(parameters or {}),
            select=list(select) if select else None,
            results_per_page=page_size,
        )
    for page in entities.by_page():
        items = []
        for entity in page:
            item = WireEntity(entity)
            item.metadata = dict(getattr(entity, "metadata", {}) or {})
            items.append(item)
        yield items


def _pipeline(table: TableClient) -> Any:
    """The table client's generated client, whose `send_request` runs its pipeline; None if it moved."""
    generated = getattr(table, "_client", None)
    return generated if callable(getattr(generated, "send_request", None)) else None


def wire_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """`entity` as Table Storage's JSON, typed as the SDK types it (`_serialize._add_entity_properties`), once it
    has passed the check of what the service takes; `UnstorableEntity` (naming the property) when it has not.

    The size counts as the service does: 4 bytes, then per property 8 bytes, its name and its value (strings as
    UTF-16 with 4 bytes of length, numbers and dates 4 or 8 bytes).
    """
    properties: dict[str, Any] = {}
    size = 4
    for name, value in entity.items():
        if value is None:
            continue
        size += 8 + 2 * len(name)
        if isinstance(value, bool):
            properties[name] = value
            size += 1
        elif isinstance(value, str):
            length = _utf16_bytes(name, value)
            if length > MAX_STRING_BYTES:
                raise UnstorableEntity(f"{name} is {length} bytes as UTF-16 (Table Storage takes {MAX_STRING_BYTES})")
            properties[name] = value
            properties[name + "@odata.type"] = "Edm.String"
            size += 4 + length
        elif isinstance(value, int):
            if value not in _INT32:
                raise UnstorableEntity(f"{name} is outside Edm.Int32 ({value})")
            properties[name] = value
            size += 4
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise UnstorableEntity(f"{name} is not a finite number")
            properties[name] = value
            properties[name + "@odata.type"] = "Edm.Double"
            size += 8
        elif isinstance(value, datetime):
            properties[name] = wire_time(name, value)
            properties[name + "@odata.type"] = "Edm.DateTime"
            size += 8
        else:
            raise UnstorableEntity(f"{name} is of type {type(value).__name__}, which is not stored here")
    for key in ("PartitionKey", "RowKey"):
        value = entity.get(key)
        if not isinstance(value, str) or 2 * len(value) > MAX_KEY_BYTES or _KEY_FORBIDDEN.search(value):
            raise UnstorableEntity(f"{key} is not a string of at most 1 KiB without / \\ # ? or control characters")
    if len(entity) > MAX_PROPERTIES or size > MAX_ENTITY_BYTES:
        raise UnstorableEntity(f"the entity has {len(entity)} properties and {size} bytes (at most 252 and 1 MiB)")
    return properties


def _utf16_bytes(name: str, value: str) -> int:
    if value.isascii():  # O(1) in CPython: nearly every string the app writes
        return 2 * len(value)
    try:
        return len(value.encode("utf-16-le"))
    except UnicodeEncodeError:
        raise UnstorableEntity(f"{name} holds a lone surrogate") from None


def wire_time(name: str, value: datetime) -> str:
    """`value` as Table Storage's Edm.DateTime text, in UTC with a four-digit year (`strftime`'s `%Y` writes a year
    below 1000 unpadded, which the service's readers cannot parse); `UnstorableEntity` outside 1601-9999."""
    try:
        v = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise UnstorableEntity(f"{name} is not a date from 1601 to 9999") from None
    if not EARLIEST <= v <= LATEST:
        raise UnstorableEntity(f"{name} is not a date from 1601 to 9999")
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"


def sdk_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """`entity` for the SDK's own writes (`create_entity`, `update_entity`), after `wire_entity`'s check: the same
    values, dates as the text `wire_entity` writes (the SDK would pass them through `strftime`)."""
    wire = wire_entity(entity)
    return {
        name: EntityProperty(wire[name], EdmType.DATETIME) if isinstance(value, datetime) else value
        for name, value in entity.items()
        if value is not None
    }


def encode(
    account_url: str, table_name: str, changes: Sequence[tuple[Mapping[str, Any], str]], *, version: str
) -> tuple[bytes, str]:
    """The `$batch` body replacing each entity (as `wire_entity` made it) if its ETag matches, and its boundary."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    date = formatdate(usegmt=True)
    chunks = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
    for index, (entity, etag) in enumerate(changes):
        keys = f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
        body = json.dumps(entity)  # ASCII (escaped), so its length in characters is in bytes
        chunks.append(
            f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {index}\r\n\r\n"
            f"PUT {account_url}/{table_name}({keys}) HTTP/1.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-ms-version: {version}\r\nDataServiceVersion: 3.0\r\n"
            f"Accept: application/json\r\nIf-Match: {etag}\r\nx-ms-date: {date}\r\nDate: {date}\r\n\r\n"
            f"{body}\r\n"
        )
    chunks.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n")
    return "".join(chunks).encode("ascii"), batch


def decode(body: bytes, expected: int) -> list[str | None]:
    """The ETags of a successful changeset's answer, in order; `TransactionFailed` when it was refused."""
    parts = [(int(match.group(1)), match.group(2)) for match in _STATUS.finditer(body)]
    failed = next((part for part in parts if not 200 <= part[0] < 300), None)
    if failed is not None:
        index, code = _error_details(body)
        raise TransactionFailed(failed[0], index=index, code=code)
    if len(parts) != expected:
        raise TransactionFailed(0, code=f"expected {expected} answers, got {len(parts)}")
    etags: list[str | None] = []
    for _, headers in parts:
        match = _ETAG.search(headers)
        etags.append(match.group(1).decode("latin-1") if match else None)
    return etags


def replace_all(table: TableClient, changes: Sequence[tuple[Mapping[str, Any], str]]) -> list[str | None]:
    """Replace every entity if its ETag still matches, all or none; returns the new ETags in order.

    Each entity is Table Storage's JSON of it, as `wire_entity` makes it (checked, so storage takes it). All
    entities belong to one partition, at most `BATCH_SIZE` of them. Raises `TransactionFailed` when
    the changeset is refused, `HttpResponseError` when the request itself fails (the caller's storage error
    boundary sorts those out), and the pipeline's own errors when the service cannot be reached.
    """
    if not changes:
        return []
    if len(changes) > BATCH_SIZE or len({entity["PartitionKey"] for entity, _ in changes}) != 1:
        raise ValueError(f"a transaction holds 1 to {BATCH_SIZE} entities of one partition")
    generated = _pipeline(table)
    if generated is None:
        return _replace_all_with_sdk(table, changes)
    account_url = table.url.split("?", 1)[0].rstrip("/")
    body, boundary = encode(account_url, table.table_name, changes, version=table.api_version)
    request = HttpRequest(
        "POST",
        f"{account_url}/$batch",
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Accept": "application/json",
        },
        content=body,
    )
    # The pipeline does not retry a POST whose answer was lost (a pooled connection the service had just
    # closed, a reset). Sending it again is safe here: had an earlier one gone through, every ETag changed,
    # so this one is refused (412) and the caller redoes the changes one by one on fresh reads.
    for attempt in range(LOST_ANSWER_RETRIES + 1):
        try:
            response = generated.send_request(copy.deepcopy(request), stream=True)
            break
        except ServiceResponseError:
            if attempt == LOST_ANSWER_RETRIES:
                raise
    if response.status_code != 202:
        raise HttpResponseError(
            message=f"entity group transaction failed status={response.status_code}", response=response
        )
    return decode(response.read(), len(changes))


def _replace_all_with_sdk(table: TableClient, changes: Sequence[tuple[Mapping[str, Any], str]]) -> list[str | None]:
    operations = [
        (
            "update",
            _from_wire(entity),
            {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified},
        )
        for entity, etag in changes
    ]
    try:
        results = table.submit_transaction(operations)
    except TableTransactionError as error:
        raise TransactionFailed(
            error.status_code or 0, index=error.index, code=getattr(error, "error_code", None)
        ) from None
    return [result.get("etag") for result in results]


def _from_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A `wire_entity` as the SDK takes it: every value with its Edm type."""
    return {
        name: EntityProperty(value, EdmType(wire[name + "@odata.type"])) if name + "@odata.type" in wire else value
        for name, value in wire.items()
        if not name.endswith("@odata.type")
    }


def _key(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")


def _error_details(body: bytes) -> tuple[int | None, str | None]:
    """The failing operation's index and error code from a refused changeset's JSON error, when present."""
    start = body.find(b'{"odata.error"')
    if start < 0:
        return None, None
    try:
        error = json.JSONDecoder().raw_decode(body[start:].decode("utf-8", "replace"))[0]["odata.error"]
        message = error.get("message", {}).get("value", "")
        match = _INDEX.match(message)
        return (int(match.group(1)) if match else None), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
