"""The command line's words for a newcomer and an operator, run as a user runs it (subprocesses):
every error as JSON with `--json` and with what to do next, the 80-column listing, `add --json`'s
`created`, shadowed settings, Ctrl-C during a tick, and the `callkeeper` console command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.cells import cell_len

from shared import registry
from shared.models import utc_now
from tests.helpers import closed_port
from tests.integration.cli_harness import ROOT, App
from tests.standins.server import Reply

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_cli: Callable[..., App]) -> App:
    return make_cli()


def _assert_json_error(run, code: str, exit_code: int) -> str:
    """stdout is exactly the API's error shape; stderr says the error and what to do next, with no traceback."""
    assert run.code == exit_code, (run.stdout, run.stderr)
    lines = run.stdout.splitlines()
    assert len(lines) == 1, run.stdout
    body = json.loads(lines[0])
    assert list(body) == ["error"] and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "error: " in run.stderr and "what to do: " in run.stderr
    assert "Traceback" not in run.stderr
    return str(run.stderr)


def test_every_error_is_json_on_stdout_with_what_to_do_on_stderr(app, tmp_path):
    usage = _assert_json_error(app.run("calls", "lst", "--json"), "invalidRequest", 2)
    assert "invalid choice: 'lst'" in usage and "python -m shared calls --help" in usage

    invalid = _assert_json_error(app.run("calls", "show", "a/b", "--json"), "invalidCallId", 2)
    assert "must not contain '/'" in invalid

    missing = _assert_json_error(app.run("calls", "show", "no-such-call", "--json"), "callNotFound", 1)
    assert "python -m shared calls list" in missing

    app.write_settings(GRAPH_CLIENT_SECRET=None)
    credential = _assert_json_error(app.run("tick", "--json"), "invalidSettings", 2)
    assert "GRAPH_CLIENT_SECRET" in credential and "tick --dry-run" in credential

    app.write_settings(CALLS_TABLE_NAME="not_a_table!")
    setting = _assert_json_error(app.run("--json", "calls", "list"), "invalidSettings", 2)
    assert "CALLS_TABLE_NAME" in setting and "local.settings.json" in setting

    port = closed_port()
    unreachable = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    app.write_settings(AzureWebJobsStorage=unreachable)
    storage = _assert_json_error(app.run("calls", "list", "--json"), "storageUnavailable", 1)
    assert "AzureWebJobsStorage" in storage and "bash scripts/azurite.sh start .azurite" in storage
    assert "a2V5" not in storage  # the key is never echoed

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = App(elsewhere, {})
    nowhere = _assert_json_error(lost.run("calls", "list", "--json"), "invalidSettings", 2)
    assert "there is no local.settings.json in" in nowhere and "make prepare" in nowhere


def test_calls_list_fits_80_columns_and_wide_shows_every_field_whole(app, standins):
    ctx = app.context()
    long_id = "19:meeting_" + "N2Q4ZjE0YjQtNmE5Yi00ZGI0LWI3YmQtYzg0ZWNkNjBhMDQ5" * 3 + "@thread.v2"
    for call_id in (long_id, "short-1"):
        registry.register(
            ctx.calls, call_id=call_id, tenant_id=None, default_tenant_id=standins.tenant, metadata={}, now=utc_now()
        )
    standins.graph.script("short-1", 403)
    assert app.run("tick").code == 1  # short-1 gets a lastStatus and a lastError

    listed = app.run("calls", "list", env={"COLUMNS": "80"})
    assert listed.code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines and all(cell_len(line) <= 80 for line in lines), "\n".join(lines)
    text = listed.stdout
    assert "short-1" in text and "403 Forbidden" in text and long_id[:12] in text and long_id not in text
    assert standins.tenant[:8] in text and standins.tenant not in text  # short tenant ids
    assert "2 calls registered" in text and "--wide" in text

    wide = app.run("calls", "list", "--wide", env={"COLUMNS": "80"})
    assert wide.code == 0, wide.stderr
    assert long_id in wide.stdout and standins.tenant in wide.stdout and "registeredAt" in wide.stdout
    record = ctx.calls.get("short-1")
    assert record is not None and record.to_json()["registeredAt"] in wide.stdout  # whole ISO times


def test_calls_add_json_says_whether_the_call_was_created(app):
    first = app.run("calls", "add", "call-1", "--json")
    assert first.code == 0, first.stderr
    created = first.json()
    assert created.pop("created") is True
    again = app.run("calls", "add", "call-1", "--json", "--metadata", "k=v")
    assert again.code == 0, again.stderr
    kept = again.json()
    assert kept.pop("created") is False
    assert kept == created  # the stored record, unchanged
    shown = app.run("calls", "show", "call-1", "--json").json()
    assert "created" not in shown and shown == created


def test_a_shell_value_that_shadows_local_settings_gets_a_note_naming_it_never_its_value(app):
    secret = "shell-secret-value-1234"
    # where a secret of the environment goes, the environment decides too (the same values as the file)
    routes = {name: app.values[name] for name in ("GRAPH_AUTHORITY_HOST", "GRAPH_BASE_URL", "REQUESTS_CA_BUNDLE")}
    shadowed = app.run("calls", "list", env={"GRAPH_CLIENT_SECRET": secret, **routes})
    assert shadowed.code == 0, shadowed.stderr
    notes = [line for line in shadowed.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "GRAPH_CLIENT_SECRET" in notes[0] and "local.settings.json" in notes[0]
    assert secret not in shadowed.stderr and app.values["GRAPH_CLIENT_SECRET"] not in shadowed.stderr

    same = app.run("calls", "list", env={"GRAPH_CLIENT_SECRET": app.values["GRAPH_CLIENT_SECRET"]})  # the file's own
    assert same.code == 0 and "note:" not in same.stderr  # the same value: nothing to say
    empty = app.run("calls", "list", env={"GRAPH_CLIENT_SECRET": ""})
    assert empty.code == 0 and "note:" not in empty.stderr  # empty counts as unset: the file's value is used


def test_ctrl_c_during_a_tick_prints_the_partial_summary_and_exits_130(app, standins):
    ctx = app.context()
    calls = [f"slow-{n}" for n in range(6)]
    for call_id in calls:
        registry.register(
            ctx.calls, call_id=call_id, tenant_id=None, default_tenant_id=standins.tenant, metadata={}, now=utc_now()
        )
        standins.graph.script(call_id, Reply(200, delay=2.0))
    app.write_settings(KEEPALIVE_CONCURRENCY="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "tick", "--json"],
        cwd=app.folder,
        env=app.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        # a run started in the background (nohup, CI) ignores SIGINT, and a child inherits that: undo it, so the
        # command line gets Python's usual KeyboardInterrupt as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not standins.graph.requests:  # the sweep has begun: keepAlives are in flight
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["outcome"] == "interrupted" and summary["complete"] is False
    assert 0 < summary["calls"] < len(calls)  # the calls in flight finished; no new one was begun
    assert summary["succeeded"] == summary["calls"] and summary["failed"] == 0
    assert "interrupted=true" in stderr and "Traceback" not in stderr
    kept = [call_id for call_id in calls if ctx.calls.get(call_id).last_keepalive_at is not None]
    assert len(kept) == summary["calls"]  # what the summary counts was written


def test_the_console_command_and_the_module_run_from_any_folder(tmp_path):
    """`pip install -e .` (the Makefile's venv step) installs `callkeeper`; no PYTHONPATH, another folder."""
    script = Path(sys.executable).parent / "callkeeper"
    environ = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    for command in ([str(script), "--version"], [sys.executable, "-m", "shared", "--version"]):
        run = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("callkeeper ") and "No module named" not in run.stderr
    helped = subprocess.run([str(script), "calls", "--help"], cwd=tmp_path, env=environ, capture_output=True, text=True)
    assert helped.returncode == 0 and "usage: callkeeper calls" in helped.stdout
    assert (ROOT / "shared" / "__main__.py").is_file()
