"""The command line's rule for settings that decide where a credential or a token is sent: taken from
local.settings.json only when the credential they would carry comes from the file too (shared/cli/local_settings.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli.local_settings import load, routing_problems
from shared.errors import SettingsError

SECRET = "CANARY-secret-value"
STANDIN = "https://127.0.0.1:8444"
DEV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
IDENTITY_STORAGE = {
    "AzureWebJobsStorage__tableServiceUri": "https://evil.example",
    "AzureWebJobsStorage__queueServiceUri": "https://evil.example",
}


def refused(environ: dict[str, str], values: dict[str, str]) -> list[str]:
    """The names of the settings refused, from the problems' first word."""
    problems = routing_problems(environ, values)
    for problem in problems:
        assert not any(value in problem for value in (*environ.values(), *values.values()) if len(value) > 5)
    return [problem.split(" ", 1)[0] for problem in problems]


@pytest.mark.parametrize(
    ("environ", "values", "names"),
    [
        # the reproduction: a folder's file points the secret of the environment at its own token endpoint
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "GRAPH_AUTHORITY_HOST": STANDIN, "REQUESTS_CA_BUNDLE": "/ca.pem"},
         ["GRAPH_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE"]),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "GRAPH_BASE_URL": STANDIN}, ["GRAPH_BASE_URL"]),
        ({"GRAPH_CLIENT_CERTIFICATE_PATH": "/key.pem"}, {**DEV, "GRAPH_CLOUD": "usgov"}, ["GRAPH_CLOUD"]),
        ({}, {**DEV, "GRAPH_MANAGED_IDENTITY_CLIENT_ID": "c", "GRAPH_AUTHORITY_HOST": STANDIN},
         ["GRAPH_AUTHORITY_HOST"]),  # the managed identity's assertion comes from this machine
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "HTTPS_PROXY": "http://p:3128"}, ["HTTPS_PROXY"]),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "https_proxy": "http://p:3128"}, ["https_proxy"]),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "ALL_PROXY": "socks5://p"}, ["ALL_PROXY"]),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "CURL_CA_BUNDLE": "/ca.pem"}, ["CURL_CA_BUNDLE"]),
        (DEV, {"REQUESTS_CA_BUNDLE": "/ca.pem"}, ["REQUESTS_CA_BUNDLE"]),  # the storage key of the environment
        ({}, IDENTITY_STORAGE, ["AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__tableServiceUri"]),
        ({}, {"AzureWebJobsStorage__accountName": "evil"}, ["AzureWebJobsStorage__accountName"]),
        ({}, {"AZURE_AUTHORITY_HOST": STANDIN, **IDENTITY_STORAGE},
         ["AZURE_AUTHORITY_HOST", "AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__tableServiceUri"]),
        ({}, {**DEV, "CALL_EVENTS_TOPIC_ENDPOINT": STANDIN}, ["CALL_EVENTS_TOPIC_ENDPOINT"]),  # the storage identity
        ({"CALL_EVENTS_TOPIC_KEY": SECRET}, {**DEV, "CALL_EVENTS_TOPIC_ENDPOINT": STANDIN},
         ["CALL_EVENTS_TOPIC_ENDPOINT"]),
    ],
)  # fmt: skip
def test_a_route_from_the_file_for_a_credential_of_the_environment_is_refused_by_name(environ, values, names):
    assert refused(environ, values) == names


@pytest.mark.parametrize(
    ("environ", "values"),
    [
        ({}, {**DEV, "GRAPH_CLIENT_SECRET": SECRET, "GRAPH_AUTHORITY_HOST": STANDIN, "REQUESTS_CA_BUNDLE": "/ca"}),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "GRAPH_CLIENT_SECRET": SECRET, "GRAPH_AUTHORITY_HOST": STANDIN}),
        ({"GRAPH_CLIENT_SECRET": SECRET, "GRAPH_AUTHORITY_HOST": STANDIN}, {**DEV, "GRAPH_AUTHORITY_HOST": "https://x"}),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "GRAPH_CLOUD": "global", "GRAPH_BASE_URL": ""}),
        ({"GRAPH_CLIENT_SECRET": SECRET}, {**DEV, "GRAPH_BASE_URL": "https://graph.microsoft.com"}),
        ({}, {**DEV, "GRAPH_AUTHORITY_HOST": STANDIN, "REQUESTS_CA_BUNDLE": "/ca.pem"}),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, IDENTITY_STORAGE),
        ({}, {**DEV, "AZURE_AUTHORITY_HOST": STANDIN}),
        ({}, {**DEV, "CALL_EVENTS_TOPIC_KEY": SECRET, "CALL_EVENTS_TOPIC_ENDPOINT": STANDIN}),
        ({"NO_PROXY": "*"}, {**DEV, "NO_PROXY": "127.0.0.1", "GRAPH_CLIENT_SECRET": SECRET}),
    ],
    ids=[
        "everything from the file",
        "the environment holds the file's own secret",
        "the environment decides the route",
        "the sample's defaults route nowhere new",
        "the cloud's own Graph root",
        "no credential to carry",
        "service URIs unused beside a connection string",
        "azure-identity unused beside a connection string",
        "the topic key from the file",
        "not a routing setting",
    ],
)  # fmt: skip
def test_a_route_that_carries_nothing_of_the_environment_is_taken(environ, values):
    assert refused(environ, values) == []


def test_the_command_line_refuses_before_the_file_reaches_the_environment(tmp_path: Path):
    values = {**DEV, "GRAPH_AUTHORITY_HOST": STANDIN, "REQUESTS_CA_BUNDLE": "/ca.pem"}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values}), encoding="utf-8")
    environ = {"GRAPH_CLIENT_SECRET": SECRET}
    with pytest.raises(SettingsError) as raised:
        load(tmp_path, environ)
    assert environ == {"GRAPH_CLIENT_SECRET": SECRET}  # REQUESTS_CA_BUNDLE never reached the environment
    assert [p.split(" ", 1)[0] for p in raised.value.problems] == ["GRAPH_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE"]
