"""The token provider's invalidation: many refusals of one token cause one refresh."""

from __future__ import annotations

import requests

from shared.settings import load_settings
from shared.tokens import TokenProvider

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class FakeApp:
    """Stands in for the MSAL app the provider builds per tenant: counts cache lookups."""

    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in
        self.lookups = 0
        self.removed = 0

    def acquire_token_for_client(self, scopes):
        self.lookups += 1
        return {"access_token": f"token-{self.removed}", "expires_in": self.expires_in, "token_source": "cache"}

    def remove_tokens_for_client(self):
        self.removed += 1


def provider(app: FakeApp, clock: list[float]) -> TokenProvider:
    settings = load_settings({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s", "GRAPH_DRY_RUN": "false"})
    tokens = TokenProvider(settings, requests.Session(), clock=lambda: clock[0])
    tokens._build_app = lambda tenant: app  # type: ignore[method-assign]
    return tokens


def test_invalidate_drops_the_token_once_for_many_refusals_of_it():
    app, clock = FakeApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    first = tokens.token(TENANT)
    tokens.invalidate(TENANT, first)
    assert tokens.token(TENANT) == "token-1" and app.lookups == 2
    tokens.invalidate(TENANT, first)  # a stale refusal of the old token drops nothing
    assert tokens.token(TENANT) == "token-1" and app.removed == 1
