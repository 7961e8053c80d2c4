"""A cap on the per-call failure warnings of one sweep, so a failing tick over many calls stays readable.

    with failure_budget(logger):                     # one sweep
        ...                                          # in the sweep's threads (run with the same context):
        logger.log(failure_level(logging.WARNING), "keepalive failed callId=%s ...", call_id)

Within a budget the first `FAILURE_WARNINGS` failure records keep their level; the later ones go to DEBUG
(so `-v` or a DEBUG log level still shows every one), and when the sweep ends one WARNING says how many
more there were and the total. Outside a budget every record keeps its level. The tick's summary counts
every failure either way. At-risk warnings are not failures and are not capped (one per call).

The budget is found through a context variable, so the sweep's worker threads must run in a copy of the
sweep's context (`contextvars.copy_context().run`).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.logsafe import SafeLogger

FAILURE_WARNINGS = 20  # shown at their own level per sweep; the rest at DEBUG


class FailureBudget:
    """Counts the failure records of one sweep; thread-safe."""

    def __init__(self, limit: int = FAILURE_WARNINGS) -> None:
        self.limit = limit
        self.total = 0
        self._lock = threading.Lock()

    def level(self, level: int) -> int:
        """`level` for the first `limit` records, DEBUG after."""
        with self._lock:
            self.total += 1
            return level if self.total <= self.limit else logging.DEBUG

    @property
    def hidden(self) -> int:
        return max(0, self.total - self.limit)


_current: contextvars.ContextVar[FailureBudget | None] = contextvars.ContextVar("failure_budget", default=None)


def failure_level(level: int = logging.WARNING) -> int:
    """The level to log one per-call failure record at: `level`, or DEBUG once this sweep's budget is spent."""
    budget = _current.get()
    return level if budget is None else budget.level(level)


@contextmanager
def failure_budget(logger: SafeLogger, limit: int = FAILURE_WARNINGS) -> Iterator[FailureBudget]:
    """A budget for the sweep run inside; at its end one WARNING tells how many failure records were held back."""
    budget = FailureBudget(limit)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
        if budget.hidden:
            logger.warning(
                "keepalive failure warnings capped shown=%d more=%d total=%d "
                "(the first %d are shown, the rest are logged at DEBUG; the tick summary counts every failure)",
                budget.limit,
                budget.hidden,
                budget.total,
                budget.limit,
            )
