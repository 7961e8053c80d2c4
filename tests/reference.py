"""The published reference held against what the app does, in one place for every test.

    check_response(method, url, headers, body, response)   an HTTP answer against docs/openapi.yaml (FunctionHost
                                                            calls it for every request a test sends)
    validate_event(event)                                   a callEnded event against docs/schemas/ (drain_events
                                                            and every other reader of the cleanup queue call it)
    validate_cloud_event(envelope)                          a CloudEvent as the Event Grid topic receives it

An HTTP answer goes through schemathesis' own checks (`RESPONSE_CHECKS`: status, content type, headers, body), the
same ones its run in tests/integration/test_openapi.py applies. Each raises AssertionError on a mismatch.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

if TYPE_CHECKING:
    import azure.functions as func
    from schemathesis.specs.openapi.schemas import OpenApiSchema

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "docs" / "openapi.yaml"
SCHEMAS = ROOT / "docs" / "schemas"
CALL_ENDED = "callEnded.schema.json"
CLOUD_EVENT = "callEnded.cloudevent.schema.json"


# --- events -------------------------------------------------------------------------------------
@cache
def _event_schemas() -> referencing.Registry[Any]:
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        resources.append((document["$id"], referencing.jsonschema.DRAFT202012.create_resource(document)))
    return referencing.Registry().with_resources(resources)


def event_validator(name: str) -> jsonschema.Draft202012Validator:
    registry = _event_schemas()
    schema = registry.contents(name)
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def validate_event(event: Mapping[str, Any]) -> None:
    """A `callEnded` event as a consumer of the cleanup queue reads it: docs/schemas/callEnded.schema.json."""
    errors = sorted(event_validator(CALL_ENDED).iter_errors(event), key=lambda e: list(e.absolute_path))
    assert not errors, f"callEnded event does not match {CALL_ENDED}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}" for e in errors
    )


def validate_cloud_event(envelope: Mapping[str, Any]) -> None:
    """A CloudEvent of the topic: docs/schemas/callEnded.cloudevent.schema.json, and what JSON Schema cannot say
    (the attributes that repeat the event's own fields)."""
    errors = sorted(event_validator(CLOUD_EVENT).iter_errors(envelope), key=lambda e: list(e.absolute_path))
    assert not errors, f"CloudEvent does not match {CLOUD_EVENT}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(envelope)'}: {e.message}" for e in errors
    )
    data = envelope["data"]
    assert envelope["id"] == data["eventId"], "the CloudEvent's id is the event's eventId"
    assert envelope["subject"] == "calls/" + urllib.parse.quote(data["callId"], safe=""), "subject: calls/{callId}"
    assert _instant(envelope["time"]) == _instant(data["detectedAt"]), "the CloudEvent's time is detectedAt"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- HTTP ---------------------------------------------------------------------------------------
@cache
def openapi() -> OpenApiSchema:
    """docs/openapi.yaml loaded by schemathesis (its checks, and its run through `from_wsgi`)."""
    import schemathesis

    return schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))


def response_checks() -> list[Any]:
    """schemathesis' checks of one answer: documented status, content type, headers and body."""
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]


def run_checks() -> list[Any]:
    """The checks of the schemathesis run: `response_checks` and no server error (5xx) at all."""
    from schemathesis.checks import not_a_server_error

    return [not_a_server_error, *response_checks()]


def validate_answer(case: Any, response: Any) -> None:
    """One answer of the schemathesis run: `run_checks`, or for an answer of the host itself, `host_checks`."""
    content_type = (response.headers.get("content-type") or [None])[0]
    host = from_the_host(response.status_code, content_type, response.content)
    case.validate_response(response, checks=host_checks() if host else run_checks())


def host_checks() -> list[Any]:
    """The checks of an answer of the Functions host itself (no function key: 401; no route: 404): its status only,
    for it has no body and no Content-Type, and is not the app's to describe."""
    from schemathesis.specs.openapi.checks import status_code_conformance

    return [status_code_conformance]


def from_the_host(status: int, content_type: str | None, body: bytes) -> bool:
    """Whether an answer on the wire is one of the host's own: 401 or 404 with no body and no Content-Type."""
    return status in (401, 404) and not body and content_type is None


def wire_headers(response: func.HttpResponse) -> dict[str, str]:
    """The headers the Python worker sends for `response`: its own, and Content-Type from the mimetype
    (what `azure.functions.http.HttpResponseConverter.encode` does)."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    if "content-type" not in headers:
        mimetype = response.mimetype
        headers["content-type"] = (
            f"{mimetype}; charset={response.charset}" if mimetype.startswith("text/") else mimetype
        )
    return headers


class NotAsDocumented(AssertionError):
    """An answer the document does not describe; `checks` names the schemathesis checks that failed."""

    def __init__(self, message: str, failures: Sequence[Any]) -> None:
        super().__init__(message)
        self.checks = {name for failure in failures for name in failure.checks}


def check_response(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    response: func.HttpResponse,
    *,
    from_host: bool = False,
) -> None:
    """Hold one answer against docs/openapi.yaml; AssertionError (schemathesis' failures) when it is not as
    documented. `from_host`: the Functions host answered itself (no function key; no body), so only its status is
    held against the operation's. A request no operation matches (an unknown route) has nothing to be held to."""
    import requests
    from schemathesis import Response
    from schemathesis.core.failures import FailureGroup

    parts = urllib.parse.urlsplit(url)
    operation = openapi().find_operation_by_path(method, parts.path)
    if operation is None:
        return
    path_parameters = {}
    if "{callId}" in operation.path:
        path_parameters["callId"] = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    answer_headers = {} if from_host else wire_headers(response)
    sent = requests.Request(method, "http://localhost" + url, headers=dict(headers), data=body).prepare()
    answer = Response(
        status_code=response.status_code,
        headers={name: [value] for name, value in answer_headers.items()},
        content=b"" if from_host else response.get_body(),
        request=sent,
        elapsed=0.0,
        verify=False,
    )
    case = operation.Case(path_parameters=path_parameters, query=query, headers=dict(headers))
    try:
        case.validate_response(answer, checks=host_checks() if from_host else response_checks())
    except FailureGroup as group:
        raise NotAsDocumented(
            f"{method} {url} answered {response.status_code}, not as docs/openapi.yaml says:\n{group.message}",
            group.exceptions,
        ) from None
