"""The HTTP API of the contract: handlers that take the context and the request and return a response.

Every error is `{"error": {"code", "message"}}`; anything unexpected is logged and answered as a
generic 500, never with a stack trace or an exception's text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import azure.functions as func

from shared import jsonsafe, registry
from shared.context import Context
from shared.errors import ApiError, CallNotFound, InvalidRequest, PayloadTooLarge
from shared.logsafe import get_logger
from shared.models import call_id_problem, validate_call_id, validate_metadata, validate_tenant_id

logger = get_logger(__name__)

MAX_BODY_BYTES = 65_536
DEFAULT_TOP = 100
MAX_TOP = 1000
_DIGITS = re.compile(r"^[0-9]{1,9}\Z")

Handler = Callable[[Context, func.HttpRequest], func.HttpResponse]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=headers,
        mimetype="application/json",
        charset="utf-8",
    )


def error_response(error: ApiError) -> func.HttpResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response({"error": {"code": error.code, "message": error.message}}, error.status, headers)


def handler(fn: Handler) -> Handler:
    """Answer `ApiError`s in the contract's shape and anything else as a logged, generic 500."""

    @functools.wraps(fn)
    def wrapper(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
        try:
            return fn(ctx, req)
        except ApiError as error:
            return error_response(error)
        except Exception:
            logger.exception("unexpected error handler=%s", fn.__name__)
            return error_response(ApiError("An unexpected error occurred; it has been logged."))

    return wrapper


def read_json(req: func.HttpRequest) -> Any:
    """The request body as JSON: 413 over 64 KiB, 400 when it is not JSON."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body must be at most {MAX_BODY_BYTES} bytes")
    try:
        return jsonsafe.loads(body)
    except ValueError:  # not UTF-8, not JSON, or nested too deep
        raise InvalidRequest("the request body must be JSON") from None


def call_location(call_id: str) -> str:
    return "/api/calls/" + quote(call_id, safe="")


@handler
def register_call(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
    body = read_json(req)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if "callId" not in body:
        raise InvalidRequest("callId is required")
    call_id = validate_call_id(body["callId"])
    tenant_id = validate_tenant_id(body.get("tenantId"))
    metadata = validate_metadata(body.get("metadata"))
    record, created = registry.register_explicitly(
        ctx.calls,
        ctx.recent_ends,
        call_id=call_id,
        tenant_id=tenant_id,
        default_tenant_id=ctx.settings.tenant_id,
        metadata=metadata,
        now=ctx.now(),
    )
    if created:
        return json_response(record.to_json(), 201, {"Location": call_location(call_id)})
    return json_response(record.to_json(), 200)


def _route_call_id(req: func.HttpRequest) -> str:
    call_id = req.route_params.get("callId")
    if not isinstance(call_id, str) or call_id_problem(call_id) is not None:
        raise CallNotFound("no call is registered with that callId")
    return call_id


@handler
def get_call(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
    record = ctx.calls.get(_route_call_id(req))
    if record is None:
        raise CallNotFound("no call is registered with that callId")
    return json_response(record.to_json())


@handler
def delete_call(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
    registry.unregister(ctx.calls, _route_call_id(req))
    return func.HttpResponse(status_code=204)


@handler
def list_calls(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
    raw_top = req.params.get("top")
    if raw_top is None:
        top = DEFAULT_TOP
    elif _DIGITS.match(raw_top) and 1 <= int(raw_top) <= MAX_TOP:
        top = int(raw_top)
    else:
        raise InvalidRequest(f"top must be an integer from 1 to {MAX_TOP}")
    token = req.params.get("continuationToken")
    if token is not None and not token:
        raise InvalidRequest("continuationToken is not one this API issued")
    records, next_token = ctx.calls.list_page(top, token)
    body: dict[str, Any] = {"value": [record.to_json() for record in records]}
    if next_token is not None:
        body["nextLink"] = f"/api/calls?top={top}&continuationToken={quote(next_token, safe='')}"
    return json_response(body)
