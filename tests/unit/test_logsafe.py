"""Log records by construction (shared/logsafe.py): every value from outside reaches a record escaped and bounded.

Two halves: the rendering rules themselves, and a walk over the source of `shared/` (with `ast`) that fails on
any log call that could bypass them: a logger not made by `get_logger`, the root logger, a logger reached
through the adapter, or a message template that is not a literal (an f-string or a built string would put a
value into the message unescaped).
"""

from __future__ import annotations

import ast
import logging
import unicodedata
from pathlib import Path

import pytest

from shared.logsafe import MAX_VALUE_CHARS, SafeLogger, escape, get_logger, render, safe

SHARED = Path(__file__).resolve().parents[2] / "shared"
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
# What a module may do with a logger of another library (its level, SAS redaction): configure it, never log.
CONFIGURING = {"setLevel", "addFilter", "removeFilter", "filters", "addHandler", "removeHandler", "propagate"}
FORBIDDEN_LOGGING = {"getLogger", "Logger", "LoggerAdapter", "root", "getLoggerClass", "setLoggerClass"}
HOSTILE = "a\nb\r\x00\x1b[31m\x7f\x85\u200b\u202e\u2028\u2029\ufeff\ud800\U000e0001z"


def unsafe_characters(text: str) -> list[str]:
    """The characters of `text` that could end, split or hide a line."""
    return [ch for ch in text if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"}]


# --- the rules -------------------------------------------------------------------------------------------
def test_escape_leaves_printable_text_alone_and_escapes_every_other_character():
    assert (
        escape("keepalive failed: 429 TooManyRequests é 通話 😀") == "keepalive failed: 429 TooManyRequests é 通話 😀"
    )
    escaped = escape(HOSTILE)
    assert unsafe_characters(escaped) == []
    assert escaped == (
        "a\\u000ab\\u000d\\u0000\\u001b[31m\\u007f\\u0085\\u200b\\u202e\\u2028\\u2029\\ufeff\\ud800\\U000e0001z"
    )


def test_escape_bounds_the_length_and_marks_the_cut():
    assert escape("x" * 70_000) == "x" * MAX_VALUE_CHARS + "..."
    assert len(escape("\n" * 70_000)) == MAX_VALUE_CHARS + 3
    assert escape("x" * MAX_VALUE_CHARS) == "x" * MAX_VALUE_CHARS


def test_render_keeps_numbers_and_none_for_their_formats_and_escapes_everything_else():
    assert [render(v) for v in (3, 2.5, True, None)] == [3, 2.5, True, None]
    assert render(ValueError("bad\ncode")) == "bad\\u000acode"
    assert render({"k": "\u202e"}) == "{'k': '\\u202e'}"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert render(Broken()) == "<unprintable Broken>"


def test_safe_also_escapes_del():
    assert safe("a\x7fb") == '"a\\u007fb"'
    assert unsafe_characters(safe(HOSTILE)) == []


def test_a_record_holds_its_arguments_escaped_and_names_its_caller(caplog):
    logger = get_logger("shared.test_logsafe")
    with caplog.at_level(logging.DEBUG, logger="shared.test_logsafe"):
        logger.warning("keepalive failed callId=%s status=%d error=%s seconds=%.1f", safe(HOSTILE), 403, HOSTILE, 1.25)
        logger.log(logging.INFO, "work tickId=%s", HOSTILE)
        logger.info("mapping %(code)s", {"code": HOSTILE})
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert all(unsafe_characters(message) == [] for message in messages)
    assert " status=403 error=a\\u000ab" in messages[0] and messages[0].endswith(" seconds=1.2")
    assert {record.filename for record in caplog.records} == {"test_logsafe.py"}
    assert {record.funcName for record in caplog.records} == {
        "test_a_record_holds_its_arguments_escaped_and_names_its_caller"
    }


def test_a_disabled_level_creates_no_record_and_renders_nothing(caplog):
    logger = get_logger("shared.test_logsafe")

    class Counting:
        renders = 0

        def __str__(self) -> str:
            Counting.renders += 1
            return "x"

    with caplog.at_level(logging.INFO, logger="shared.test_logsafe"):
        logger.debug("value=%s", Counting())
    assert caplog.records == [] and Counting.renders == 0


def test_an_exception_message_from_outside_stays_one_line_beneath_its_traceback(caplog):
    logger = get_logger("shared.test_logsafe")
    with caplog.at_level(logging.ERROR, logger="shared.test_logsafe"):
        try:
            try:
                raise RuntimeError("inner\nCRITICAL forged")
            except RuntimeError as inner:
                raise ValueError("outer\u2028ERROR forged") from inner
        except ValueError:
            logger.exception("unexpected error handler=%s", "h\nx")
    [record] = caplog.records
    assert record.getMessage() == "unexpected error handler=h\\u000ax"
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    lines = text.split("\n")
    assert not any(line.startswith(("ERROR forged", "CRITICAL forged")) for line in lines)
    assert "ValueError: outer\\u2028ERROR forged" in lines
    assert "RuntimeError: inner\\u000aCRITICAL forged" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert all(unsafe_characters(line) == [] for line in lines)


# --- no log call bypasses it -----------------------------------------------------------------------------
def _modules() -> list[Path]:
    return sorted(path for path in SHARED.rglob("*.py") if path.name != "logsafe.py")


def _is_logging(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "logging"


def _configures_only(tree: ast.AST, call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the logger `call` (`logging.getLogger(...)`) is only configured, never logged through."""
    parent = parents.get(call)
    if isinstance(parent, ast.Attribute):
        return parent.attr in CONFIGURING
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
        name = parent.targets[0].id
        scope = next(node for node in _ancestors(parent, parents) if isinstance(node, ast.FunctionDef | ast.Module))
        uses = [n for n in ast.walk(scope) if isinstance(n, ast.Name) and n.id == name and n is not parent.targets[0]]
        return bool(uses) and all(
            isinstance(parents.get(use), ast.Attribute) and parents[use].attr in CONFIGURING for use in uses
        )  # type: ignore[attr-defined]
    return False


def _ancestors(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    found = []
    while node in parents:
        node = parents[node]
        found.append(node)
    return found


def _safe_loggers(tree: ast.Module) -> set[str]:
    """Names bound to `get_logger(...)` in the module, and parameters annotated `SafeLogger`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "get_logger"
        ):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "SafeLogger":
            names.add(node.arg)
    return names


def bypasses(source: str) -> list[str]:
    """Every log call of `source` that does not go through `get_logger`'s safe rendering, described."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    loggers = _safe_loggers(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_logging(node.value) and node.attr in FORBIDDEN_LOGGING:
            call = parents.get(node)
            if node.attr == "getLogger" and isinstance(call, ast.Call) and _configures_only(tree, call, parents):
                continue
            found.append(f"line {node.lineno}: logging.{node.attr} (use shared.logsafe.get_logger)")
        if isinstance(node, ast.ImportFrom) and node.module == "logging":
            for alias in node.names:
                if alias.name in FORBIDDEN_LOGGING | LOG_METHODS:
                    found.append(f"line {node.lineno}: from logging import {alias.name}")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS):
            continue
        receiver = node.func.value
        if _is_logging(receiver):
            found.append(f"line {node.lineno}: logging.{node.func.attr}() logs through the root logger")
            continue
        if isinstance(receiver, ast.Attribute) and receiver.attr == "logger":
            found.append(f"line {node.lineno}: .logger.{node.func.attr}() reaches past the safe logger")
            continue
        if not (isinstance(receiver, ast.Name) and receiver.id in loggers):
            continue  # not a logger: parser.error(), a console's log(), ...
        args = node.args[1:] if node.func.attr == "log" else node.args
        if not args or not (isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)):
            found.append(
                f"line {node.lineno}: {receiver.id}.{node.func.attr}() with a message template that is not a literal"
            )
    # A bare name bound to a logger's method (`log = logger.info`) would hide its calls from the checks above.
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.IfExp) and any(
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id in loggers
            and n.attr in LOG_METHODS
            and not isinstance(parents.get(n), ast.Call)
            for n in ast.walk(node)
        ):
            found.append(f"line {node.lineno}: a logger's method taken as a value (call it directly)")
    return sorted(set(found))


def test_no_module_of_shared_logs_past_the_safe_logger():
    found = {str(path.relative_to(SHARED)): bypasses(path.read_text(encoding="utf-8")) for path in _modules()}
    assert {path: problems for path, problems in found.items() if problems} == {}


def test_every_module_that_logs_has_its_logger_from_get_logger():
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        logs = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "logger" and n.func.attr in LOG_METHODS
            for n in ast.walk(tree)
        )  # fmt: skip
        if logs:
            assert "logger" in _safe_loggers(tree), path


@pytest.mark.parametrize(
    "source",
    [
        "import logging\nlogger = logging.getLogger(__name__)\n",
        "import logging\nlogging.info('x %s', value)\n",
        "import logging\nlogging.log(logging.INFO, 'x')\n",
        "from logging import getLogger\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.info(f'x={value}')\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.warning('x=' + value)\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.warning(text)\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.log(level, 'x=%s' % value)\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.logger.info('x')\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlog = logger.info if a else x\n",
        "import logging\ndef f():\n    target = logging.getLogger('azure')\n    target.info('x')\n",
        "import logging\nclass L(logging.LoggerAdapter): pass\n",
    ],
)
def test_the_walk_finds_each_way_around(source):
    assert bypasses(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.info('x=%s', value)\n",
        "from shared.logsafe import get_logger\nlogger = get_logger(__name__)\nlogger.log(level, 'x=%s', value)\n",
        "import logging\nlogging.getLogger('azure').setLevel(logging.WARNING)\n",
        "import logging\ndef f():\n    target = logging.getLogger('urllib3')\n    if F not in target.filters:\n"
        "        target.addFilter(F)\n",
        "parser.error('bad usage')\n",
    ],
)
def test_the_walk_lets_the_safe_ways_through(source):
    assert bypasses(source) == []


def test_safe_logger_is_what_get_logger_gives():
    logger = get_logger("shared.test_logsafe")
    assert isinstance(logger, SafeLogger) and logger.logger is logging.getLogger("shared.test_logsafe")
