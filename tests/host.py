"""Invoke functions the way the Functions host does: by route template and method, through `get_functions()`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func


class FunctionHost:
    """Routes HTTP requests to an app's functions by their generated metadata (`get_function_json()`)."""

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
        """Send a request as the host would route it; 404/405/401 are the host's own answers."""
        parts = urlsplit(url)
        path = parts.path
        if not path.startswith("/api/"):
            return func.HttpResponse(status_code=404)
        segments = path[len("/api/") :].split("/")
        for template, methods, auth_level, function in self.http_routes:
            params = _match(template, segments)
            if params is None or method.upper() not in methods:
                continue
            if auth_level == "FUNCTION" and not function_key:
                return func.HttpResponse(status_code=401)
            if body is not None and not isinstance(body, bytes | str):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode("utf-8")
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            if function_key:
                all_headers["x-functions-key"] = function_key
            request = func.HttpRequest(
                method=method.upper(),
                url=url,
                headers=all_headers,
                params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                route_params=params,
                body=body or b"",
            )
            return function.get_user_function()(request)
        return func.HttpResponse(status_code=404)


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
