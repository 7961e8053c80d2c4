"""The command line, as a real subprocess, contains what comes from outside it.

- A folder cannot redirect a secret held in the environment: a local.settings.json that decides where that
  secret goes is refused before anything is sent. The folder's file points the authority host at the
  identity stand-in (as an attacker's token endpoint would be) and trusts the stand-in's CA; the client
  secret is only in the environment.
- A stored value never reaches the terminal as a control sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared import registry
from shared.models import utc_now
from tests.integration.cli_harness import App
from tests.standins.fixtures import Standins

pytestmark = pytest.mark.integration


def test_a_folder_that_routes_a_secret_of_the_environment_is_refused_and_nothing_is_sent(
    make_cli: Callable[..., App], standins: Standins
) -> None:
    secret = standins.client_secret
    app = make_cli(GRAPH_CLIENT_SECRET=None)  # the file: GRAPH_AUTHORITY_HOST, GRAPH_BASE_URL, REQUESTS_CA_BUNDLE
    registry.register(app.context().calls, call_id="c0", tenant_id=None, default_tenant_id=standins.tenant,
                  metadata={}, now=utc_now())  # fmt: skip  # a call to keep alive: a tick would need a token

    for args in (("tick",), ("--json", "calls", "list"), ("calls", "add", "c1")):
        run = app.run(*args, env={"GRAPH_CLIENT_SECRET": secret})
        assert run.code == 2, (args, run.stderr)
        for name in ("GRAPH_AUTHORITY_HOST", "GRAPH_BASE_URL", "REQUESTS_CA_BUNDLE"):
            assert f"{name} is set in local.settings.json" in run.stderr, run.stderr
        assert "GRAPH_CLIENT_SECRET from the environment" in run.stderr
        assert secret not in run.stderr + run.stdout and "Traceback" not in run.stderr

    assert standins.identity.records == [] and not standins.identity.token_requests  # it received nothing
    assert not standins.identity.discovery_requests and standins.graph.requests == []
    assert app.context().calls.get("c1") is None  # nothing was stored either


def test_the_same_folder_with_the_secret_in_its_own_file_runs_with_its_ca_bundle(
    make_cli: Callable[..., App], standins: Standins
) -> None:
    app = make_cli()  # the secret in the file too: the folder routes only what it holds itself
    assert app.run("calls", "add", "c1").code == 0
    run = app.run("tick", env={"GRAPH_CLIENT_SECRET": standins.client_secret})  # the environment: the same value
    assert run.code == 0, run.stderr
    assert standins.identity.records and len(standins.graph.requests_for("c1")) == 1  # TLS with the file's CA


def test_calls_show_prints_a_stored_control_sequence_escaped(make_cli: Callable[..., App]) -> None:
    app = make_cli()
    assert app.run("calls", "add", "c1", "--metadata", "note=\x1b]0;pwned\x07\x1b[2J\u202eexe.txt").code == 0
    shown = app.run("calls", "show", "c1")
    assert shown.code == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eexe.txt" in shown.stdout.replace("\n", "").replace(" ", "")
