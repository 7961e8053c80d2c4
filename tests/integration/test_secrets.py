"""Secrets hygiene and authentication, against real Azurite, MSAL and the stand-ins.

A full tick (every outcome of the contract's table, a token refresh after 401, a refused credential)
and an API session (every route, good and bad input, notifications with Graph's token) run with every
logger at DEBUG (ours, azure.core, urllib3, msal, requests). Afterwards no log record (message,
arguments, formatted exception), no answer body, no table entity and no queue message holds the
client secret, a bearer token the identity stand-in issued, a notification token or the function key.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared import context as context_module
from shared.context import Context
from shared.keepalive import run_tick
from tests.azurite import drain_events
from tests.conftest import ContextFactory
from tests.fakes import FakeClock
from tests.host import FunctionHost
from tests.standins.fixtures import Standins
from tests.standins.openid import OpenIdStandin
from tests.standins.server import RESET, Reply

pytestmark = pytest.mark.integration

LOGGERS = ("", "shared", "azure", "azure.core", "azure.core.pipeline.policies.http_logging_policy", "urllib3",
           "msal", "requests", "tests.standins")  # fmt: skip
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
_FORMATTER = logging.Formatter("%(levelname)s %(name)s %(message)s")


def record_texts(records: list[logging.LogRecord]) -> Iterator[str]:
    """Everything of a log record a handler could write: message, arguments, exception and stack text."""
    for record in records:
        yield record.getMessage()
        yield repr(record.args)
        yield str(record.msg)
        yield _FORMATTER.format(record)  # formats and keeps exc_text
        if record.exc_text:
            yield record.exc_text
        if record.stack_info:
            yield record.stack_info


def leaks(texts: list[str], secrets: dict[str, str]) -> list[str]:
    found = []
    for name, secret in secrets.items():
        for text in texts:
            if secret in text:
                at = text.index(secret)
                found.append(f"{name} in {text[max(0, at - 80) : at + 20]!r}")
                break
    return found


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG for the root logger and every library logger the app's requests go through."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    yield caplog


def test_a_full_tick_and_an_api_session_at_debug_leave_no_secret_anywhere(
    make_context: ContextFactory,
    standins: Standins,
    openid: OpenIdStandin,
    host: FunctionHost,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    client_secret = f"CANARY-client-secret-{uuid.uuid4().hex}~Zq7"
    function_key = f"CANARY-function-key-{uuid.uuid4().hex}"
    standins.identity.configure(client_secret=client_secret)
    clock = FakeClock()
    ctx = make_context(
        graph=True,
        now=clock,
        GRAPH_CLIENT_SECRET=client_secret,
        KEEPALIVE_REQUEST_TIMEOUT="0.5",
        GRAPH_NOTIFICATION_OPENID_URL=openid.config_url,
    )
    previous = context_module.install(ctx)
    bodies: list[str] = []
    notification_tokens: list[str] = []

    statuses: list[int] = []

    def api(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        response = host.request(method, path, body=body, headers=headers, function_key=function_key)
        statuses.append(response.status_code)
        bodies.append(response.get_body().decode("utf-8", "replace"))
        bodies.append(json.dumps(dict(response.headers)))
        return response

    def notify(*items: dict[str, Any], tenant: str = standins.tenant, authorization: str | None = None) -> None:
        token = openid.sign(openid.claims(audience=standins.client_id, tenant=tenant))
        notification_tokens.append(token)
        api("POST", "/api/notifications", {"value": list(items)}, {"Authorization": authorization or f"Bearer {token}"})

    try:
        # --- the API session: every route, good and bad input --------------------------------------
        for call_id in ("ok", "gone", "storm", "reset", "forbidden", "refused", "removed", "other-tenant"):
            api("POST", "/api/calls", {"callId": call_id, "metadata": {"bot": "echo"}})
        api("POST", "/api/calls", {"callId": "other-tenant", "tenantId": OTHER_TENANT})  # 409
        api("POST", "/api/calls", b"{not json")
        api("POST", "/api/calls", {"callId": "bad id"})
        api("POST", "/api/calls", {"callId": "c", "tenantId": "nope"})
        api("GET", "/api/calls/ok")
        api("GET", "/api/calls/missing")
        api("GET", "/api/calls?top=2")
        api("GET", "/api/calls?top=0")
        api("GET", "/api/calls?continuationToken=forged")
        api("DELETE", "/api/calls/removed")
        api("DELETE", "/api/calls/removed")
        established = {"@odata.type": "#microsoft.graph.call", "state": "established"}
        notify({"changeType": "created", "resourceUrl": "/communications/calls/noted", "resourceData": established})
        forged = f"CANARY-not-a-jwt-{uuid.uuid4().hex}"
        notification_tokens.append(forged)
        notify({"changeType": "created", "resourceUrl": "/communications/calls/x", "resourceData": established},
               authorization=f"Bearer {forged}")  # fmt: skip
        assert statuses == [201] * 8 + [409, 400, 400, 400, 200, 404, 200, 400, 400, 204, 404, 202, 401], statuses

        # --- a full tick: every outcome, then a refresh after 401, then a refused credential ---------
        standins.graph.script("gone", 404)
        standins.graph.script("storm", 503, Reply(429, {"Retry-After": "1"}), 500, 502)
        standins.graph.script("reset", RESET, RESET, Reply(200, delay=1.0), RESET)
        standins.graph.script("forbidden", tenant=OTHER_TENANT)  # Graph answers 403: another tenant's call
        standins.graph.script("refused", 400)
        first = run_tick(ctx)
        assert (first.ended, first.failed) == (1, 4) and first.succeeded >= 3

        standins.identity.revoke_all()  # Graph answers 401: the app drops its token and takes a fresh one
        clock.advance(minutes=10)
        second = run_tick(ctx)
        assert second.succeeded >= 3

        standins.identity.revoke_all()
        standins.identity.configure(client_secret="rotated-" + uuid.uuid4().hex)  # our secret is now refused
        clock.advance(minutes=10)
        third = run_tick(ctx)
        assert third.succeeded == 0 and third.failed == third.calls
        api("GET", "/api/calls?top=100")
        events = drain_events(ctx)
        entities = [dict(entity) for entity in ctx.storage.table_client().list_entities()]
    finally:
        context_module.install(previous)

    bearer_tokens = {sent.header("Authorization") or "" for sent in standins.graph.requests}
    issued = [token for token in standins.identity.tokens._tokens]  # every token the identity stand-in issued
    assert len(issued) >= 2 and all(token.startswith("standin-") for token in issued)
    assert {value.removeprefix("Bearer ") for value in bearer_tokens if value} <= set(issued)
    secrets = {
        "GRAPH_CLIENT_SECRET": client_secret,
        "function key": function_key,
        **{f"bearer token {i}": token for i, token in enumerate(issued)},
        **{f"notification token {i}": token for i, token in enumerate(notification_tokens)},
        **{
            f"notification token signature {i}": token.rsplit(".", 1)[-1] for i, token in enumerate(notification_tokens)
        },
    }
    records = debug_logs.records
    assert len(records) > 100  # DEBUG really was on: urllib3, msal, azure.core and ours all logged
    logged_by = {record.name.split(".")[0] for record in records}
    assert {"shared", "urllib3", "msal", "azure"} <= logged_by, logged_by
    assert any(record.getMessage().startswith("graph token failed") for record in records)  # the refused secret
    in_logs = leaks(list(record_texts(records)), secrets)
    assert not in_logs, in_logs
    in_bodies = leaks(bodies, secrets)
    assert not in_bodies, in_bodies
    in_storage = leaks([json.dumps(e) for e in events] + [json.dumps(e, default=str) for e in entities], secrets)
    assert not in_storage, in_storage


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/calls"), ("GET", "/api/calls"), ("GET", "/api/calls/x"), ("DELETE", "/api/calls/x"),
     ("POST", "/api/notifications")],
)  # fmt: skip
def test_no_endpoint_answers_without_a_function_key(host: FunctionHost, ctx: Context, method: str, path: str) -> None:
    """authLevel FUNCTION on every HTTP function: without a key the host answers 401 and the app is not reached."""
    table = ctx.storage.table()
    response = host.request(method, path, body=b'{"callId": "anonymous"}', function_key=None)
    assert response.status_code == 401
    assert list(table.list_entities()) == []
