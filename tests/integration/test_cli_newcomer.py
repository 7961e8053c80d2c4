"""What a newcomer walking the README meets, run as they run it (subprocesses): a closed pipe, `--wide`, a broken
local.settings.json, a CA bundle from the shell or missing, a call without a tenant, `calls remove` of an unknown
call, Azurite on other ports, `python -m shared` beside another `shared` folder, the stand-ins' `--help`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import certifi
import pytest

from shared.context import Context
from tests.helpers import closed_port
from tests.host import FunctionHost, body_of
from tests.integration.cli_harness import ROOT, App, Run
from tests.standins.fixtures import Standins

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_cli: Callable[..., App]) -> App:
    return make_cli()


def _into_a_closed_pipe(app: App, *args: str) -> Run:
    """The command with stdout a pipe whose reader is already gone (`| head` after it has what it wants)."""
    read, write = os.pipe()
    os.close(read)
    try:
        process = subprocess.run(
            [sys.executable, "-m", "shared", *args],
            cwd=app.folder,
            env=app.environ(),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    return Run(process.returncode, "", process.stderr)


def test_a_closed_pipe_is_a_normal_end_with_no_message_and_the_exit_code_of_git(app):
    assert app.run("calls", "add", "call-1").code == 0
    for args in (("calls", "list", "--json"), ("calls", "list"), ("calls", "show", "call-1", "--json")):
        run = _into_a_closed_pipe(app, *args)
        assert run.code == 141, (args, run.stderr)  # 128 + SIGPIPE, as `git log | head` ends
        assert "error" not in run.stderr and "BrokenPipe" not in run.stderr and "Exception" not in run.stderr, run


def test_wide_shows_every_field_metadata_included(app):
    assert app.run("calls", "add", "call-1", "--metadata", "meeting=standup", "--metadata", "room=4").code == 0
    wide = app.run("calls", "list", "--wide")
    assert wide.code == 0, wide.stderr
    header = wide.stdout.splitlines()[0].split()
    assert header == [
        "callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "consecutiveFailures", "lastError",
        "metadata",
    ]  # fmt: skip
    assert "meeting=standup room=4" in wide.stdout


def test_a_local_settings_json_that_is_not_json_is_named_with_its_problem_and_how_to_fix_it(app):
    path = app.folder / "local.settings.json"
    path.write_text('{\n  "Values": {\n    "GRAPH_DRY_RUN": "true",\n  }\n}\n', encoding="utf-8")
    run = app.run("calls", "list")
    assert run.code == 2
    assert f"{path} is not valid JSON" in run.stderr and "line 4 column 3" in run.stderr
    assert f"what to do: fix {path}" in run.stderr and '"Values"' in run.stderr
    assert "setting named above" not in run.stderr and "Traceback" not in run.stderr


def test_use_development_storage_misspelt_says_what_was_meant(app):
    app.write_settings(AzureWebJobsStorage="UseDevelopmentStorage=ture")
    run = app.run("calls", "list", "--json")
    assert run.code == 2
    assert run.json()["error"]["code"] == "invalidSettings"
    assert "UseDevelopmentStorage to something other than true" in run.stderr
    assert "UseDevelopmentStorage=true" in run.stderr


def test_storage_down_names_the_ports_azure_web_jobs_storage_names(app):
    blob, queue, table = closed_port(), closed_port(), closed_port()
    account = "AccountName=devstoreaccount1;AccountKey=a2V5"
    app.write_settings(
        AzureWebJobsStorage=f"DefaultEndpointsProtocol=http;{account};BlobEndpoint=http://127.0.0.1:{blob}/x;"
        f"QueueEndpoint=http://127.0.0.1:{queue}/x;TableEndpoint=http://127.0.0.1:{table}/x;"
    )
    run = app.run("calls", "list")
    assert run.code == 1
    assert f'AZURITE_PORTS="{blob} {queue} {table}" bash scripts/azurite.sh start .azurite' in run.stderr
    assert "10000-10002" not in run.stderr and "a2V5" not in run.stderr

    (app.folder / ".azurite").mkdir()  # `make prepare` started Azurite here on ports the setting does not name
    (app.folder / ".azurite" / "azurite.ports").write_text("20000 20001 20002\n", encoding="utf-8")
    elsewhere = app.run("calls", "list")
    assert elsewhere.code == 1
    assert "this folder's Azurite listens on ports 20000 20001 20002" in elsewhere.stderr
    assert "bash scripts/azurite.sh connection .azurite" in elsewhere.stderr


def test_the_tls_hint_names_the_ca_bundle_in_force_and_where_it_came_from(app, standins: Standins):
    ctx = app.context()
    assert app.run("calls", "add", "call-1").code == 0
    wrong = certifi.where()  # a real bundle, without the stand-ins' CA
    shell = app.run("tick", env={"REQUESTS_CA_BUNDLE": wrong})
    assert shell.code == 1
    assert "note: the environment overrides local.settings.json for REQUESTS_CA_BUNDLE" in shell.stderr
    assert (
        f"REQUESTS_CA_BUNDLE={wrong} is in force (from the environment, which overrides local.settings.json)"
        in shell.stderr
    )
    assert ctx.calls.get("call-1").last_error == "token: tls_error"

    app.write_settings(REQUESTS_CA_BUNDLE=wrong)
    from_file = app.run("tick")
    assert from_file.code == 1
    assert f"REQUESTS_CA_BUNDLE={wrong} is in force (from {app.folder / 'local.settings.json'})" in from_file.stderr


def test_a_ca_bundle_that_does_not_exist_stops_the_tick_naming_it(app):
    ctx = app.context()
    assert app.run("calls", "add", "call-1").code == 0
    missing = str(app.folder / "no-such-ca.pem")
    run = app.run("tick", "--json", env={"REQUESTS_CA_BUNDLE": missing})
    assert run.code == 2
    assert run.json()["error"]["code"] == "invalidSettings"
    assert f"REQUESTS_CA_BUNDLE names {missing}, which does not exist (from the environment" in run.stderr
    record = ctx.calls.get("call-1")
    assert record.last_error is None and record.consecutive_failures == 0  # nothing was tried, nothing changed
    assert app.run("tick", "--dry-run", env={"REQUESTS_CA_BUNDLE": missing}).code == 0  # a dry run sends nothing


def test_calls_remove_names_the_call_it_could_not_find(app):
    run = app.run("calls", "remove", "call-ghost")
    assert run.code == 1
    assert "no call is registered with callId 'call-ghost'" in run.stderr


def test_a_call_with_no_tenant_is_registered_with_a_warning(app):
    app.write_settings(GRAPH_TENANT_ID="")
    added = app.run("calls", "add", "call-1")
    assert added.code == 0, added.stderr
    said = " ".join(added.stdout.split())  # as a person reads it, whatever the terminal's width
    assert "created call call-1" in said
    assert "warning: call call-1 has no tenant" in said and "until GRAPH_TENANT_ID is set" in said
    assert "WARNING" in added.stderr and "call registered without a tenant callId=call-1" in added.stderr
    as_json = app.run("calls", "add", "call-2", "--json")
    assert as_json.code == 0 and as_json.json()["tenantId"] is None  # stdout stays the record
    assert "call registered without a tenant callId=call-2" in as_json.stderr
    again = app.run("calls", "add", "call-1")
    assert again.code == 0 and "warning" not in again.stdout  # said once, when it was registered


def test_the_api_registers_a_call_with_no_tenant_and_logs_a_warning(host: FunctionHost, ctx: Context, caplog):
    assert ctx.settings.tenant_id is None
    with caplog.at_level(logging.WARNING, logger="shared.registry"):
        response = host.request("POST", "/api/calls", body={"callId": "call-1"})
    assert response.status_code == 201 and body_of(response)["tenantId"] is None  # as the contract says
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "call registered without a tenant callId=call-1" in warning.getMessage()
    assert "GRAPH_TENANT_ID" in warning.getMessage()


@pytest.mark.parametrize("package", [False, True], ids=["a folder", "a package"])
def test_python_m_shared_beside_another_shared_folder_says_so_and_what_to_run(tmp_path: Path, package: bool):
    other = tmp_path / "shared"
    other.mkdir()
    if package:
        (other / "__init__.py").write_text("", encoding="utf-8")
    environ = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}  # the installed app, no PYTHONPATH
    run = subprocess.run(
        [sys.executable, "-m", "shared", "calls", "list"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"another package named 'shared' ({other}" in run.stderr and "run `callkeeper` instead" in run.stderr


def test_the_standins_help_stands_on_its_own():
    run = subprocess.run(
        [sys.executable, "-m", "tests.standins", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0
    assert "see above" not in run.stdout
    for words in ("REQUESTS_CA_BUNDLE", "--ended", "404", "stats", "reset", "Ctrl-C"):
        assert words in run.stdout, words
