"""The app's settings: the only module that reads the environment.

`load_settings(environ)` never raises. It applies the contract's defaults and records every bad
setting by name, in two groups, so that a broken Graph or tuning setting leaves the HTTP API working
(`graph_problems`) while storage problems make the API answer `503 storageUnavailable`
(`storage_problems`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.connection_string import connection_string_problem

DEFAULT_SCHEDULE = "0 */10 * * * *"

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}\Z")
_QUEUE_NAME_RE = re.compile(r"^(?=.{3,63}\Z)[a-z0-9]+(-[a-z0-9]+)*\Z")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True, slots=True)
class Cloud:
    """Endpoints of one national cloud."""

    graph_root: str
    authority_host: str
    token_exchange_audience: str


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("https://graph.microsoft.com", "https://login.microsoftonline.com", "api://AzureADTokenExchange"),
    "usgov": Cloud("https://graph.microsoft.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
    "usgovdod": Cloud(
        "https://dod-graph.microsoft.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"
    ),
}
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.microsoft.com", "login.windows.net"}
)
CREDENTIAL_SETTINGS = ("GRAPH_CLIENT_SECRET", "GRAPH_CLIENT_CERTIFICATE_PATH", "GRAPH_MANAGED_IDENTITY_CLIENT_ID")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the app's table and queues live: a connection string, or service URIs and an identity."""

    connection_string: str | None = field(default=None, repr=False)
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the contract, parsed, with the problems found while parsing."""

    storage: StorageSettings | None = None
    calls_table_name: str = "activecalls"
    cleanup_queue_name: str = "call-cleanup"
    work_queue_name: str = "keepalive-work"
    concurrency: int = 64
    request_timeout: float = 10.0
    at_risk_minutes: int = 30
    fanout_threshold: int = 5000
    tenant_rate: int = 1000
    schedule: str = DEFAULT_SCHEDULE  # KEEPALIVE_SCHEDULE as the host reads it (the host resolves and checks it)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: str | None = None
    managed_identity_client_id: str | None = None
    cloud: str = "global"
    graph_base_url: str = CLOUDS["global"].graph_root
    authority_host: str = CLOUDS["global"].authority_host
    dry_run: bool = False
    notification_openid_url: str = "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
    appinsights_connection_string: str | None = field(default=None, repr=False)  # APPLICATIONINSIGHTS_CONNECTION_STRING
    appinsights_authentication_string: str | None = None  # APPLICATIONINSIGHTS_AUTHENTICATION_STRING
    worker_telemetry: bool = False  # PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: the worker sets up the distro
    storage_problems: tuple[str, ...] = ()
    tuning_problems: tuple[str, ...] = ()
    credential_problems: tuple[str, ...] = ()

    @property
    def graph_problems(self) -> tuple[str, ...]:
        """What stops a tick: bad Graph or tuning settings, and the credential unless this is a dry run."""
        return self.problems(dry_run=self.dry_run)

    def problems(self, *, dry_run: bool) -> tuple[str, ...]:
        return self.tuning_problems + (() if dry_run else self.credential_problems)

    @property
    def ended_table_name(self) -> str:
        """Table remembering ended calls for 24 hours: the calls table's name + 'ended' (within 63 characters)."""
        return self.calls_table_name[:58] + "ended"

    @property
    def token_exchange_audience(self) -> str:
        return CLOUDS[self.cloud].token_exchange_audience

    @property
    def instance_discovery(self) -> bool:
        """MSAL instance discovery only makes sense against Microsoft's own authority hosts."""
        return (urlsplit(self.authority_host).hostname or "") in MICROSOFT_AUTHORITY_HOSTS


class _Reader:
    """Reads one environment mapping, treating empty values as unset and collecting problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def integer(self, name: str, default: int, low: int, high: int | None) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer {span} (got {raw!r})")
            return default
        if value < low or (high is not None and value > high):
            self.problems.append(f"{name} must be an integer {span} (got {value})")
            return default
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also rejects NaN
            self.problems.append(f"{name} must be a number from {low:g} to {high:g} (got {raw!r})")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self.problems.append(f"{name} must be true or false (got {raw!r})")
        return default

    def url(self, name: str, default: str) -> str:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            parts = urlsplit(raw)
            usable = parts.scheme in ("https", "http") and bool(parts.hostname)
        except ValueError:  # "https://[x": a bracketed host that is no IP address
            usable, parts = False, None
        if not usable:  # a query, fragment or user info may hold a secret: then the value is not quoted
            plain = parts is not None and not (parts.query or parts.fragment or "@" in parts.netloc)
            shown = f"got {raw!r}" if plain else "the value is not quoted: it may hold a secret"
            self.problems.append(f"{name} must be an absolute http(s) URL ({shown})")
            return default
        return raw.rstrip("/")

    def guid(self, name: str) -> str | None:
        raw = self.get(name)
        if raw is not None and not GUID_RE.match(raw):
            self.problems.append(f"{name} must be a GUID (got {raw!r})")
            return None
        return raw.lower() if raw else None

    def name(self, name: str, default: str, pattern: re.Pattern[str], rule: str) -> str:
        raw = self.get(name)
        if raw is None:
            return default
        if not pattern.match(raw):
            self.problems.append(f"{name} must be {rule} (got {raw!r})")
            return default
        return raw


def _service_uri_problem(uri: str | None) -> str | None:
    """What is wrong with a storage service URI, said without quoting it (a query may hold a SAS `sig=`)."""
    if uri is None:
        return "is not set (with identity-based storage both service URIs are needed)"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:  # a bracketed host that is no IP address, and the like
        return "must be an https URL (the value cannot be read as a URL; it is not quoted here)"
    if parts.scheme != "https":
        return "must be an https URL (the value set does not start with https://; it is not quoted here)"
    if not host:
        return "must be an https URL (the value set names no host; it is not quoted here)"
    return None


def _load_storage(env: _Reader) -> StorageSettings | None:
    connection_string = env.get("AzureWebJobsStorage")
    if connection_string is not None:
        problem = connection_string_problem(connection_string)
        if problem is not None:
            env.problems.append(problem)
            return None
        return StorageSettings(connection_string=connection_string)
    account = env.get("AzureWebJobsStorage__accountName")
    table_uri = env.get("AzureWebJobsStorage__tableServiceUri")
    queue_uri = env.get("AzureWebJobsStorage__queueServiceUri")
    if account is not None:
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    if table_uri is None and queue_uri is None:
        env.problems.append(
            "AzureWebJobsStorage is not set (a connection string, or AzureWebJobsStorage__tableServiceUri "
            "and AzureWebJobsStorage__queueServiceUri with an identity)"
        )
        return None
    for setting, uri in (("tableServiceUri", table_uri), ("queueServiceUri", queue_uri)):
        problem = _service_uri_problem(uri)
        if problem is not None:
            env.problems.append(f"AzureWebJobsStorage__{setting} {problem}")
            return None
    credential = env.get("AzureWebJobsStorage__credential")
    if credential is not None and credential.lower() != "managedidentity":
        env.problems.append("AzureWebJobsStorage__credential must be 'managedidentity' (the value set is another)")
        return None
    return StorageSettings(
        table_service_uri=table_uri.rstrip("/") if table_uri else None,
        queue_service_uri=queue_uri.rstrip("/") if queue_uri else None,
        credential=credential.lower() if credential else None,
        client_id=env.get("AzureWebJobsStorage__clientId"),
    )


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse the app settings. Never raises: problems are collected by name instead."""
    store = _Reader(environ)
    storage = _load_storage(store)
    table = store.name(
        "CALLS_TABLE_NAME", "activecalls", _TABLE_NAME_RE, "3-63 letters or digits, starting with a letter"
    )
    rule = "3-63 lowercase letters, digits and single hyphens"
    cleanup_queue = store.name("CLEANUP_QUEUE_NAME", "call-cleanup", _QUEUE_NAME_RE, rule)
    work_queue = store.name("KEEPALIVE_WORK_QUEUE_NAME", "keepalive-work", _QUEUE_NAME_RE, rule)

    env = _Reader(environ)
    cloud = (env.get("GRAPH_CLOUD") or "global").lower()
    if cloud not in CLOUDS:
        env.problems.append(f"GRAPH_CLOUD must be one of {', '.join(CLOUDS)} (got {cloud!r})")
        cloud = "global"
    dry_run = env.boolean("GRAPH_DRY_RUN", False)
    credential_problems = []
    credentials = [name for name in CREDENTIAL_SETTINGS if env.get(name) is not None]
    if len(credentials) != 1:
        found = f"{', '.join(credentials)} are all set" if credentials else "none is set"
        credential_problems.append(f"exactly one of {', '.join(CREDENTIAL_SETTINGS)} must be set ({found})")
    client_id = env.get("GRAPH_CLIENT_ID")
    if client_id is None:
        credential_problems.append("GRAPH_CLIENT_ID is not set (the bot's app registration)")

    return Settings(
        storage=storage,
        calls_table_name=table,
        cleanup_queue_name=cleanup_queue,
        work_queue_name=work_queue,
        concurrency=env.integer("KEEPALIVE_CONCURRENCY", 64, 1, 256),
        request_timeout=env.number("KEEPALIVE_REQUEST_TIMEOUT", 10.0, 0.1, 300.0),
        at_risk_minutes=env.integer("KEEPALIVE_AT_RISK_MINUTES", 30, 1, 44),
        fanout_threshold=env.integer("KEEPALIVE_FANOUT_THRESHOLD", 5000, 1, None),
        tenant_rate=env.integer("KEEPALIVE_TENANT_RATE", 1000, 1, 3000),
        schedule=env.get("KEEPALIVE_SCHEDULE") or DEFAULT_SCHEDULE,
        tenant_id=env.guid("GRAPH_TENANT_ID"),
        client_id=client_id,
        client_secret=env.get("GRAPH_CLIENT_SECRET"),
        certificate_path=env.get("GRAPH_CLIENT_CERTIFICATE_PATH"),
        managed_identity_client_id=env.get("GRAPH_MANAGED_IDENTITY_CLIENT_ID"),
        cloud=cloud,
        graph_base_url=env.url("GRAPH_BASE_URL", CLOUDS[cloud].graph_root),
        authority_host=env.url("GRAPH_AUTHORITY_HOST", CLOUDS[cloud].authority_host),
        dry_run=dry_run,
        notification_openid_url=env.url(
            "GRAPH_NOTIFICATION_OPENID_URL", "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
        ),
        appinsights_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        appinsights_authentication_string=env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
        worker_telemetry=(env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY") or "").lower() == "true",
        storage_problems=tuple(store.problems),
        tuning_problems=tuple(env.problems),
        credential_problems=tuple(credential_problems),
    )


def load_from_environment() -> Settings:
    """The composition root's entry: the process environment."""
    return load_settings(os.environ)
