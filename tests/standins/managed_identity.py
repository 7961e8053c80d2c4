"""The managed-identity endpoint that App Service / Azure Functions gives an app (plain HTTP, as in Azure).

azure-identity 1.27's `ManagedIdentityCredential` picks App Service when `IDENTITY_ENDPOINT` and
`IDENTITY_HEADER` are set (and `IDENTITY_SERVER_THUMBPRINT` is not), and hands the request to MSAL's
`ManagedIdentityClient` (msal/managed_identity.py `_obtain_token_on_app_service`), which sends

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource={scope without /.default}[&client_id=...]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}
    Metadata: true

and expects `{"access_token", "expires_on": "<epoch seconds>", "resource", "token_type", "client_id"}`.
An error is `{"statusCode": n, "message": "..."}` (MSAL turns it into an `invalid_scope` error).
"""

from __future__ import annotations

import secrets
import threading
from collections import deque

from .server import Reply, Request, Service
from .tokens import TokenRegistry

PATH = "/msi/token"


class ManagedIdentityStandin(Service):
    """One App Service managed-identity endpoint with a set of user-assigned identities. Thread-safe."""

    def __init__(self, *, tokens: TokenRegistry, client_ids: tuple[str, ...] = ()) -> None:
        self.tokens = tokens
        self.identity_header = secrets.token_hex(16)
        self._default_client_ids = client_ids
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.client_ids: set[str] = set(self._default_client_ids)
            self.lifetime = 24 * 3600.0
            self.requests: list[Request] = []
            self._failures: deque[Reply] = deque()

    def add_identity(self, client_id: str) -> None:
        with self._lock:
            self.client_ids.add(client_id)

    def fail_next(self, *replies: Reply) -> None:
        with self._lock:
            self._failures.extend(replies)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def endpoint(self, base_url: str) -> str:
        """The value of IDENTITY_ENDPOINT for a server at `base_url`."""
        return base_url + PATH

    def handle(self, request: Request) -> Reply:
        if request.path != PATH:
            return _error(404, "Not found")
        with self._lock:
            self.requests.append(request)
            scripted = self._failures.popleft() if self._failures else None
            client_ids = set(self.client_ids)
            lifetime = self.lifetime
        if scripted is not None:
            return scripted
        if request.method != "GET":
            return _error(405, "Method not allowed")
        if request.header("X-IDENTITY-HEADER") != self.identity_header:
            return _error(401, "Missing or invalid X-IDENTITY-HEADER")
        query = {key: values[-1] for key, values in request.query.items()}
        if query.get("api-version") != "2019-08-01":
            return _error(400, f"Unsupported api-version {query.get('api-version')!r}")
        resource = query.get("resource")
        if not resource:
            return _error(400, "resource is required")
        client_id = query.get("client_id")
        if client_id is None or client_id not in client_ids:
            return _error(
                400,
                "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
            )
        issued = self.tokens.issue(
            tenant=None, client_id=client_id, audience=resource, lifetime=lifetime, jwt_shaped=True
        )
        return Reply(
            200,
            body={
                "access_token": issued.token,
                "expires_on": str(int(issued.expires_at)),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            },
        )


def _error(status: int, message: str) -> Reply:
    return Reply(status, body={"statusCode": status, "message": message, "correlationId": secrets.token_hex(8)})
