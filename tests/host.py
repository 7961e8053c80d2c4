"""Invoke functions the way the Functions host does: by route template and method, through `get_functions()`.

Every answer `FunctionHost.request` returns has been held against docs/openapi.yaml (`tests.reference`), so no
test can see an HTTP answer the published reference does not describe. `FunctionHost.wsgi` serves the same
routing as a WSGI app, for schemathesis (tests/integration/test_openapi.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import azure.functions as func

from tests.reference import OPENAPI, check_response, wire_headers

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class HostAnswer(func.HttpResponse):
    """An answer of the Functions host itself (no function key, no route): a status and no body."""


class FunctionHost:
    """Routes HTTP requests to an app's functions by their generated metadata (`get_function_json()`).

    `FunctionHost.of(app)` gives the one host of an app: `get_functions()` may run once per app object (a second
    call finds every function registered already and raises)."""

    _hosts: dict[int, FunctionHost] = {}

    @classmethod
    def of(cls, app: func.FunctionApp) -> FunctionHost:
        if id(app) not in cls._hosts:
            cls._hosts[id(app)] = cls(app)
        return cls._hosts[id(app)]

    def __init__(self, app: func.FunctionApp) -> None:
        self.functions = {f.get_function_name(): f for f in app.get_functions()}  # once per app object
        self.http_routes: list[tuple[list[str], set[str], str, Any]] = []
        for name, function in self.functions.items():
            binding = self.trigger(name)
            if binding["type"] == "httpTrigger":
                methods = {m.upper() for m in binding["methods"]}
                self.http_routes.append((binding["route"].split("/"), methods, binding["authLevel"], function))

    def metadata(self, name: str) -> dict[str, Any]:
        return json.loads(self.functions[name].get_function_json())

    def trigger(self, name: str) -> dict[str, Any]:
        return next(b for b in self.metadata(name)["bindings"] if b["direction"] == "IN")

    def user_function(self, name: str) -> Any:
        return self.functions[name].get_user_function()

    def request(
        self,
        method: str,
        url: str,
        body: bytes | str | Any = None,
        headers: dict[str, str] | None = None,
        function_key: str | None = "test-function-key",
    ) -> func.HttpResponse:
        """Send a request as the host would route it (404 and 401 are the host's own answers), and hold the
        answer against docs/openapi.yaml: AssertionError when it is not as documented."""
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if function_key:
            all_headers["x-functions-key"] = function_key
        response = self._route(method.upper(), url, body or b"", all_headers, function_key)
        check_response(
            method.upper(), url, all_headers, body or b"", response, from_host=isinstance(response, HostAnswer)
        )
        return response

    def _route(
        self, method: str, url: str, body: bytes, headers: dict[str, str], function_key: str | None
    ) -> func.HttpResponse:
        parts = urlsplit(url)
        path = parts.path
        if not path.startswith("/api/"):
            return HostAnswer(status_code=404)
        segments = path[len("/api/") :].split("/")
        for template, methods, auth_level, function in self.http_routes:
            params = _match(template, segments)
            if params is None or method not in methods:
                continue
            if auth_level == "FUNCTION" and not function_key:
                return HostAnswer(status_code=401)
            request = func.HttpRequest(
                method=method,
                url=url,
                headers=headers,
                params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                route_params=params,
                body=body,
            )
            return function.get_user_function()(request)
        return HostAnswer(status_code=404)

    def wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The same routing as a WSGI app (schemathesis' `from_wsgi`): the function key from `x-functions-key` or
        `?code=`, the path as sent (still percent-encoded), and `GET /openapi.yaml` serves the document."""
        method = environ["REQUEST_METHOD"]
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))
        path = raw_path.split("?", 1)[0]
        query = environ.get("QUERY_STRING", "")
        if method == "GET" and path == "/openapi.yaml":
            start_response("200 OK", [("Content-Type", "application/yaml")])
            return [OPENAPI.read_bytes()]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            name[5:].replace("_", "-").title(): value for name, value in environ.items() if name.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        key = headers.pop("X-Functions-Key", None) or dict(parse_qsl(query)).get("code")
        key = key if key and key.strip() else None  # `?code=+` is no key (and no header value requests can send)
        response = self.request(method, path + ("?" + query if query else ""), body, headers, function_key=key)
        reason = HTTPStatus(response.status_code).phrase if response.status_code in _STATUSES else "Unknown"
        answer_headers = [] if isinstance(response, HostAnswer) else list(wire_headers(response).items())
        start_response(f"{response.status_code} {reason}", answer_headers)
        return [b"" if isinstance(response, HostAnswer) else response.get_body()]


_STATUSES = {status.value for status in HTTPStatus}


def _match(template: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(template, segments, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return None
            params[expected[1:-1]] = unquote(actual)
        elif expected.lower() != actual.lower():
            return None
    return params


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())
