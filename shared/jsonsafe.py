"""JSON from outside, parsed without deep recursion.

`json.loads` recurses once per nesting level and stops at the interpreter's recursion limit with a
`RecursionError`. Reaching that depth is already the harm: every finalizer that runs meanwhile (the
garbage collector may run any object's `__del__`, such as a socket's close) fails for lack of stack, and
the failure cannot even be reported. So `loads` refuses a document nested deeper than `MAX_DEPTH` before
`json.loads` sees it, as a `ValueError` like any other text that is not JSON. Nothing the app reads
(request bodies, notifications, Graph's and the topic's error bodies, rows, queue messages, signing keys)
nests anywhere near that deep.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 128
# A string (closed, or running to the end of a malformed text) or a bracket. Every alternative can match
# wherever it starts, so the scan is linear in the text whatever it holds.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.|\\\Z)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


class TooDeep(ValueError):
    """A JSON document nested deeper than `MAX_DEPTH`."""


def too_deep(text: str) -> bool:
    """Whether `text` nests deeper than `MAX_DEPTH` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the usual case: too few brackets to be too deep
        return False
    level = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            level += 1
            if level > MAX_DEPTH:
                return True
        elif token in ("]", "}"):
            level -= 1
    return False


def loads(data: str | bytes) -> Any:
    """`json.loads(data)`, refusing (`TooDeep`, a `ValueError`) a document nested deeper than `MAX_DEPTH`.

    Bytes are decoded as UTF-8 (a `UnicodeDecodeError` is a `ValueError` too).
    """
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if too_deep(text):
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
    return json.loads(text)
