"""The published reference: docs/openapi.yaml and docs/schemas/ are valid documents that say what the app does, and
the checks that hold the app to them (tests/reference.py) catch an answer or an event they do not describe."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import azure.functions as func
import jsonschema
import pytest
import schemathesis
import yaml
from openapi_spec_validator import validate as validate_openapi
from schemathesis.core.failures import FailureGroup

import shared
from shared import errors
from shared.events import call_ended_event
from shared.models import CallRecord, call_id_problem
from tests.reference import (
    CALL_ENDED,
    CLOUD_EVENT,
    OPENAPI,
    SCHEMAS,
    NotAsDocumented,
    check_response,
    validate_answer,
    validate_cloud_event,
    validate_event,
)

DOCUMENT = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RECORD = CallRecord(
    call_id="491f0b00-ffff-4bc9-a43e-b226498ec22a",
    tenant_id=TENANT,
    registered_at=datetime(2026, 11, 27, 13, 10, 36, 123000, tzinfo=UTC),
    registration_id="5b0c7d1e-8f2a-4c3b-9d4e-6f7a8b9c0d1e",
    metadata={"meeting": "standup"},
)
DETECTED = datetime(2026, 11, 27, 13, 30, 0, 789000, tzinfo=UTC)


# --- the documents ------------------------------------------------------------------------------
def test_the_openapi_document_is_valid_openapi_3_1_of_this_version():
    validate_openapi(DOCUMENT)  # openapi-spec-validator: the document, its schemas, links and references
    assert DOCUMENT["openapi"].startswith("3.1.")
    assert DOCUMENT["info"]["version"] == shared.__version__
    operations = {
        (path, method) for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"
    }
    assert operations == {
        ("/api/calls", "post"),
        ("/api/calls", "get"),
        ("/api/calls/{callId}", "get"),
        ("/api/calls/{callId}", "delete"),
        ("/api/notifications", "post"),
    }
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert (schemes["functionKeyHeader"]["in"], schemes["functionKeyHeader"]["name"]) == ("header", "x-functions-key")
    assert (schemes["functionKeyQuery"]["in"], schemes["functionKeyQuery"]["name"]) == ("query", "code")


def test_the_event_schemas_are_valid_json_schema_2020_12():
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        assert schema["$id"] == path.name  # so one schema refers to the other by its file name
        jsonschema.Draft202012Validator.check_schema(schema)
    assert {path.name for path in SCHEMAS.glob("*.schema.json")} == {CALL_ENDED, CLOUD_EVENT}


def _pattern_of(name: str) -> re.Pattern[str]:
    return re.compile(DOCUMENT["components"]["schemas"][name]["pattern"])


def test_the_call_id_pattern_is_the_apps_rule_for_every_character_of_the_basic_multilingual_plane():
    pattern = _pattern_of("CallId")
    event = json.loads((SCHEMAS / CALL_ENDED).read_text(encoding="utf-8"))
    assert event["$defs"]["callId"]["pattern"] == pattern.pattern  # one rule, written twice
    differ = [
        hex(code)
        for code in range(0x10000)
        if not 0xD800 <= code <= 0xDFFF  # lone surrogates: said in words, refused by the app
        and bool(pattern.search("a" + chr(code) + "b")) != (call_id_problem("a" + chr(code) + "b") is None)
    ]
    assert differ == []
    for value in (".", "..", "...", ".a", "a" * 256):
        assert bool(pattern.search(value)) == (call_id_problem(value) is None), value


def _documented_codes(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        code = node.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
        yield from code.get("enum", [])
        if "const" in code:
            yield code["const"]
        for value in node.values():
            yield from _documented_codes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _documented_codes(value)


def _subclasses(kind: type) -> Iterable[type]:
    for sub in kind.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_error_codes_documented_are_those_the_app_answers():
    answered = {errors.ApiError.code} | {kind.code for kind in _subclasses(errors.ApiError)}
    assert set(_documented_codes(DOCUMENT)) == answered


# --- events -------------------------------------------------------------------------------------
def _event(reason: str, graph: dict[str, Any]) -> dict[str, Any]:
    return call_ended_event(RECORD, tenant_id=TENANT, detected_at=DETECTED, reason=reason, graph=graph)


NOT_FOUND = {"status": 404, "code": "itemNotFound", "message": "m" * 2000, "requestId": None, "clientRequestId": "x"}
TERMINATED = {"code": 0, "subcode": 5001, "message": "The call was ended by the bot."}


def test_an_event_of_either_reason_matches_its_schema():
    validate_event(_event("keepAliveNotFound", NOT_FOUND))  # the message is cut to 1,024 characters
    validate_event(_event("terminatedNotification", TERMINATED))
    validate_event(_event("terminatedNotification", {"code": None, "subcode": None, "message": None}))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda e: e.update(reason="terminatedNotification"), "graph"),  # a 404's graph under the other reason
        (lambda e: e["graph"].pop("clientRequestId"), "graph"),
        (lambda e: e["graph"].update(status=410), "graph/status"),
        (lambda e: e.update(tenantId=TENANT.upper()), "tenantId"),
        (lambda e: e.update(detectedAt="2026-11-27T13:30:00Z"), "detectedAt"),  # not to the millisecond
        (lambda e: e.update(metadata={"n": 1}), "metadata/n"),
        (lambda e: e.update(callId="a/b"), "callId"),
        (lambda e: e.update(extra=True), "(event)"),
        (lambda e: e.pop("eventId"), "(event)"),
    ],
)
def test_an_event_unlike_the_schema_is_refused_naming_the_field(change: Callable[[dict[str, Any]], Any], where: str):
    event = _event("keepAliveNotFound", NOT_FOUND)
    change(event)
    with pytest.raises(AssertionError, match=re.escape(where)):
        validate_event(event)


def test_the_cloud_event_carries_the_event_as_its_data():
    event = _event("keepAliveNotFound", NOT_FOUND)
    envelope = {
        "specversion": "1.0",
        "type": "callkeeper.callEnded",
        "source": "/callkeeper",
        "id": event["eventId"],
        "subject": "calls/" + quote(event["callId"], safe=""),
        "time": event["detectedAt"],
        "datacontenttype": "application/json",
        "data": event,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # an extension a transport adds
    }
    validate_cloud_event(envelope)
    for change in ({"id": "another"}, {"time": "2026-11-27T13:31:00.000Z"}, {"subject": "calls/other"}):
        with pytest.raises(AssertionError):
            validate_cloud_event({**envelope, **change})
    with pytest.raises(AssertionError, match="data/graph"):
        validate_cloud_event({**envelope, "data": {**event, "graph": TERMINATED}})
    with pytest.raises(AssertionError, match="type"):
        validate_cloud_event({**envelope, "type": "callEnded"})


# --- wrong answers are caught ----------------------------------------------------------------------
RECORD_JSON = RECORD.to_json()
ERROR_503 = {"error": {"code": "storageUnavailable", "message": "storage is unavailable"}}

# (method, path, status, headers, body, the check that must fail)
WRONG_ANSWERS = [
    ("GET", "/api/calls/c1", 500, {}, {"error": {"code": "internalError", "message": "x"}}, "not_a_server_error"),
    ("GET", "/api/calls/c1", 503, {}, ERROR_503, "response_headers_conformance"),  # no Retry-After
    ("POST", "/api/calls", 201, {}, RECORD_JSON, "response_headers_conformance"),  # no Location
    ("DELETE", "/api/calls/c1", 418, {}, None, "status_code_conformance"),  # undocumented
    ("GET", "/api/calls/c1", 202, {}, RECORD_JSON, "status_code_conformance"),
    ("GET", "/api/calls/c1", 200, {"Content-Type": "text/plain"}, RECORD_JSON, "content_type_conformance"),
    ("GET", "/api/calls/c1", 200, {}, {**RECORD_JSON, "lastError": "e" * 257}, "response_schema_conformance"),
    ("GET", "/api/calls/c1", 404, {}, {"error": {"code": "notFound", "message": "x"}}, "response_schema_conformance"),
    ("GET", "/api/calls", 200, {}, {"value": [], "nextLink": "/api/calls?page=2"}, "response_schema_conformance"),
    ("POST", "/api/notifications", 202, {}, {"registered": 1, "removed": 0}, "response_schema_conformance"),
]
IDS = [f"{method} {path} {status} {check}" for method, path, status, _, _, check in WRONG_ANSWERS]


def _answer(status: int, headers: dict[str, str], body: Any) -> func.HttpResponse:
    text = None if body is None else json.dumps(body)
    mimetype = headers.pop("Content-Type", "application/json")
    return func.HttpResponse(text, status_code=status, headers=headers, mimetype=mimetype)


@pytest.mark.parametrize(("method", "path", "status", "headers", "body", "check"), WRONG_ANSWERS, ids=IDS)
def test_the_fixture_refuses_a_wrong_answer(method, path, status, headers, body, check):
    """What FunctionHost.request does with every answer a test sees (a 5xx is not refused there: storage faults
    are tested on purpose, and 500 is documented)."""
    response = _answer(status, dict(headers), body)
    if check == "not_a_server_error":
        check_response(method, path, {}, b"", response)
        return
    with pytest.raises(NotAsDocumented) as refused:
        check_response(method, path, {}, b"", response)
    assert check in refused.value.checks, str(refused.value)


def _wrong_app(status: int, headers: dict[str, str], body: Any) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that serves the document and answers every request the same, wrongly."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/openapi.yaml":
            start_response("200 OK", [("Content-Type", "application/yaml")])
            return [OPENAPI.read_bytes()]
        start_response(f"{status} Whatever", list({"Content-Type": "application/json", **headers}.items()))
        return [b"" if body is None else json.dumps(body).encode()]

    return app


@pytest.mark.parametrize(("method", "path", "status", "headers", "body", "check"), WRONG_ANSWERS, ids=IDS)
def test_the_schemathesis_run_refuses_a_wrong_answer(method, path, status, headers, body, check):
    """The checks of tests/integration/test_openapi.py, on a case as it generates one, against an app that answers
    wrongly (in this process, through schemathesis' WSGI client)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.yaml", _wrong_app(status, dict(headers), body))
    template = "/api/calls/{callId}" if path.startswith("/api/calls/") else path
    parameters = {"callId": path.rsplit("/", 1)[-1]} if "{callId}" in template else {}
    body_kw = {"body": {"callId": "c1"}} if method == "POST" else {}
    case = schema[template][method].Case(path_parameters=parameters, **body_kw)
    with pytest.raises(FailureGroup) as refused:
        validate_answer(case, case.call(headers={"x-functions-key": "k"}))
    assert check in {name for failure in refused.value.exceptions for name in failure.checks}, str(refused.value)


def test_a_right_answer_passes_both():
    check_response("POST", "/api/calls", {}, b"", _answer(201, {"Location": "/api/calls/c1"}, RECORD_JSON))
    schema = schemathesis.openapi.from_wsgi("/openapi.yaml", _wrong_app(200, {}, RECORD_JSON))
    case = schema["/api/calls/{callId}"]["GET"].Case(path_parameters={"callId": "c1"})
    validate_answer(case, case.call())


# --- the documents a user reads -----------------------------------------------------------------------
ROOT = OPENAPI.parents[1]
CONTRACT = ROOT.parent / "shared" / "spec" / "contract.md"  # beside the clone, for the developers; never linked
USER_FACING = sorted([ROOT / "README.md", ROOT / "local.settings.sample.json", *(ROOT / "docs").rglob("*")], key=str)
_OUTSIDE = re.compile(r"\.\./shared|shared/spec|contract\.md|\bthe contract\b|\bcontract's\b", re.IGNORECASE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", [p for p in USER_FACING if p.is_file()], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_user_facing_file_points_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    assert not _OUTSIDE.findall(text), f"{path.name} points at a document outside the repository"
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        linked = (path.parent / target.split("#", 1)[0]).resolve()
        assert linked.is_relative_to(ROOT) and linked.exists(), f"{path.name} links {target}, which is not here"


def _names_the_app_reads() -> set[str]:
    """Every setting name shared/settings.py reads (the only module that reads the environment)."""
    text = (ROOT / "shared" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'"((?:[A-Z][A-Z0-9]*_)+[A-Z0-9]+|AzureWebJobsStorage(?:__[A-Za-z]+)?)"', text))


def _names_of_the_contract() -> set[str]:
    if not CONTRACT.exists():  # a clone without the developers' spec beside it: the app's names are the check
        return set()
    section = CONTRACT.read_text(encoding="utf-8").split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", section, flags=re.MULTILINE))


def test_the_reference_lists_every_setting_the_app_reads():
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    names = _names_the_app_reads() | _names_of_the_contract()
    assert len(names) > 25
    assert sorted(name for name in names if f"`{name}`" not in reference) == []


def test_the_readme_links_the_reference_the_api_document_and_the_schemas():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("docs/reference.md", "docs/openapi.yaml", "docs/schemas/callEnded.schema.json"):
        assert f"]({target})" in readme, target
