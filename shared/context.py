"""The composition root: settings and clients, built once per worker process and handed to the handlers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.events import CleanupQueue
from shared.models import utc_now
from shared.settings import Settings, load_from_environment
from shared.store import CallStore, EndedCalls, Storage


@dataclass
class Context:
    """Everything a handler or a tick needs. Building one does no I/O."""

    settings: Settings
    now: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    storage: Storage = field(init=False)
    calls: CallStore = field(init=False)
    cleanup: CleanupQueue = field(init=False)
    ended: EndedCalls = field(init=False)

    def __post_init__(self) -> None:
        self.storage = Storage(self.settings)
        self.calls = CallStore(self.storage)
        self.cleanup = CleanupQueue(self.storage, self.settings.cleanup_queue_name)
        self.ended = EndedCalls(self.storage, self.settings.ended_table_name)


_context: Context | None = None
_lock = threading.Lock()


def get_context() -> Context:
    """The process's context, built from the environment on first use (never at import time)."""
    global _context
    with _lock:
        if _context is None:
            _context = Context(load_from_environment())
        return _context


def install(context: Context | None) -> Context | None:
    """Replace the process's context (tests and the command line); returns the one it replaces."""
    global _context
    with _lock:
        previous, _context = _context, context
        return previous
