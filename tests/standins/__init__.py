"""Local stand-ins for the services the app talks to, served on 127.0.0.1 for the integration tests.

- `tls`: a trustme CA, a server certificate for 127.0.0.1/localhost and a CA bundle file (one per test session).
- `server`: a threaded HTTP(S) server with keep-alive, started on a free port in a thread.
- `identity`: Microsoft Entra ID (OpenID configuration and the client-credentials token endpoint).
- `graph`: Microsoft Graph's `POST /v1.0/communications/calls/{id}/keepAlive`, scriptable per call.
- `managed_identity`: the App Service / Functions managed-identity endpoint (`IDENTITY_ENDPOINT`).
- `fixtures`: pytest fixtures that start them once per session (on one CA) and reset them for each test.
"""
