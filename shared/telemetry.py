"""Application Insights through the Azure Monitor OpenTelemetry distro, and the custom dimensions we log.

The Functions host forwards a log record's text but drops its `extra=` fields. The distro exports the
records of the `shared` loggers itself, with those fields as `customDimensions`, so an operator can
query failures and at-risk calls by callId, tenant and status (see docs/observability.md).

- `configure_telemetry(settings)`: once per process, from `get_context()`; only when
  `APPLICATIONINSIGHTS_CONNECTION_STRING` is set and the worker does not set the distro up itself
  (`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`). Never at import time; a failure is logged, not raised.
- `parse_authentication_string`: `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (`Authorization=AAD;ClientId=…`),
  for an Application Insights resource with local authentication off (Entra ID only).
- `summary_fields`, `call_fields`: the `extra=` of the tick's summary and of per-call warnings. The
  `key=value` message text stays as it is, for hosts without the distro.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import InvalidAuthenticationString
from shared.logsafe import get_logger
from shared.settings import GUID_RE, Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = get_logger(__name__)

LOGGER_NAME = "shared"  # the app's own loggers; the SDKs' chatter stays out of Application Insights
AUTHENTICATION_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
# The distro's instrumentations we keep: Graph and token requests (sampled by the distro's default
# rate-limited sampler). Storage SDK spans would be one per table operation: off.
INSTRUMENTATION_OPTIONS: dict[str, dict[str, bool]] = {
    "azure_sdk": {"enabled": False},
    "django": {"enabled": False},
    "fastapi": {"enabled": False},
    "flask": {"enabled": False},
    "psycopg2": {"enabled": False},
    "urllib": {"enabled": False},
    "urllib3": {"enabled": False},
    "requests": {"enabled": True},
}


@dataclass(frozen=True, slots=True)
class EntraAuthentication:
    """Send telemetry with a managed identity token: user-assigned when `client_id` is set, else system-assigned."""

    client_id: str | None = None


def parse_authentication_string(value: str | None) -> EntraAuthentication | None:
    """`Authorization=AAD;ClientId=<guid>` → EntraAuthentication; None or empty → None (key-based ingestion).

    Keys and `AAD` are compared case-insensitively; empty segments (a trailing `;`) are ignored.
    Anything else raises `InvalidAuthenticationString`.
    """
    if value is None or not value.strip():
        return None
    pairs: dict[str, str] = {}
    for segment in value.split(";"):
        if not segment.strip():
            continue
        key, sep, item = segment.partition("=")
        key, item = key.strip().lower(), item.strip()
        if not sep or not key or not item or key in pairs:
            raise InvalidAuthenticationString(f"{AUTHENTICATION_SETTING} has a malformed part {segment.strip()!r}")
        pairs[key] = item
    unknown = set(pairs) - {"authorization", "clientid"}
    if unknown:
        raise InvalidAuthenticationString(f"{AUTHENTICATION_SETTING} has unknown keys: {', '.join(sorted(unknown))}")
    if pairs.get("authorization", "").upper() != "AAD":
        raise InvalidAuthenticationString(f"{AUTHENTICATION_SETTING} must start with Authorization=AAD")
    client_id = pairs.get("clientid")
    if client_id is not None and not GUID_RE.match(client_id):
        raise InvalidAuthenticationString(f"{AUTHENTICATION_SETTING} ClientId must be a GUID (got {client_id!r})")
    return EntraAuthentication(client_id=client_id.lower() if client_id else None)


def _managed_identity(client_id: str | None) -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def telemetry_options(
    settings: Settings,
    credential_factory: Callable[[str | None], TokenCredential] = _managed_identity,
) -> dict[str, Any] | None:
    """The keyword arguments of `configure_azure_monitor`, or None when this process should not configure it.

    Raises `InvalidAuthenticationString`.
    """
    if settings.appinsights_connection_string is None or settings.worker_telemetry:
        return None
    options: dict[str, Any] = {
        "connection_string": settings.appinsights_connection_string,
        "logger_name": LOGGER_NAME,
        "instrumentation_options": INSTRUMENTATION_OPTIONS,
        "enable_live_metrics": False,  # the host's own Application Insights integration shows live metrics
    }
    authentication = parse_authentication_string(settings.appinsights_authentication_string)
    if authentication is not None:
        options["credential"] = credential_factory(authentication.client_id)
    return options


def _configure_azure_monitor(**options: Any) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor  # heavy, and touches the environment

    configure_azure_monitor(**options)


class Telemetry:
    """Configures the distro at most once for the life of the process (thread-safe)."""

    def __init__(
        self,
        configure: Callable[..., None] = _configure_azure_monitor,
        credential_factory: Callable[[str | None], TokenCredential] = _managed_identity,
    ) -> None:
        self._configure = configure
        self._credential_factory = credential_factory
        self._lock = threading.Lock()
        self._decided = False
        self.enabled = False

    def configure(self, settings: Settings) -> bool:
        """Set the distro up if the settings ask for it; True when telemetry is exported. Never raises."""
        with self._lock:
            if self._decided:
                return self.enabled
            self._decided = True  # one attempt per process: a bad setting is logged once, not per invocation
            if settings.worker_telemetry and settings.appinsights_connection_string is not None:
                logger.info("telemetry configured by the Python worker (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY)")
            try:
                options = telemetry_options(settings, self._credential_factory)
            except InvalidAuthenticationString as error:
                logger.error("telemetry not configured: %s", error)
                return False
            if options is None:
                return False
            try:
                self._configure(**options)
            except Exception as error:  # a telemetry fault must never stop the app
                logger.error("telemetry not configured: configure_azure_monitor failed error=%s", type(error).__name__)
                return False
            self.enabled = True
            logger.info("telemetry configured exporter=azure-monitor entra=%s", "credential" in options)
            return True


_telemetry = Telemetry()


def configure_telemetry(settings: Settings) -> bool:
    """The process's telemetry: configured on the first call (from `get_context()`), a no-op after."""
    return _telemetry.configure(settings)


# --- custom dimensions ------------------------------------------------------------------------
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _dimensions(values: dict[str, Any]) -> dict[str, Any]:
    """Only values OpenTelemetry takes as attributes; None is left out."""
    return {key: value for key, value in values.items() if isinstance(value, str | bool | int | float)}


def tick_outcome(summary: Any) -> str:
    """`incomplete` (the table could not be read to the end), `failures` (some calls failed) or `ok`."""
    if not getattr(summary, "complete", True):
        return "incomplete"
    return "failures" if getattr(summary, "failed", 0) else "ok"


def summary_fields(summary: Any) -> dict[str, Any]:
    """The custom dimensions of the `keepalive tick` record: every field of a `TickSummary`, camelCase.

    `event=keepaliveTick` and `outcome` are added; `seconds` is rounded to the millisecond.
    """
    values: dict[str, Any] = {"event": "keepaliveTick"}
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        values.update({_camel(f.name): getattr(summary, f.name) for f in dataclasses.fields(summary)})
    if isinstance(values.get("seconds"), float):
        values["seconds"] = round(values["seconds"], 3)
    values["outcome"] = tick_outcome(summary)
    return _dimensions(values)


def call_fields(
    event: str,
    *,
    call_id: str,
    tenant_id: str | None,
    outcome: str,
    status: int | None = None,
    error: str | None = None,
    attempts: int | None = None,
    retries: int | None = None,
    consecutive_failures: int | None = None,
    seconds: float | None = None,
    last_success: str | None = None,
    minutes: int | None = None,
) -> dict[str, Any]:
    """The custom dimensions of a per-call record (`keepaliveFailed`, `keepaliveAtRisk`, …); None fields left out."""
    return _dimensions(
        {
            "event": event,
            "callId": call_id,
            "tenantId": tenant_id,
            "outcome": outcome,
            "status": status,
            "error": error,
            "attempts": attempts,
            "retries": retries,
            "consecutiveFailures": consecutive_failures,
            "seconds": round(seconds, 3) if seconds is not None else None,
            "lastSuccess": last_success,
            "minutes": minutes,
        }
    )
