"""Hand-written fakes and recorders shared by the tests, the soak and the benchmarks (nothing here mocks an SDK).

- Time: `FakeClock` (the app's `now`), `RecordingSleep` (its `sleep`), `FakeTime` (the rate limiter's pair).
- Storage requests: `RequestCounter` (the storage clients' request hook).
- Storage in memory: `MemoryStorage` (its `stores()` for `Context(stores=...)`), made of `MemoryCalls`,
  `MemoryQueue`, `MemoryEnds` and `MemoryWorkQueue`: the one in-memory implementation of the Protocols of
  shared/storage (mypy checks it against them; tests/contract/ holds it to Azure's answers), with `StorageFaults`,
  the switch that fails any operation. A use the Protocols forbid raises `ContractViolation` and fails the test.
- Our own protocols, for unit tests: `FakeSender` (a tick's keepAlive sender), `FakeWriter` (its writer),
  `FakeMsalApp` (an MSAL confidential client), `WorkMessage` (a queue message).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import StorageUnavailable, UnreadableRow
from shared.events import event_text
from shared.graph import KeepAliveResult
from shared.models import CallRecord, call_keys
from shared.paging import decode_token, encode_token, first_key_at_or_after
from shared.storage import (
    BATCH_SIZE,
    ENDED_MEMORY,
    PAGE_SIZE,
    Change,
    EventQueue,
    NotSaved,
    Purged,
    SkippedRows,
    Stores,
)
from shared.sweep import Unsaved

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
INJECTED = "Storage is unavailable; try again later. (injected)"


# --- time --------------------------------------------------------------------------------------------
class FakeClock:
    """Simulated time for `Context(now=...)`: stands still until advanced. Thread-safe."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(**delta)
            return self._now


class RecordingSleep:
    """`Context(sleep=...)`: records each wait instead of waiting. Thread-safe.

    `keep=False` keeps only the count, the total and the longest wait, so a long run's memory stays flat.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.waits: list[float] = []
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.total += seconds
            self.longest = max(self.longest, seconds)
            if self._keep:
                self.waits.append(seconds)


class FakeTime:
    """A monotonic clock that moves only when slept on (or advanced), with its sleep: the rate limiter's
    `clock`/`sleep` pair (`Context(pace_clock=time.clock, pace_sleep=time.sleep)`). Thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


# --- storage requests --------------------------------------------------------------------------------
class RequestCounter:
    """Storage requests sent, by `"<service> <kind>"` (`table read`, `table write`, `table batch`, `queue write`).

    Pass it as `Context(settings, on_storage_request=counter)`: the storage clients tell it of every attempt.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __call__(self, service: str, kind: str) -> None:
        with self._lock:
            self._counts[f"{service} {kind}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @staticmethod
    def writes(counts: dict[str, int]) -> int:
        """Requests of a snapshot (or a difference of two) that change something: writes and transactions."""
        return sum(n for kind, n in counts.items() if not kind.endswith(" read"))

    @staticmethod
    def since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {kind: n - before.get(kind, 0) for kind, n in after.items() if n - before.get(kind, 0)}


# --- our own protocols, for unit tests -----------------------------------------------------------------
class FakeSender:
    """A tick's keepAlive sender: answers from `results` (200 otherwise), records what it sent and how many
    were in flight at once; with a `gate`, each keepAlive waits for it (at most 5 s)."""

    def __init__(self, results: dict[str, KeepAliveResult] | None = None, gate: threading.Event | None = None):
        self.results = results or {}
        self.sent: list[tuple[str, str]] = []
        self.gate = gate
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult:
        with self._lock:
            self.sent.append((call_id, tenant_id))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.gate is not None:
            self.gate.wait(5)
        with self._lock:
            self.in_flight -= 1
        return self.results.get(call_id, KeepAliveResult(status=200, attempts=1))


class FakeWriter:
    """A tick's result writer: records each write as `(kind, callId, ...)`; a write for a callId in `fail_on`
    raises `StorageUnavailable`; `flush()` counts itself and reports `unsaved` as lost."""

    def __init__(self, fail_on: set[str] | None = None, unsaved: Unsaved | None = None):
        self.ops: list[tuple[Any, ...]] = []
        self.flushes = 0
        self.fail_on = fail_on or set()
        self.unsaved = unsaved or Unsaved()
        self._lock = threading.Lock()

    def _log(self, *op: Any) -> None:
        if op[1] in self.fail_on:
            raise StorageUnavailable("down")
        with self._lock:
            self.ops.append(op)

    def succeeded(self, rec: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord:
        self._log("succeeded", rec.call_id, result.status, now)
        return rec.with_result(now=now, status=result.status, error=None, ok=True)

    def failed(self, rec: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord:
        self._log("failed", rec.call_id, status, error)
        return rec.with_result(now=now, status=status, error=error, ok=False)

    def end(self, rec: CallRecord, event: dict[str, Any]) -> None:
        self._log("ended", rec.call_id, event)

    def flush(self) -> Unsaved:
        self.flushes += 1
        return self.unsaved


class FakeMsalApp:
    """Stands in for the MSAL app the token provider builds per tenant: counts cache lookups and removals."""

    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in
        self.lookups = 0
        self.removed = 0

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.lookups += 1
        return {"access_token": f"token-{self.removed}", "expires_in": self.expires_in, "token_source": "cache"}

    def remove_tokens_for_client(self) -> None:
        self.removed += 1


class WorkMessage:
    """A work message as the queue trigger hands it over (`id`, `dequeue_count`, `get_body()`)."""

    def __init__(self, body: str | bytes, dequeue_count: int = 1, id: str = "message-1") -> None:
        self.id = id
        self.dequeue_count = dequeue_count
        self._body = body.encode() if isinstance(body, str) else body

    def get_body(self) -> bytes:
        return self._body


class FakeTokenCredential:
    """A `TokenCredential` for the topic's Entra path: hands out one token and records the scopes asked for.
    Give `token` to the topic stand-in (`topic.standin.tokens.add(...)`) so it accepts it."""

    def __init__(self, token: str = "fake-entra-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


# --- storage in memory: the Protocols of shared/storage, held to Azure's answers by tests/contract/ ---------------
class ContractViolation(AssertionError):
    """The engine used storage in a way the Protocols forbid and Azure would not notice (a `changed` that is not
    its change). Every violation is also recorded, this one and those Azure refuses with a `ValueError` (a batch of
    two partitions, a conditional write without an ETag), so that a caller that swallows the error (`BatchWriter`
    counts any error of a write as unsaved) still fails the test at its teardown (tests/conftest.py)."""


_violations: list[str] = []
_violations_lock = threading.Lock()


def _violated(message: str) -> str:
    """Record a violation, and return its message for the error raised where it happened."""
    with _violations_lock:
        _violations.append(message)
    return message


def take_violations() -> list[str]:
    """The violations recorded since the last call, forgotten once taken."""
    with _violations_lock:
        found, _violations[:] = list(_violations), []
    return found


def check_violations() -> None:
    """Fail (`AssertionError`) when storage was used against its contract since the last check: tests/conftest.py
    checks after every test."""
    violations = take_violations()
    assert violations == [], f"storage used against its contract: {violations}"


class Fault:
    """One armed failure: the next `times` calls of `operation` whose arguments pass `when` raise `error()`."""

    def __init__(
        self, operation: str, times: int, when: Callable[..., bool] | None, error: Callable[[], Exception]
    ) -> None:
        self.operation = operation
        self.remaining = times
        self.when = when
        self.error = error
        self.raised = 0


class StorageFaults:
    """The switch that fails any operation of the in-memory storage, as an outage would (`StorageUnavailable`).

    Operations: `prepare` (before a sweep), `calls.insert`, `calls.get`, `calls.delete`, `calls.update_all` (the
    whole batch; `when` gets the changes), `calls.page` (each page that `pages`/`partition_pages` read; `when`
    gets its index from 0 and the partition, None for `pages`), `calls.count`, `calls.list_page`, `<queue>.send`
    (`cleanup`, `call_events`; `when` gets the event), `ends.remember`, `ends.recently_ended`, `ends.forget`,
    `ends.purge`, `work.backlog`, `work.send`.
    """

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        self._lock = threading.Lock()

    def fail(
        self,
        operation: str,
        *,
        times: int = 1,
        when: Callable[..., bool] | None = None,
        error: Callable[[], Exception] = lambda: StorageUnavailable(INJECTED),
    ) -> Fault:
        fault = Fault(operation, times, when, error)
        with self._lock:
            self._armed.append(fault)
        return fault

    def clear(self) -> None:
        """Storage is back: nothing armed fails any more."""
        with self._lock:
            self._armed.clear()

    def check(self, operation: str, *args: Any) -> None:
        with self._lock:
            fault = next(
                (
                    f
                    for f in self._armed
                    if f.operation == operation and f.remaining > 0 and (f.when is None or f.when(*args))
                ),
                None,
            )
            if fault is None:
                return
            fault.remaining -= 1
            fault.raised += 1
        raise fault.error()


class MemoryCalls:
    """The calls table (`shared.storage.Calls`) in memory: rows are entities as `CallRecord.to_entity` makes them
    (any other can be planted with `put_row`), each with an ETag that changes on every write; conditional writes
    answer as Table Storage's (404: gone, 409: exists, 412: changed meanwhile, then read again)."""

    def __init__(self, faults: StorageFaults | None = None) -> None:
        self.faults = faults or StorageFaults()
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._lock = threading.RLock()
        self._version = 0
        self.batches: list[list[str]] = []  # the callIds of each `update_all`, in order
        self.listed: list[tuple[int, str | None]] = []  # what each `list_page` was asked: (top, token)

    # --- rows and ETags ---
    def _write(self, entity: Mapping[str, Any]) -> str:
        self._version += 1
        etag = f"W/\"datetime'{self._version}'\""
        self._rows[(entity["PartitionKey"], entity["RowKey"])] = (dict(entity), etag)
        return etag

    def put_row(self, entity: Mapping[str, Any]) -> None:
        """Store any entity as it is (a row of another program, or one damaged by hand)."""
        with self._lock:
            self._write(entity)

    def rows(self) -> list[dict[str, Any]]:
        """Every stored entity, in key order (what a reader of the table with the SDK would see)."""
        with self._lock:
            return [dict(self._rows[key][0]) for key in sorted(self._rows)]

    def remove_row(self, partition_key: str, row_key: str) -> None:
        """Delete a row whatever it holds (what an operator does by hand)."""
        with self._lock:
            self._rows.pop((partition_key, row_key), None)

    def _read(self, key: tuple[str, str], skipped: SkippedRows | None = None) -> CallRecord | None:
        stored = self._rows.get(key)
        if stored is None:
            return None
        entity, etag = stored
        try:
            return replace(CallRecord.from_entity(entity), etag=etag)
        except UnreadableRow as error:
            (skipped if skipped is not None else SkippedRows()).add(entity, error)
            return None

    # --- the Protocol ---
    def insert(self, record: CallRecord) -> bool:
        self.faults.check("calls.insert", record)
        with self._lock:
            if record.keys in self._rows:
                return False
            self._write(record.to_entity())
            return True

    def get(self, call_id: str) -> CallRecord | None:
        self.faults.check("calls.get", call_id)
        with self._lock:
            record = self._read(call_keys(call_id))
        return record if record is not None and record.call_id == call_id else None

    def delete(self, record: CallRecord) -> bool:
        self.faults.check("calls.delete", record)
        if record.etag is None:  # the SDK refuses it so: "IfNotModified must be specified with etag."
            raise ValueError(_violated(f"delete of {record.call_id!r} without the ETag it was read with"))
        with self._lock:
            current = self._read(record.keys)
            if current is None or current.registration_id != record.registration_id:
                return False
            del self._rows[record.keys]
            return True

    def update_all(
        self, changes: Sequence[tuple[CallRecord, Change]], changed: Sequence[CallRecord]
    ) -> list[CallRecord | None | NotSaved]:
        with self._lock:
            self.batches.append([record.call_id for record, _ in changes])
        self.faults.check("calls.update_all", changes)
        if len(changes) > BATCH_SIZE or len({record.keys[0] for record, _ in changes}) > 1:  # CallsTable's refusal
            raise ValueError(_violated(f"update_all takes at most {BATCH_SIZE} calls of one partition"))
        if [new.call_id for new in changed] != [record.call_id for record, _ in changes]:
            raise ContractViolation(_violated("update_all's `changed` is not each change applied to its record"))
        if any(record.etag is None for record, _ in changes):
            raise ContractViolation(_violated("update_all of a call without the ETag it was read with"))
        with self._lock:
            current = [self._read(record.keys) for record, _ in changes]
            if len(changes) > 1 and all(now is not None and now.etag == record.etag for now, (record, _) in
                                        zip(current, changes, strict=True)):  # fmt: skip
                return [replace(new, etag=self._write(new.to_entity())) for new in changed]  # one transaction
            return [
                self._update(record, change, now, done=new if len(changes) > 1 else None)
                for (record, change), new, now in zip(changes, changed, current, strict=True)
            ]

    def _update(
        self, record: CallRecord, change: Change, current: CallRecord | None, *, done: CallRecord | None
    ) -> CallRecord | None:
        """One conditional replace, as `CallsTable.update` makes it: gone or re-registered: None; changed
        meanwhile: the change applied to the fresh row (unless it holds the change already, `done`)."""
        if current is None or current.registration_id != record.registration_id:
            return None
        if current.etag != record.etag:
            if done is not None and current == done:
                return current
            new = change(current)
        else:
            new = change(record)
        return replace(new, etag=self._write(new.to_entity()))

    def pages(self, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None) -> Iterator[list[CallRecord]]:
        return self._pages(None, page_size, skipped)

    def partition_pages(
        self, partition: str, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None
    ) -> Iterator[list[CallRecord]]:
        return self._pages(partition, page_size, skipped)

    def _pages(self, partition: str | None, page_size: int, skipped: SkippedRows | None) -> Iterator[list[CallRecord]]:
        """Read lazily after the last key read, as a query's continuation does: rows written meanwhile ahead of
        it are read, rows behind it are not."""
        after: tuple[str, str] | None = None
        index = 0
        while True:
            self.faults.check("calls.page", index, partition)
            index += 1
            with self._lock:
                keys = sorted(
                    key
                    for key in self._rows
                    if (partition is None or key[0] == partition) and (after is None or key > after)
                )[:page_size]
                if not keys:
                    return
                after = keys[-1]
                records = [record for key in keys if (record := self._read(key, skipped)) is not None]
            if records:
                yield records

    def count(self, *, more_than: int) -> int:
        self.faults.check("calls.count", more_than)
        with self._lock:
            return sum(1 for key in self._rows if self._readable(key))

    def _readable(self, key: tuple[str, str]) -> bool:
        try:
            CallRecord.from_entity(self._rows[key][0])
        except UnreadableRow:
            return False
        return True

    def list_page(self, top: int, continuation_token: str | None) -> tuple[list[CallRecord], str | None]:
        self.listed.append((top, continuation_token))
        self.faults.check("calls.list_page", top, continuation_token)
        start = decode_token(continuation_token) if continuation_token else None
        with self._lock:
            keys = sorted(key for key in self._rows if start is None or key >= start)[: top + 1]
            records = [record for key in keys[:top] if (record := self._read(key)) is not None]
        next_key = first_key_at_or_after(*keys[top]) if len(keys) > top else None
        return records, None if next_key is None else encode_token(next_key)


class MemoryQueue:
    """A queue of `callEnded` events (`shared.storage.EventQueue`) in memory: what was sent, as the queue's text."""

    def __init__(self, name: str, faults: StorageFaults | None = None) -> None:
        self.name = name
        self.faults = faults or StorageFaults()
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def send(self, event: Mapping[str, Any]) -> None:
        self.faults.check(f"{self.name}.send", event)
        with self._lock:
            self.texts.append(event_text(event))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(text) for text in self.texts]


class MemoryEnds:
    """The memory of ends (`shared.storage.EndMemory`) in memory, laid out as Azure's: an end is kept under the
    UTC day it happened, and only today's and yesterday's are looked at."""

    def __init__(self, faults: StorageFaults | None = None) -> None:
        self.faults = faults or StorageFaults()
        self._ends: dict[tuple[str, str, str], tuple[datetime, str]] = {}  # (day, callId, tenant) -> (when, reason)
        self._lock = threading.Lock()

    @staticmethod
    def _day(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y%m%d")

    def _days(self, now: datetime) -> set[str]:
        return {self._day(now), self._day(now - ENDED_MEMORY)}

    def remember(self, call_id: str, *, tenant_id: str | None, reason: str, now: datetime) -> None:
        self.faults.check("ends.remember", call_id, tenant_id)
        with self._lock:
            self._ends[(self._day(now), call_id, tenant_id or "none")] = (now, reason)

    def recently_ended(self, call_id: str, tenant_id: str | None, now: datetime) -> bool:
        self.faults.check("ends.recently_ended", call_id, tenant_id)
        with self._lock:
            for day in self._days(now):
                end = self._ends.get((day, call_id, tenant_id or "none"))
                if end is not None and (timedelta(0) <= now - end[0] <= ENDED_MEMORY or end[0] > now):
                    return True
        return False

    def forget(self, call_id: str, now: datetime) -> None:
        self.faults.check("ends.forget", call_id)
        with self._lock:
            days = self._days(now)
            for key in [key for key in self._ends if key[0] in days and key[1] == call_id]:
                del self._ends[key]

    def purge(self, now: datetime, *, budget: float, clock: Callable[[], float]) -> Purged:
        self.faults.check("ends.purge")
        started = clock()
        cutoff = now - ENDED_MEMORY
        day = self._day(cutoff)
        with self._lock:
            expired = sorted(
                key for key, (at, _) in self._ends.items() if key[0] < day or (key[0] == day and at < cutoff)
            )
        removed = 0
        for start in range(0, len(expired), PAGE_SIZE):
            with self._lock:
                for key in expired[start : start + PAGE_SIZE]:
                    self._ends.pop(key, None)
            removed += len(expired[start : start + PAGE_SIZE])
            if start + PAGE_SIZE < len(expired) and clock() - started >= budget:
                return Purged(removed, left=True, seconds=clock() - started)
        return Purged(removed, left=False, seconds=clock() - started)

    def ends(self) -> list[tuple[str, str | None, datetime, str]]:
        """Every end remembered: (callId, tenant, when, reason)."""
        with self._lock:
            return [
                (call_id, None if tenant == "none" else tenant, at, reason)
                for (_, call_id, tenant), (at, reason) in sorted(self._ends.items())
            ]


class MemoryWorkQueue:
    """The fan-out work queue (`shared.storage.WorkQueue`) in memory."""

    def __init__(self, faults: StorageFaults | None = None) -> None:
        self.faults = faults or StorageFaults()
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def backlog(self) -> int:
        self.faults.check("work.backlog")
        with self._lock:
            return len(self.texts)

    def send(self, text: str) -> None:
        self.faults.check("work.send", text)
        with self._lock:
            self.texts.append(text)


class MemoryStorage:
    """Every table and queue of the engine in memory, failing together through one `StorageFaults`."""

    def __init__(self, *, topic: bool = False) -> None:
        self.faults = StorageFaults()
        self.calls = MemoryCalls(self.faults)
        self.cleanup = MemoryQueue("cleanup", self.faults)
        self.call_events = MemoryQueue("call_events", self.faults) if topic else None
        self.ends = MemoryEnds(self.faults)
        self.work = MemoryWorkQueue(self.faults)

    def stores(self) -> Stores:
        return Stores(
            calls=self.calls,
            cleanup=self.cleanup,
            call_events=self.call_events,
            recent_ends=self.ends,
            work=self.work,
            prepare=lambda writes: self.faults.check("prepare", writes),
        )

    @property
    def event_queues(self) -> tuple[EventQueue, ...]:
        return self.stores().event_queues
