"""Graph's retry timing as tables: how `Retry-After` is read, and the backoff's jitter bounds.

`retry_delay`'s decision table (which statuses, how many retries) is in test_graph.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.retry import retry_after_seconds, retry_delay

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        ("0.5", 0.5),
        ("007", 7.0),
        (" 7\t", 7.0),
        ("60", 60.0),
        ("61", 60.0),
        ("86400", 60.0),
        ("Fri, 14 Mar 2025 09:27:03 GMT", 10.0),
        ("Fri, 14 Mar 2025 10:27:03 +0100", 10.0),  # another zone, the same instant
        ("Fri, 14 Mar 2025 09:26:53 GMT", 0.0),
        ("Thu, 13 Mar 2025 09:26:53 GMT", 0.0),  # in the past: no wait, never negative
        ("Sat, 15 Mar 2025 09:26:53 GMT", 60.0),
    ],
)
def test_retry_after_is_seconds_or_an_http_date_capped_at_60(value, seconds):
    assert retry_after_seconds(value, NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [None, "", " ", "-1", "+5", "1e3", "inf", "NaN", "5.", ".5", "0x10", "٣", "12 s", "soon", "Friday", "14/03/2025"],
)
def test_anything_else_is_no_retry_after(value):
    assert retry_after_seconds(value, NOW) is None


@pytest.mark.parametrize(
    ("draw", "attempt", "delay"),
    [
        (0.0, 1, 0.0),
        (0.5, 1, 0.5),
        (0.5, 2, 1.0),
        (0.5, 3, 2.0),
        (0.25, 3, 1.0),
        (1.5, 2, 2.0),  # a draw above 1 is taken as 1: never past the ceiling
        (-0.5, 2, 0.0),  # below 0 as 0: never negative
    ],
)
def test_backoff_is_a_draw_times_a_ceiling_that_doubles(draw, attempt, delay):
    assert retry_delay(503, {}, attempt, NOW, lambda: draw) == delay


def test_a_retry_after_is_used_as_it_is_without_jitter():
    never = lambda: pytest.fail("the jitter is not drawn when Graph says how long to wait")  # noqa: E731
    assert retry_delay(429, {"Retry-After": "42"}, 3, NOW, never) == 42.0
    when = (NOW + timedelta(seconds=5)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_delay(503, {"retry-after": when}, 1, NOW, never) == 5.0
