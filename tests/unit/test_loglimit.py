"""The cap on per-call failure warnings of one sweep (shared/loglimit.py)."""

from __future__ import annotations

import contextvars
import logging
import threading

from shared.loglimit import FAILURE_WARNINGS, failure_budget, failure_level

logger = logging.getLogger("tests.loglimit")


def _records(caplog, level: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger.name and record.levelno == level]


def test_outside_a_budget_every_record_keeps_its_level():
    assert [failure_level() for _ in range(FAILURE_WARNINGS * 3)] == [logging.WARNING] * (FAILURE_WARNINGS * 3)
    assert failure_level(logging.ERROR) == logging.ERROR


def test_the_first_records_keep_their_level_the_rest_go_to_debug_and_one_line_counts_them(caplog):
    caplog.set_level(logging.DEBUG, logger=logger.name)
    with failure_budget(logger, limit=3) as budget:
        for index in range(10):
            logger.log(failure_level(logging.ERROR if index == 0 else logging.WARNING), "keepalive failed n=%d", index)
    assert budget.total == 10 and budget.hidden == 7
    assert [r.getMessage() for r in _records(caplog, logging.ERROR)] == ["keepalive failed n=0"]
    warnings = [r.getMessage() for r in _records(caplog, logging.WARNING)]
    assert warnings[:2] == ["keepalive failed n=1", "keepalive failed n=2"]
    assert len(warnings) == 3 and warnings[2].startswith("keepalive failure warnings capped shown=3 more=7 total=10")
    assert len(_records(caplog, logging.DEBUG)) == 7  # still there with -v
    assert failure_level() == logging.WARNING  # the budget ended with its sweep


def test_no_closing_line_when_the_budget_was_not_spent(caplog):
    caplog.set_level(logging.DEBUG, logger=logger.name)
    with failure_budget(logger, limit=3):
        for _ in range(3):
            logger.log(failure_level(), "keepalive failed")
    assert [r.getMessage() for r in caplog.records if r.name == logger.name] == ["keepalive failed"] * 3


def test_worker_threads_in_a_copy_of_the_context_share_one_budget_and_others_are_unaffected():
    levels: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            level = failure_level()
            with lock:
                levels.append(level)

    with failure_budget(logger, limit=FAILURE_WARNINGS) as budget:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(8)]
        outsider: list[int] = []
        other = threading.Thread(target=lambda: outsider.append(failure_level()))  # a thread of its own context
        for thread in [*threads, other]:
            thread.start()
        for thread in [*threads, other]:
            thread.join()
    assert budget.total == 40
    assert levels.count(logging.WARNING) == FAILURE_WARNINGS and levels.count(logging.DEBUG) == 40 - FAILURE_WARNINGS
    assert outsider == [logging.WARNING]
