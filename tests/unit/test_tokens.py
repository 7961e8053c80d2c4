"""The token provider's invalidation: many refusals of one token cause one refresh."""

from __future__ import annotations

import requests

from shared.settings import load_settings
from shared.tokens import TokenProvider
from tests.fakes import FakeMsalApp

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def provider(app: FakeMsalApp, clock: list[float]) -> TokenProvider:
    settings = load_settings({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s", "GRAPH_DRY_RUN": "false"})
    tokens = TokenProvider(settings, requests.Session(), clock=lambda: clock[0])
    tokens._build_app = lambda tenant: app  # type: ignore[method-assign]
    return tokens


def test_invalidate_drops_the_token_once_for_many_refusals_of_it():
    app, clock = FakeMsalApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    first = tokens.token(TENANT)
    tokens.invalidate(TENANT, first)
    assert tokens.token(TENANT) == "token-1" and app.lookups == 2
    tokens.invalidate(TENANT, first)  # a stale refusal of the old token drops nothing
    assert tokens.token(TENANT) == "token-1" and app.removed == 1
