"""The operator command line: `callkeeper` (installed by `pip install -e .`), or `python -m shared` from the app folder.

    callkeeper calls list [--wide]                 every call (page by page), a table; --json: {"value": [...]}
    callkeeper calls show CALL_ID                  one call; --json: the record
    callkeeper calls add CALL_ID [--tenant T] [--metadata K=V]...   register, as POST /api/calls does
    callkeeper calls remove CALL_ID                unregister, as DELETE /api/calls/{callId} does
    callkeeper tick [--dry-run]                    sweep every call now, with the timer's engine (no fan-out)

Settings: a non-empty environment variable, else `Values` of `local.settings.json` in the current folder
(whose values are also put into this process's environment where unset, as the Functions host does).
Results go to stdout, logs and errors to stderr; every error says what to do next (`advice.py`).

Exit codes:
    0    done
    1    the sweep recorded failures or could not read every call; the call was not found; the call is
         registered under another tenant (conflict); storage unavailable
    2    bad usage; an invalid callId, tenantId or metadata; a bad setting (named on stderr)
    130  interrupted (Ctrl-C); a tick prints the summary of what it did first
    141  stdout closed by its reader (`calls list --json | head`): a normal end, no message, as git ends there

Modules: `main` (entry, error handling), `parser`, `commands`, `output` (JSON and tables),
`local_settings` (local.settings.json), `advice` (error -> message, hint, exit code).
"""

from shared.cli.main import main

__all__ = ["main"]
