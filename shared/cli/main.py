"""`main`: parse, load the settings, run one command, and turn any error into words and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from shared.cli.advice import EXIT_CLOSED_PIPE, Where, advise
from shared.cli.commands import Command
from shared.cli.local_settings import LOCAL_SETTINGS_FILE, Loaded, load
from shared.cli.output import Output
from shared.cli.parser import PROG, build_parser
from shared.context import Context
from shared.errors import SettingsError, UsageError
from shared.logsafe import get_logger
from shared.settings import CA_BUNDLE_SETTINGS, Settings

logger = get_logger("shared.cli")


def _configure_logging(verbose: bool, errors: Console) -> None:
    handler: logging.Handler
    if errors.is_terminal:
        handler = RichHandler(console=errors, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    else:
        handler = logging.StreamHandler(errors.file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("azure", "msal", "urllib3"):  # per-request chatter of the SDKs
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


def _prog() -> str:
    """How the user ran us, for the hints: the `callkeeper` console command or `python -m shared`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "callkeeper" if name.startswith("callkeeper") else PROG


def _with_ca_bundle_origin(loaded: Loaded, shell: dict[str, str]) -> Settings:
    """The settings, saying where the CA bundle in force came from (the shell, or local.settings.json), so that a
    TLS hint can say which value the command line used."""
    if loaded.settings.ca_bundle is None:
        return loaded.settings
    name = loaded.settings.ca_bundle[0]
    if not shell.get(name):
        origin = str(loaded.file)
    elif name in loaded.shadowed:
        origin = f"the environment, which overrides {LOCAL_SETTINGS_FILE}"
    else:
        origin = "the environment"
    return replace(loaded.settings, ca_bundle_origin=origin)


def _closed_pipe() -> int:
    """stdout's reader closed the pipe: no message, and the exit code of a command ended by SIGPIPE (as git's and
    cat's are: 128 + 13). stdout is pointed at /dev/null so that Python's own flush at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (run in-process, e.g. by a test)
        pass
    return EXIT_CLOSED_PIPE


def main(argv: Sequence[str] | None = None, *, cwd: Path | None = None) -> int:
    """Run one command; returns the exit code. Every error is said on stderr with what to do next, and with
    `--json` also printed on stdout as `{"error": {"code", "message"}}`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = _prog()
    errors = Console(stderr=True, highlight=False, markup=False, emoji=False)
    as_json = "--json" in arguments
    out = Output(sys.stdout, as_json=as_json, wide="--wide" in arguments)
    folder = cwd or Path.cwd()
    where = Where(prog, folder, (folder / LOCAL_SETTINGS_FILE).is_file())
    verbose = False
    try:
        args = build_parser(prog).parse_args(arguments)
        verbose = bool(args.verbose)
        _configure_logging(verbose, errors)
        shell = {name: os.environ.get(name, "").strip() for name in CA_BUNDLE_SETTINGS}
        loaded = load(folder)
        settings = _with_ca_bundle_origin(loaded, shell)
        where = Where(prog, folder, loaded.file_found, settings)
        if loaded.shadowed:
            errors.print(
                Text(
                    f"note: the environment overrides {LOCAL_SETTINGS_FILE} for {', '.join(loaded.shadowed)} "
                    "(unset the variable to use the file's value)"
                ),
                soft_wrap=True,
            )
        if settings.storage_problems:
            raise SettingsError(settings.storage_problems)
        run: Command = args.run
        return run(Context(settings), args, out, errors)
    except BrokenPipeError:  # `calls list | head`: the reader has all it wanted; say nothing, like git
        return _closed_pipe()
    except BaseException as error:  # every error: words, a hint, an exit code
        if isinstance(error, SystemExit):  # --help and --version
            raise
        if verbose and not isinstance(error, KeyboardInterrupt | UsageError | SettingsError):
            logger.debug("the error in full", exc_info=error)
        advice = advise(error, where)
        if as_json and not out.partial:  # a JSON result already begun is left unterminated, not appended to
            out.json({"error": {"code": advice.code, "message": advice.message}})
        if isinstance(error, UsageError):
            errors.print(Text(error.usage), soft_wrap=True)
        errors.print(Text(f"{prog}: error: {advice.message}"), soft_wrap=True)
        if advice.hint:
            errors.print(Text(f"{prog}: what to do: {advice.hint}"), soft_wrap=True)
        return advice.exit_code
