"""The token provider's reuse of the token it handed out last (the tick asks for one per keepAlive)."""

from __future__ import annotations

import requests

from shared.settings import load_settings
from shared.tokens import EXPIRY_MARGIN, RECENT_SECONDS, TokenProvider
from tests.fakes import FakeMsalApp

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def provider(app: FakeMsalApp, clock: list[float]) -> TokenProvider:
    settings = load_settings({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s", "GRAPH_DRY_RUN": "false"})
    tokens = TokenProvider(settings, requests.Session(), clock=lambda: clock[0])
    tokens._build_app = lambda tenant: app  # type: ignore[method-assign]
    return tokens


def test_the_last_token_is_handed_out_again_for_a_while_without_asking_msal():
    app, clock = FakeMsalApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    assert {tokens.token(TENANT) for _ in range(100)} == {"token-0"}
    assert app.lookups == 1
    clock[0] += RECENT_SECONDS
    tokens.token(TENANT)
    assert app.lookups == 2


def test_a_token_close_to_expiry_is_not_reused():
    app, clock = FakeMsalApp(expires_in=int(EXPIRY_MARGIN) + 10), [0.0]
    tokens = provider(app, clock)
    tokens.token(TENANT)
    clock[0] += 10
    tokens.token(TENANT)
    assert app.lookups == 2  # reused for 10 s only, then MSAL decides


def test_invalidate_drops_the_reused_token_too():
    app, clock = FakeMsalApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    first = tokens.token(TENANT)
    tokens.invalidate(TENANT, first)
    assert tokens.token(TENANT) == "token-1" and app.lookups == 2
    tokens.invalidate(TENANT, first)  # a stale refusal of the old token drops nothing
    assert tokens.token(TENANT) == "token-1" and app.removed == 1
