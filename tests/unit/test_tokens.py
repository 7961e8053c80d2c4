"""The token provider's reuse of the token it handed out last (the tick asks for one per keepAlive)."""

from __future__ import annotations

import requests

from shared.settings import load_settings
from shared.tokens import EXPIRY_MARGIN, RECENT_SECONDS, TokenProvider

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


def test_the_last_token_is_handed_out_again_for_a_while_without_asking_msal():
    app, clock = FakeApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    assert {tokens.token(TENANT) for _ in range(100)} == {"token-0"}
    assert app.lookups == 1
    clock[0] += RECENT_SECONDS
    tokens.token(TENANT)
    assert app.lookups == 2


def test_a_token_close_to_expiry_is_not_reused():
    app, clock = FakeApp(expires_in=int(EXPIRY_MARGIN) + 10), [0.0]
    tokens = provider(app, clock)
    tokens.token(TENANT)
    clock[0] += 10
    tokens.token(TENANT)
    assert app.lookups == 2  # reused for 10 s only, then MSAL decides


def test_invalidate_drops_the_reused_token_too():
    app, clock = FakeApp(expires_in=3599), [0.0]
    tokens = provider(app, clock)
    first = tokens.token(TENANT)
    tokens.invalidate(TENANT, first)
    assert tokens.token(TENANT) == "token-1" and app.lookups == 2
    tokens.invalidate(TENANT, first)  # a stale refusal of the old token drops nothing
    assert tokens.token(TENANT) == "token-1" and app.removed == 1
