"""KEEPALIVE_SCHEDULE's interval (shared/schedule.py): NCRONTAB and TimeSpan, the shortest gap between two runs."""

from __future__ import annotations

import pytest

from shared.schedule import schedule_interval


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("0 */10 * * * *", 600),
        ("0 */5 * * * *", 300),
        ("*/30 * * * * *", 30),
        ("0 0,5 * * * *", 300),  # 5 minutes, then 55: the shortest counts
        ("0 0 */2 * * *", 7200),
        ("0 15 3 * * *", 86_400),
        ("0 0 9-17 * * Mon-Fri", 3600),  # weekdays are not consulted: the interval is never overestimated
        ("0 7-50/15 * * * *", 900),
        ("00:10:00", 600),
        ("1.00:00:00", 86_400),
    ],
)
def test_the_interval_of_a_schedule_is_its_shortest_gap(schedule, seconds):
    assert schedule_interval(schedule) == seconds


@pytest.mark.parametrize(
    "schedule", ["", "every ten minutes", "0 */10 * * *", "0 61 * * * *", "0 */0 * * * *", "00:00:00"]
)
def test_a_schedule_that_cannot_be_read_has_no_interval(schedule):
    assert schedule_interval(schedule) is None
