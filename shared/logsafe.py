"""Values from outside (a request, a row, a notification) as they appear in a log line.

A log line is `key=value` text read by people and by KQL (`docs/queries.kql`), so a value must never
end the line or start a new `key=value` pair. `safe(value)` leaves a plain token as it is (letters,
digits and `-._:@+~`: every GUID and every Graph call id) and quotes anything else the way JSON does:
in double quotes, with `"`, `\\`, every control, format and non-ASCII character escaped. A quoted
value holds no space, no newline and no unescaped quote, so it reads as one value.
"""

from __future__ import annotations

import json
import re

_PLAIN = re.compile(r"[A-Za-z0-9\-._:@+~]{1,256}\Z")
_MAX_CHARS = 512


def safe(value: object) -> str:
    """`value` for a log line: unchanged when it is a plain token, else quoted and escaped (and cut short)."""
    if value is None:
        return "null"
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.match(text):
        return text
    cut = text[:_MAX_CHARS]
    quoted = json.dumps(cut, ensure_ascii=True).replace(" ", "\\u0020").replace("=", "\\u003d")
    return quoted + ("..." if len(text) > _MAX_CHARS else "")
