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
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import RowModified, StorageUnavailable, TransactionFailed
from shared.events import event_text
from shared.graph import KeepAliveResult
from shared.models import CallRecord
from shared.storage import (
    BATCH_SIZE,
    ENDED_MEMORY,
    PAGE_SIZE,
    CallsTable,
    EventQueue,
    Purged,
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


class Row(dict[str, Any]):
    """A row as read: its properties, and its ETag in `metadata` (as the SDK's entities hold it)."""

    def __init__(self, entity: Mapping[str, Any], etag: str) -> None:
        super().__init__(entity)
        self.metadata = {"etag": etag}


class MemoryRows:
    """The calls table's rows (`shared.storage.Rows`) in memory, for `CallsTable` to run over: each row with an
    ETag that changes on every write, answering as Table Storage does (an insert over a row: False, 409; a row that
    is not there: None or False, 404; an ETag that no longer matches: `RowModified`, 412; a changeset all or
    none, `TransactionFailed` naming the failing index). Any row can be planted with `put`."""

    def __init__(self, faults: StorageFaults | None = None) -> None:
        self.faults = faults or StorageFaults()
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._lock = threading.RLock()
        self._version = 0
        self.batches: list[list[str]] = []  # the CallIds of each transaction asked for, in order
        self.replaced = 0  # rows replaced, alone or in a transaction
        self.listed: list[tuple[tuple[str, str] | None, int]] = []  # each `from_key`: (start, count)

    # --- for tests: rows as they are ---
    def put(self, entity: Mapping[str, Any]) -> None:
        """Store any entity as it is (a row of another program, or one damaged by hand)."""
        with self._lock:
            self._write(entity)

    def all(self) -> list[dict[str, Any]]:
        """Every stored entity, in key order (what a reader of the table with the SDK would see)."""
        with self._lock:
            return [dict(self._rows[key][0]) for key in sorted(self._rows)]

    def remove(self, partition_key: str, row_key: str) -> None:
        """Delete a row whatever it holds (what an operator does by hand)."""
        with self._lock:
            self._rows.pop((partition_key, row_key), None)

    def _write(self, entity: Mapping[str, Any]) -> str:
        self._version += 1
        etag = f"W/\"datetime'{self._version}'\""
        stored = {name: value for name, value in entity.items() if "@" not in name and value is not None}
        self._rows[(entity["PartitionKey"], entity["RowKey"])] = (stored, etag)
        return etag

    def _matches(self, key: tuple[str, str], etag: str | None, operation: str) -> bool:
        """Whether the row is there (False: 404) with this ETag (else `RowModified`, 412)."""
        if etag is None:  # the SDK refuses it so: "IfNotModified must be specified with etag."
            raise ValueError(_violated(f"{operation} of {key} without the ETag it was read with"))
        stored = self._rows.get(key)
        if stored is None:
            return False
        if stored[1] != etag:
            raise RowModified()
        return True

    # --- the Protocol ---
    def create(self, entity: Mapping[str, Any]) -> bool:
        self.faults.check("calls.create", entity)
        with self._lock:
            if (entity["PartitionKey"], entity["RowKey"]) in self._rows:
                return False
            self._write(entity)
            return True

    def get(self, partition_key: str, row_key: str) -> Mapping[str, Any] | None:
        self.faults.check("calls.get", partition_key, row_key)
        with self._lock:
            stored = self._rows.get((partition_key, row_key))
            return None if stored is None else Row(*stored)

    def replace(self, entity: Mapping[str, Any], etag: str | None) -> str | None:
        self.faults.check("calls.replace", entity)
        with self._lock:
            if not self._matches((entity["PartitionKey"], entity["RowKey"]), etag, "replace"):
                return None
            self.replaced += 1
            return self._write(entity)

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> bool:
        self.faults.check("calls.delete", partition_key, row_key)
        with self._lock:
            if not self._matches((partition_key, row_key), etag, "delete"):
                return False
            del self._rows[(partition_key, row_key)]
            return True

    def replace_all(self, changes: Sequence[tuple[Mapping[str, Any], str]]) -> list[str | None]:
        with self._lock:
            self.batches.append([entity.get("CallId", "") for entity, _ in changes])
        self.faults.check("calls.replace_all", changes)
        if not 1 <= len(changes) <= BATCH_SIZE or len({entity["PartitionKey"] for entity, _ in changes}) != 1:
            raise ValueError(_violated(f"a transaction holds 1 to {BATCH_SIZE} entities of one partition"))
        with self._lock:
            for index, (entity, etag) in enumerate(changes):
                stored = self._rows.get((entity["PartitionKey"], entity["RowKey"]))
                if stored is None:
                    raise TransactionFailed(404, index=index, code="ResourceNotFound")
                if stored[1] != etag:
                    raise TransactionFailed(412, index=index, code="UpdateConditionNotSatisfied")
            self.replaced += len(changes)
            return [self._write(entity) for entity, _ in changes]

    def pages(
        self,
        *,
        partition: str | None = None,
        select: Sequence[str] | None = None,
        page_size: int = PAGE_SIZE,
        action: str = "list",
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
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
                )[: min(page_size, PAGE_SIZE)]
                if not keys:
                    return
                after = keys[-1]
                page = [self._projected(key, select) for key in keys]
            yield page

    def _projected(self, key: tuple[str, str], select: Sequence[str] | None) -> Row:
        entity, etag = self._rows[key]
        return Row(entity if select is None else {k: v for k, v in entity.items() if k in select}, etag)

    def from_key(self, start: tuple[str, str] | None, count: int) -> list[Mapping[str, Any]]:
        self.listed.append((start, count))
        self.faults.check("calls.from_key", start, count)
        with self._lock:
            keys = sorted(key for key in self._rows if start is None or key >= start)[:count]
            return [self._projected(key, None) for key in keys]


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
        self.rows = MemoryRows(self.faults)
        self.calls = CallsTable(self.rows)
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
