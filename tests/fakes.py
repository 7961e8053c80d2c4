"""Hand-written fakes and recorders shared by the tests, the soak and the benchmarks (nothing here mocks an SDK).

- Time: `FakeClock` (the app's `now`), `RecordingSleep` (its `sleep`), `FakeTime` (the rate limiter's pair).
- Storage requests: `RequestCounter` (the storage clients' request hook).
- Faults at our own seams: `FailingSeam`, `PagesFailingAfter` (around `ctx.calls`, `ctx.cleanup`, `ctx.recent_ends`).
- Our own protocols, for unit tests: `FakeSender` (a tick's keepAlive sender), `FakeWriter` (its writer),
  `FakeCalls` (the calls table), `FakeMsalApp` (an MSAL confidential client), `WorkMessage` (a queue message).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import StorageUnavailable
from shared.graph import KeepAliveResult
from shared.models import CallRecord
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


# --- faults at our own seams ---------------------------------------------------------------------------
class FailingSeam:
    """A stand-in for one of the context's seams (`ctx.calls`, `ctx.cleanup`, `ctx.recent_ends`).

    Every attribute is the real one, except `method`, which raises `StorageUnavailable` while
    `failures` remain and `when(*args, **kwargs)` holds; then it calls through. Thread-safe.
    """

    def __init__(
        self,
        target: Any,
        method: str,
        *,
        failures: int = 1,
        when: Callable[..., bool] | None = None,
    ) -> None:
        self.target = target
        self._method = method
        self._when = when or (lambda *args, **kwargs: True)
        self._lock = threading.Lock()
        self.remaining = failures
        self.raised = 0
        self.passed = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if name != self._method:
            return attribute

        def method(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self.remaining > 0 and self._when(*args, **kwargs)
                if fail:
                    self.remaining -= 1
                    self.raised += 1
                else:
                    self.passed += 1
            if fail:
                raise StorageUnavailable(INJECTED)
            return attribute(*args, **kwargs)

        return method


class PagesFailingAfter:
    """A stand-in for `ctx.calls` whose `pages()` yields `pages` pages of `page_size` calls, then fails.

    Reading the table failing part way through a sweep: what was read is swept, the rest is not.
    """

    def __init__(self, target: Any, *, pages: int, page_size: int) -> None:
        self.target = target
        self._pages = pages
        self._page_size = page_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def pages(self, *args: Any, **kwargs: Any) -> Any:
        flat = [record for page in self.target.pages(*args, **kwargs) for record in page]
        for index in range(self._pages):
            chunk = flat[index * self._page_size : (index + 1) * self._page_size]
            if chunk:
                yield chunk
        raise StorageUnavailable(INJECTED)


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


class FakeCalls:
    """The calls table (`CallsTable`) as far as a unit test uses it: `update_all` records each batch and fails
    them all with `fail=True`; `list_page` records what it was asked and answers `page`, then `next_token`."""

    def __init__(
        self, *, fail: bool = False, page: list[CallRecord] | None = None, next_token: str | None = None
    ) -> None:
        self.batches: list[list[str]] = []
        self.asked: list[tuple[int, str | None]] = []
        self.fail = fail
        self.page = page or []
        self.next_token = next_token
        self._lock = threading.Lock()

    def update_all(self, changes: Any, changed: list[CallRecord] | None = None) -> list[CallRecord]:
        with self._lock:
            self.batches.append([r.call_id for r, _ in changes])
        if self.fail:
            raise StorageUnavailable("down")
        assert changed is not None and [c.call_id for c in changed] == [r.call_id for r, _ in changes]
        return list(changed)

    def list_page(self, top: int, token: str | None) -> tuple[list[CallRecord], str | None]:
        self.asked.append((top, token))
        return list(self.page), self.next_token


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
