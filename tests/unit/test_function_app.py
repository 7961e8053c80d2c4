"""What the host reads: each function's generated metadata and host.json, against the documented schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "schemas"

HTTP_FUNCTIONS = {
    "register_call": ("calls", ["POST"]),
    "list_calls": ("calls", ["GET"]),
    "get_call": ("calls/{callId}", ["GET"]),
    "delete_call": ("calls/{callId}", ["DELETE"]),
}


def test_every_function_is_indexed_with_valid_metadata(host):
    schema = json.loads((SCHEMAS / "function.schema.json").read_text())
    assert set(HTTP_FUNCTIONS) <= set(host.functions)
    for name in host.functions:
        jsonschema.validate(host.metadata(name), schema)


@pytest.mark.parametrize(("name", "route_methods"), HTTP_FUNCTIONS.items())
def test_http_functions_have_their_route_methods_and_function_auth_level(host, name, route_methods):
    trigger = host.trigger(name)
    assert trigger["type"] == "httpTrigger"
    assert (trigger["route"], trigger["methods"]) == route_methods
    assert trigger["authLevel"] == "FUNCTION"
    bindings = host.metadata(name)["bindings"]
    assert {"direction": "OUT", "type": "http", "name": "$return"} in bindings


def test_no_function_is_anonymous(host):
    for name in host.functions:
        trigger = host.trigger(name)
        if trigger["type"] == "httpTrigger":
            assert trigger["authLevel"] != "ANONYMOUS"


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


def test_importing_the_app_does_no_io_and_survives_bad_settings(monkeypatch):
    """Indexing must not depend on settings: the context is built on first use, never at import."""
    import importlib

    import function_app
    from shared import context

    monkeypatch.setattr(context, "_context", None)
    importlib.reload(function_app)
    assert context._context is None
    assert len(function_app.app.get_functions()) >= len(HTTP_FUNCTIONS)
