"""Log records that values from outside cannot forge or hide: one mechanism, where each record is created.

Every module logs through `logger = get_logger(__name__)` (never `logging.getLogger`: `tests/unit/test_logsafe.py`
walks `shared/` and fails on any log call that bypasses it, or whose message template is not a literal). The
`SafeLogger` it returns creates each record itself, and renders every argument on the way in:

- numbers, booleans and None as they are (so `%d`, `%.3f` and `%s` print what they always printed);
- every other value as text (`str()` of it) with each character that is not printable escaped as `\\uXXXX`
  (`\\UXXXXXXXX` above U+FFFF): control characters (C0, DEL, C1), format characters (Cf: bidi controls,
  zero-width characters, BOM), the line and paragraph separators U+2028/U+2029, lone surrogates, and any
  other unprintable code point; then cut to `MAX_VALUE_CHARS` characters (`...` marks a cut);
- an exception's traceback (`logger.exception`, `exc_info=`) with the exception's own text escaped the same
  way, so each exception message stays one line beneath the traceback's frames.

A record's message is therefore one line, however hostile the values. The message template itself is the
caller's literal and stays lazy: `msg % args` happens only when a handler formats the record, and a level that
is off costs one `isEnabledFor`. (A filter on a parent logger would not do: the Functions worker owns the
handlers, and a parent's filters never see the records of its children.)

`safe(value)` is for values logged as `key=value`: it leaves a plain token as it is (letters, digits and
`-._:@+~`: every GUID and every Graph call id) and quotes anything else the way JSON does, in double quotes,
with `"`, `\\`, spaces, `=` and every control, format and non-ASCII character escaped. A quoted value holds no
space, no newline and no unescaped quote, so it reads as one value and cannot fake a second `key=value` pair.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeAlias

_PLAIN = re.compile(r"[A-Za-z0-9\-._:@+~]{1,256}\Z")
_MAX_CHARS = 512  # of a value quoted by safe()
MAX_VALUE_CHARS = 1024  # of any other value in a log record (Graph's strings in an event are cut the same)
MAX_EXCEPTION_CHARS = 4096  # of an exception's own text beneath its traceback
CUT = "..."

_ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
# Lines that the traceback module writes itself (the frames are recognised by their own prefix).
_TRACEBACK_LINES = frozenset(
    {
        "Traceback (most recent call last):\n",
        "\nThe above exception was the direct cause of the following exception:\n\n",
        "\nDuring handling of the above exception, another exception occurred:\n\n",
    }
)
_FRAME = '  File "'


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text` on one line: every unprintable character (control, format, separators, lone surrogates, ...) as
    `\\uXXXX`, cut to `limit` characters (`...` then marks the cut). Printable text is returned unchanged."""
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not text.isprintable():  # C speed; the rare text that needs escaping pays for the loop
        text = "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)
        if len(text) > limit:
            text, cut = text[:limit], True
    return text + CUT if cut else text


def safe(value: object) -> str:
    """`value` for a log line: unchanged when it is a plain token, else quoted and escaped (and cut short)."""
    if value is None:
        return "null"
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.match(text):
        return text
    cut = text[:_MAX_CHARS]
    quoted = json.dumps(cut, ensure_ascii=True)  # escapes C0, quotes, backslashes and everything past ASCII
    quoted = quoted.replace(" ", "\\u0020").replace("=", "\\u003d").replace("\x7f", "\\u007f")
    return quoted + (CUT if len(text) > _MAX_CHARS else "")


def render(value: object) -> object:
    """A log argument as the record will hold it: numbers, booleans and None as they are; anything else as
    escaped, bounded text (`escape`)."""
    if isinstance(value, str):
        return escape(value if type(value) is str else str(value))
    if value is None or isinstance(value, int | float):
        return value
    try:
        text = str(value)
    except Exception:  # a value whose str() fails must not fail the caller's log call
        text = f"<unprintable {type(value).__name__}>"
    return escape(text)


def exception_text(exc_info: _ExcInfo) -> str:
    """The traceback of `exc_info` as `logging.Formatter.formatException` writes it, except that every exception's
    own text (which may quote values from outside) is escaped onto one line."""
    parts: list[str] = []
    for chunk in traceback.TracebackException(*exc_info).format():
        if chunk.startswith(_FRAME) or chunk in _TRACEBACK_LINES:
            parts.append(chunk)  # the code's own frames and the traceback module's headings
        else:
            parts.append(escape(chunk.removesuffix("\n"), MAX_EXCEPTION_CHARS) + "\n")
    return "".join(parts).removesuffix("\n")


class SafeLogger(logging.LoggerAdapter[logging.Logger]):
    """A `logging.Logger` (held as `.logger`) whose records are created with every argument rendered by `render`.

    Levels, handlers, propagation and `caplog` work on the underlying logger, which is the one
    `logging.getLogger(name)` returns; only the records' creation goes through here.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, None)

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        # This frame lies between the caller and `findCaller` (the adapter's `info` etc. are logging's own
        # frames, which it skips), so the record still names the caller's file, line and function.
        filename, line, function, stack = logger.findCaller(stack_info, stacklevel + 1)
        if not isinstance(msg, str) or not msg.isprintable():
            msg = render(msg)  # templates are literals (tests/unit/test_logsafe.py): this is a last guard
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            rendered: tuple[object, ...] = ({key: render(value) for key, value in args[0].items()},)
        else:
            rendered = tuple(render(arg) for arg in args)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                exc_info = sys.exc_info()
        record = logger.makeRecord(logger.name, level, filename, line, msg, rendered, exc_info, function, extra, stack)
        if exc_info and exc_info[0] is not None:
            record.exc_text = exception_text(exc_info)  # formatters print this instead of formatting exc_info
        logger.handle(record)


def get_logger(name: str) -> SafeLogger:
    """The logger of module `name` (`get_logger(__name__)`): every record it creates renders its arguments safely."""
    return SafeLogger(logging.getLogger(name))
