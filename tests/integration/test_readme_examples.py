"""The README's Python forwarding example, run as written: an aiohttp bot that receives Graph's notification and
forwards it to callkeeper, here the HTTP functions served over real HTTP on 127.0.0.1 (FunctionHost's WSGI
adapter under wsgiref), on Azurite, with a token of the OpenID stand-in."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.context import Context
from tests.azurite import drain_events
from tests.conftest import ContextFactory
from tests.host import FunctionHost
from tests.integration.cli_harness import ROOT
from tests.standins.openid import OpenIdStandin

pytestmark = pytest.mark.integration

CLIENT_ID = "00000000-0000-0000-0000-0000000c0de1"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
KEY = "function-key-of-the-bot"


def readme_block(after: str, language: str) -> str:
    """The first ```language block of README.md after the line holding `after`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rest = text[text.index(after) :]
    match = re.search(rf"^```{language}\n(.*?)^```$", rest, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def callkeeper(
    make_context: ContextFactory, host: FunctionHost, openid: OpenIdStandin
) -> Iterator[tuple[str, Context]]:
    """callkeeper's functions over HTTP on a free port of 127.0.0.1; its URL and context."""
    ctx = make_context(install=True, GRAPH_CLIENT_ID=CLIENT_ID, GRAPH_NOTIFICATION_OPENID_URL=openid.config_url)
    server: WSGIServer = make_server("127.0.0.1", 0, host.wsgi, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="callkeeper-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", ctx
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_python_forwarding_example_registers_and_ends_a_call_through_callkeeper(
    callkeeper: tuple[str, Context], openid: OpenIdStandin, monkeypatch: pytest.MonkeyPatch
):
    base, ctx = callkeeper
    monkeypatch.setenv("CALLKEEPER_URL", base + "/api/notifications")
    monkeypatch.setenv("CALLKEEPER_FUNCTION_KEY", KEY)
    handled: list[bytes] = []

    async def handle_notification(request: web.Request, body: bytes) -> web.Response:  # the bot's own processing
        handled.append(body)
        return web.Response(status=202)

    bot: dict[str, Any] = {"__name__": "readme_bot", "handle_notification": handle_notification}
    exec(compile(readme_block("The same in a Python bot on [aiohttp]", "python"), "README.md", "exec"), bot)
    token = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))

    def notification(state: str) -> bytes:
        resource = {"@odata.type": "#microsoft.graph.call", "state": state}
        item = {"changeType": "updated", "resourceUrl": "/communications/calls/call-1", "resourceData": resource}
        return json.dumps({"value": [item]}).encode()

    async def graph_posts_twice() -> None:
        async with TestClient(TestServer(bot["app"], host="127.0.0.1")) as client:
            headers = {"Authorization": "Bearer " + token}
            answer = await client.post("/api/calling", data=notification("established"), headers=headers)
            assert answer.status == 202
            record = ctx.calls.get("call-1")
            assert record is not None and record.tenant_id == TENANT  # callkeeper got the copy, with Graph's token

            answer = await client.post("/api/calling", data=notification("terminated"), headers=headers)
            assert answer.status == 202
            assert ctx.calls.get("call-1") is None  # ended, with its event on the cleanup queue

    asyncio.run(graph_posts_twice())
    [event] = drain_events(ctx)
    assert (event["callId"], event["reason"]) == ("call-1", "terminatedNotification")
    assert handled == [notification("established"), notification("terminated")]  # the bot saw both, unchanged
