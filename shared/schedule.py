"""KEEPALIVE_SCHEDULE read as the host reads it, for one number: the shortest time between two runs of the timer.

    schedule_interval(KEEPALIVE_SCHEDULE)   the shortest gap between two occurrences, in seconds; None when unreadable

A six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`) or a TimeSpan (`hh:mm:ss`, App
Service plans). The budget's warning (shared/budget.py) and the purge's time budget (shared/keepalive.py) use it;
the host itself validates the schedule.
"""

from __future__ import annotations

import re

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")  # App Service plans: "00:10:00", "1.00:00:00"
_NAMES = {
    name: index
    for names in (
        ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
        ("", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    )
    for index, name in enumerate(names)
    if name
}
DAY = 86_400


def _field(text: str, low: int, high: int) -> list[int]:
    """The values an NCRONTAB field allows: `*`, `5`, `1-5`, `*/10`, `10-40/5`, lists of these, names."""
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        else:
            first, _, last = body.partition("-")
            start = _NAMES[first] if first in _NAMES else int(first)
            end = start if not last else (_NAMES[last] if last in _NAMES else int(last))
            if step_text and not last:
                end = high  # "5/10": from 5 on, every 10
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"{part!r} is not within {low}-{high}")
        values.update(range(start, end + 1, step))
    return sorted(values)


def schedule_interval(schedule: str) -> float | None:
    """The shortest time between two runs of the timer, in seconds; None when it cannot be read.

    A six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`) or a TimeSpan
    (`hh:mm:ss`, App Service plans). The gaps are taken within a day and across midnight, so day, month
    and weekday fields are not consulted: a schedule that skips days gives a shorter interval than it has,
    which only makes the warning come sooner (conservative). The host itself validates the schedule.
    """
    text = schedule.strip()
    span = _TIMESPAN.match(text)
    if span:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in span.groups())
        total = days * DAY + hours * 3600 + minutes * 60 + seconds
        return float(total) if total > 0 else None
    fields = text.split()
    if len(fields) != 6:
        return None
    try:
        seconds_, minutes_, hours_ = _field(fields[0], 0, 59), _field(fields[1], 0, 59), _field(fields[2], 0, 23)
        _field(fields[3], 1, 31), _field(fields[4], 1, 12), _field(fields[5], 0, 7)  # well formed, not consulted
    except ValueError:
        return None
    times = [h * 3600 + m * 60 + s for h in hours_ for m in minutes_ for s in seconds_]  # sorted already
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + DAY - times[-1])
    return float(min(gaps))
