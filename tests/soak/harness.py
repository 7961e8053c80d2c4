"""What the reliability tests and the soak share: an injected clock and sleep, contexts aimed at the
Graph and identity stand-ins, the cleanup queue read back, and faults injected at our own seams.

Faults are injected only at the app's own seams (`ctx.calls`, `ctx.cleanup`, `ctx.ended`) or by a real
outage (`PrivateAzurite.stop()`); the Azure SDKs and MSAL are never mocked.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.context import Context
from shared.errors import StorageUnavailable
from shared.settings import Settings

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


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


def tick_environ(standins_environ: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """App settings for a real (not dry-run) tick: the stand-ins' Graph settings, storage left to the caller."""
    environ = {k: v for k, v in standins_environ.items() if k != "AzureWebJobsStorage"}
    environ["GRAPH_DRY_RUN"] = "false"
    environ.update(overrides)
    return environ


def build_context(
    settings: Settings, clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] | None = None
) -> Context:
    return Context(settings, now=clock or FakeClock(), sleep=sleep or RecordingSleep())


# --- the cleanup queue, read back ------------------------------------------------------------------
def decode_event(content: str) -> dict[str, Any]:
    """A cleanup message as the app wrote it: base64 text holding the JSON event."""
    event = json.loads(base64.b64decode(content).decode("utf-8"))
    assert isinstance(event, dict)
    return event


def drain_events(ctx: Context, *, delete: bool = True, hide_for: int = 60) -> list[dict[str, Any]]:
    """Receive every visible message of the cleanup queue, returning the decoded events.

    Each is deleted, or (`delete=False`, fewer requests) left hidden for `hide_for` seconds.
    """
    queue = ctx.storage.queue_client(ctx.settings.cleanup_queue_name)
    events: list[dict[str, Any]] = []
    while True:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=hide_for))
        if not batch:
            return events
        for message in batch:
            events.append(decode_event(message.content))
            if delete:
                queue.delete_message(message)


def peek_events(ctx: Context) -> list[dict[str, Any]]:
    """The events on the cleanup queue (at most 32), left in place."""
    queue = ctx.storage.queue_client(ctx.settings.cleanup_queue_name)
    return [decode_event(message.content) for message in queue.peek_messages(max_messages=32)]


def stored_call_ids(ctx: Context) -> list[str]:
    """The callIds in the calls table, read with the SDK (duplicates would show twice)."""
    table = ctx.storage.table_client()
    return [entity["CallId"] for entity in table.list_entities(select=["CallId"])]


# --- faults at our own seams ---------------------------------------------------------------------
class FailingSeam:
    """A stand-in for one of the context's seams (`ctx.calls`, `ctx.cleanup`, `ctx.ended`).

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
                raise StorageUnavailable("Storage is unavailable; try again later. (injected)")
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
        raise StorageUnavailable("Storage is unavailable; try again later. (injected)")
