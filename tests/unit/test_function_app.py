"""What the host reads: each function's generated metadata and host.json, against the documented schemas."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "schemas"

HTTP_FUNCTIONS = {
    "register_call": ("calls", ["POST"]),
    "list_calls": ("calls", ["GET"]),
    "get_call": ("calls/{callId}", ["GET"]),
    "delete_call": ("calls/{callId}", ["DELETE"]),
    "receive_notifications": ("notifications", ["POST"]),
}
FUNCTIONS = {*HTTP_FUNCTIONS, "keepalive_tick", "keepalive_work", "publish_call_event"}


def test_every_function_is_indexed_with_valid_metadata(host):
    schema = json.loads((SCHEMAS / "function.schema.json").read_text())
    assert set(host.functions) == FUNCTIONS
    for name in host.functions:
        jsonschema.validate(host.metadata(name), schema)


@pytest.mark.parametrize(("name", "route_methods"), HTTP_FUNCTIONS.items())
def test_http_functions_have_their_route_methods_and_function_auth_level(host, name, route_methods):
    """Every HTTP function (the set above is all of them) needs a function key: none is anonymous."""
    trigger = host.trigger(name)
    assert trigger["type"] == "httpTrigger"
    assert (trigger["route"], trigger["methods"]) == route_methods
    assert trigger["authLevel"] == "FUNCTION"
    bindings = host.metadata(name)["bindings"]
    assert {"direction": "OUT", "type": "http", "name": "$return"} in bindings


def test_the_timer_takes_its_schedule_from_the_setting_and_never_runs_on_startup(host):
    """The host resolves %KEEPALIVE_SCHEDULE%; a start or a scale-out never fires an extra tick; missed ticks are
    tracked (useMonitor) so a tick that falls in a restart is run late rather than lost."""
    assert host.metadata("keepalive_tick")["bindings"] == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%KEEPALIVE_SCHEDULE%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ]


def test_host_json_matches_the_documented_schema():
    host_json = json.loads((ROOT / "host.json").read_text())
    jsonschema.validate(host_json, json.loads((SCHEMAS / "host.schema.json").read_text()))
    assert host_json["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_the_schema_refuses_what_the_host_would_refuse():
    schema = json.loads((SCHEMAS / "host.schema.json").read_text())
    bundle = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    for bad in (
        {"version": "1.0", "extensionBundle": bundle},
        {"version": "2.0", "extensionBundle": {**bundle, "version": "4"}},
        {"version": "2.0", "extensionBundle": {**bundle, "id": "x"}},
        {"version": "2.0", "extensionBundle": bundle, "serviceBus": {}},
        {"version": "2.0", "extensionBundle": bundle, "logging": {"logLevel": {"default": "Verbose"}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


BAD_SETTINGS = {
    "AzureWebJobsStorage": "this is not a connection string",
    "CALLS_TABLE_NAME": "bad name!",
    "KEEPALIVE_CONCURRENCY": "lots",
    "KEEPALIVE_SCHEDULE": "every ten minutes",
    "GRAPH_CLOUD": "mars",
    "GRAPH_TENANT_ID": "not-a-guid",
    "GRAPH_BASE_URL": "ftp://graph",
}


def test_importing_the_app_does_no_io_and_survives_bad_settings(monkeypatch):
    """Indexing must not depend on settings: with bad settings in the environment, importing the app reads
    none of them, opens no socket, file or process, and indexes every function; the first request then
    builds the context from those settings and answers 503 in the contract's shape, still without I/O."""
    import builtins
    import importlib
    import socket
    import subprocess

    import function_app
    from shared import context, telemetry
    from shared import settings as settings_module

    for name, value in BAD_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    monkeypatch.setattr(context, "_context", None)
    monkeypatch.setattr(telemetry, "_telemetry", telemetry.Telemetry(configure=lambda **options: None))
    settings_read = []
    load = settings_module.load_settings
    monkeypatch.setattr(settings_module, "load_settings", lambda environ: settings_read.append(1) or load(environ))
    io = []

    def refuse(kind):
        def refused(*args, **kwargs):
            io.append((kind, args[:1]))
            raise OSError(f"no {kind} while importing the app")

        return refused

    with monkeypatch.context() as blocked:
        for module, name in ((socket, "socket"), (socket, "create_connection"), (socket, "getaddrinfo"),
                             (builtins, "open"), (subprocess, "Popen")):  # fmt: skip
            blocked.setattr(module, name, refuse(f"{module.__name__}.{name}"))
        importlib.reload(function_app)
        assert (io, settings_read, context._context) == ([], [], None)
        functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
        assert set(functions) == FUNCTIONS

        request = func.HttpRequest(method="POST", url="/api/calls", body=b'{"callId": "c1"}', headers={})
        response = functions["register_call"].get_user_function()(request)

        assert (io, settings_read) == ([], [1])
    assert context._context is not None and context._context.settings.concurrency == 64  # the bad value named, not used
    assert "KEEPALIVE_CONCURRENCY must be an integer from 1 to 256 (got 'lots')" in context._context.settings.problems(
        dry_run=True
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"
    error = json.loads(response.get_body())["error"]
    assert error["code"] == "storageUnavailable" and "AzureWebJobsStorage" in error["message"]  # names the setting


def test_the_call_events_function_is_bound_to_its_queue_setting_on_the_apps_storage(host):
    """The host resolves %CALL_EVENTS_QUEUE_NAME% (so the sample and the Bicep settings always set it) and reads the
    queue with the app's own storage connection, both forms of AzureWebJobsStorage."""
    assert host.metadata("publish_call_event")["bindings"] == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%CALL_EVENTS_QUEUE_NAME%",
            "connection": "AzureWebJobsStorage",
        }
    ]
