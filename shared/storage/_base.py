"""The seam between the engine and storage: what the engine calls of each table and queue, as small Protocols.

The package implements each on Azure Table and Queue Storage (`CallsTable`, `CleanupQueue`, `CallEventsQueue`,
`RecentEnds`, `KeepaliveWorkQueue`); tests/fakes.py implements them in memory, and tests/contract/ runs the same
tests against both, so the two cannot drift. The sizes Table Storage sets are defined here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.models import CallRecord
from shared.storage._rows import SkippedRows

PAGE_SIZE = 1000  # rows in one query answer: Table Storage's most
BATCH_SIZE = 100  # operations in one entity group transaction: Table Storage's most

Change = Callable[[CallRecord], CallRecord]  # what a tick does to a call's row (its keepAlive's outcome)


@dataclass(frozen=True, slots=True)
class NotSaved:
    """An outcome `update_all` could not write: the call keeps what the table held. `outage`: storage was
    unavailable (the rest of a one-by-one fallback is not tried); else storage (or the check before it) refused
    this entity alone."""

    reason: str
    outage: bool = False


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge did: rows removed, whether it stopped at its budget with ends left, and how long it took."""

    removed: int
    left: bool
    seconds: float


class Calls(Protocol):
    """The calls table. A call is found by its callId; every write is conditional on the registration (and the
    ETag) it was read with, so nothing ever re-creates a deleted call or touches a newer registration."""

    def insert(self, record: CallRecord) -> bool:
        """Store a new call; False when one with that callId is stored already (409)."""
        ...

    def get(self, call_id: str) -> CallRecord | None:
        """The stored call, with its ETag; None when there is none (404) or its row cannot be read."""
        ...

    def delete(self, record: CallRecord) -> bool:
        """Delete this registration of the call (a newer one stays); False when it was gone already."""
        ...

    def update_all(
        self, changes: Sequence[tuple[CallRecord, Change]], changed: Sequence[CallRecord]
    ) -> list[CallRecord | None | NotSaved]:
        """Apply each change (calls of one partition, at most `BATCH_SIZE`; `changed`: each change applied to its
        record already) to the stored call: in order, the stored record, None when the call (this registration)
        is gone, or `NotSaved`. A change made meanwhile is re-read and the change applied to it. Raises when
        storage is unavailable for the whole batch."""
        ...

    def pages(self, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None) -> Iterator[list[CallRecord]]:
        """Every call, a page at a time; a row the app cannot read is left out, logged and counted in `skipped`."""
        ...

    def partition_pages(
        self, partition: str, page_size: int = PAGE_SIZE, skipped: SkippedRows | None = None
    ) -> Iterator[list[CallRecord]]:
        """The calls of one partition (`00`..`63`), a page at a time, as `pages`."""
        ...

    def count(self, *, more_than: int) -> int:
        """How many readable calls there are: exact up to `more_than`, and some number above it past that."""
        ...

    def list_page(self, top: int, continuation_token: str | None) -> tuple[list[CallRecord], str | None]:
        """One page of at most `top` calls in key order, and the token of the next page (None on the last);
        `InvalidRequest` for a token this API could not have issued."""
        ...


class EventQueue(Protocol):
    """A queue that takes `callEnded` events (the cleanup queue; the call-events queue when a topic is set)."""

    def send(self, event: Mapping[str, Any]) -> None: ...


class EndMemory(Protocol):
    """Ends remembered for 24 hours, per tenant and callId."""

    def remember(self, call_id: str, *, tenant_id: str | None, reason: str, now: datetime) -> None: ...

    def recently_ended(self, call_id: str, tenant_id: str | None, now: datetime) -> bool:
        """Whether this call ended under this tenant within the 24 hours before `now`."""
        ...

    def forget(self, call_id: str, now: datetime) -> None:
        """Clear the memory of this call's end, under every tenant."""
        ...

    def purge(self, now: datetime, *, budget: float, clock: Callable[[], float]) -> Purged:
        """Remove ends older than 24 hours, a page at a time, until none is left or `budget` seconds of `clock`
        have passed (checked after each page)."""
        ...


class WorkQueue(Protocol):
    """The queue of fan-out work messages (KEEPALIVE_WORK_QUEUE_NAME)."""

    def backlog(self) -> int:
        """About how many messages wait on the queue."""
        ...

    def send(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Stores:
    """What the engine reads and writes, as the composition root hands it out (`shared.context.Context`)."""

    calls: Calls
    cleanup: EventQueue
    call_events: EventQueue | None  # None without CALL_EVENTS_TOPIC_ENDPOINT: nothing is written there
    recent_ends: EndMemory
    work: WorkQueue
    prepare: Callable[[bool], None]  # before a sweep: what it needs is there (with writes, the cleanup queue too),
    #                                  created when missing; raises `StorageError` when storage cannot serve

    @property
    def event_queues(self) -> tuple[EventQueue, ...]:
        """The queues an end writes, in order: the cleanup queue, then the call-events queue with a topic."""
        return (self.cleanup,) if self.call_events is None else (self.cleanup, self.call_events)
