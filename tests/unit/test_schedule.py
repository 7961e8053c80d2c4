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


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("0 5/20 * * * *", 1200),  # "5/20": from 5 on, every 20 (5, 25, 45), then 20 across the hour
        ("01:00:30", 3630),  # a TimeSpan's hours, minutes and seconds all count
        ("2.01:00:00", 176_400),
        ("00:00:01", 1),
        ("0 0 0 * * *", 86_400),  # hour 0 is an hour
        ("0 0 12 31 12 7", 86_400),  # the last day, month and weekday (7 is Sunday too) are days
        ("0 0 12 1 1 0", 86_400),
        ("0 0 12 * jan-dec sun-sat", 86_400),  # names
    ],
)
def test_every_field_takes_its_whole_range_and_its_forms(schedule, seconds):
    assert schedule_interval(schedule) == seconds


@pytest.mark.parametrize(
    "schedule",
    ["0 0 24 * * *", "0 0 0 32 * *", "0 0 0 0 * *", "0 0 0 * 13 *", "0 0 0 * 0 *", "0 0 0 * * 8", "0 60 * * * *"],
)
def test_a_field_outside_its_range_makes_the_schedule_unreadable(schedule):
    assert schedule_interval(schedule) is None
