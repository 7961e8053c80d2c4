"""The app's settings: the only module that reads the environment.

`load_settings(environ)` never raises. It applies the contract's defaults and records every bad
setting by name, in groups, so that a broken Graph or tuning setting leaves the HTTP API working (it only
stops the tick: `tick_problems`) while storage problems make the API answer `503 storageUnavailable`
(`storage_problems`). The call-events settings (`CALL_EVENTS_*`) have groups of their own, since the
HTTP API never reads them and a bad one must never drop an event:

- `events_queue_problems` (`CALL_EVENTS_QUEUE_NAME` invalid, or the name of another queue): with a topic
  set, ending a call cannot write its event, so ending stops: the tick does not run (it is among
  `problems()`) and a `terminated` notification answers `503` naming the setting. Without a topic the tick
  runs and logs them. The queue function never consumes a message while they stand (it may be another
  queue's): it fails the invocation, so the message stays where it is.
- `events_topic_problems` (`CALL_EVENTS_TOPIC_ENDPOINT` not an https URL, or neither `CALL_EVENTS_TOPIC_KEY`
  nor `AzureWebJobsStorage__clientId`): ending goes on and puts every event on the events queue (nothing is
  lost); the tick logs them, and the queue function moves each message to `<name>-poison` with an ERROR
  naming them, for an operator to resend once the setting is fixed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from shared.connection_string import StorageSettings, load_storage

DEFAULT_SCHEDULE = "0 */10 * * * *"

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}\Z")
_QUEUE_NAME_RE = re.compile(r"^(?=.{3,63}\Z)[a-z0-9]+(-[a-z0-9]+)*\Z")
_EVENTS_QUEUE_NAME_RE = re.compile(r"^(?=.{3,56}\Z)[a-z0-9]+(-[a-z0-9]+)*\Z")  # `<name>-poison` is a queue name too
POISON_SUFFIX = "-poison"  # the host's name for a queue's poison queue
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
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # what `requests` reads, in its order


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
    events_enabled: bool = False  # CALL_EVENTS_TOPIC_ENDPOINT is set (even when invalid: events are then kept)
    events_topic_endpoint: str | None = None  # the endpoint when it is valid
    events_topic_key: str | None = field(default=None, repr=False)  # CALL_EVENTS_TOPIC_KEY
    events_identity_client_id: str | None = None  # AzureWebJobsStorage__clientId: the Entra identity without a key
    events_queue_name: str = "call-events"
    ca_bundle: tuple[str, str] | None = None  # (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, its value): what requests uses
    ca_bundle_origin: str = "the app settings"  # where that value came from, for the hints (the command line's own)
    storage_problems: tuple[str, ...] = ()
    tuning_problems: tuple[str, ...] = ()
    credential_problems: tuple[str, ...] = ()
    events_queue_problems: tuple[str, ...] = ()
    events_topic_problems: tuple[str, ...] = ()

    @property
    def tick_problems(self) -> tuple[str, ...]:
        """What stops a tick as configured (GRAPH_DRY_RUN): bad Graph or tuning settings, the credential unless this
        is a dry run, and an events queue that ending calls could not write (`problems`)."""
        return self.problems(dry_run=self.dry_run)

    def problems(self, *, dry_run: bool) -> tuple[str, ...]:
        """What stops a tick. A real one also stops on an events queue it could not write ending calls."""
        if dry_run:
            return self.tuning_problems
        return self.tuning_problems + self.credential_problems + self.ending_problems

    @property
    def ending_problems(self) -> tuple[str, ...]:
        """What stops ending a call: a topic is set but its events queue is not usable."""
        return self.events_queue_problems if self.events_enabled else ()

    @property
    def events_problems(self) -> tuple[str, ...]:
        """Every bad CALL_EVENTS_* setting (named; never quoting the endpoint or the key)."""
        return self.events_queue_problems + self.events_topic_problems

    def tls_hint(self) -> str:
        """What to do about a certificate that could not be verified, naming the CA bundle in force and its origin
        (a file path, never a secret)."""
        fix = "point it at the PEM of the CA that signed the server's certificate"
        if self.ca_bundle is None:
            return f"REQUESTS_CA_BUNDLE is not set, so the CA bundle of certifi is used: set it and {fix}"
        name, value = self.ca_bundle
        return f"{name}={value} is in force (from {self.ca_bundle_origin}): {fix}"

    def ca_bundle_problem(self) -> str | None:
        """Why the CA bundle in force cannot be used (a path that is neither a file nor a folder), or None."""
        if self.ca_bundle is None or os.path.exists(self.ca_bundle[1]):
            return None
        name, value = self.ca_bundle
        return f"{name} names {value}, which does not exist (from {self.ca_bundle_origin})"

    @property
    def ended_table_name(self) -> str:
        """Table remembering ended calls for 24 hours: the calls table's name + 'ended' (within 63 characters)."""
        return self.calls_table_name[:58] + "ended"

    @property
    def events_poison_queue_name(self) -> str:
        """Where the host (and the call-events function) puts what cannot be published: `<name>-poison`."""
        return self.events_queue_name + POISON_SUFFIX

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


class _Events(NamedTuple):
    enabled: bool
    endpoint: str | None
    key: str | None
    client_id: str | None
    queue_name: str
    queue_problems: tuple[str, ...]
    topic_problems: tuple[str, ...]


def _load_events(environ: Mapping[str, str], cleanup_queue: str, work_queue: str) -> _Events:
    """The CALL_EVENTS_* settings and their two groups of problems (see the module docstring)."""
    queue = _Reader(environ)
    name = queue.name(
        "CALL_EVENTS_QUEUE_NAME", "call-events", _EVENTS_QUEUE_NAME_RE,
        "3-56 lowercase letters, digits and single hyphens (so that <name>-poison is a queue name too)",
    )  # fmt: skip
    if not queue.problems and name in (cleanup_queue, work_queue):
        other = "CLEANUP_QUEUE_NAME" if name == cleanup_queue else "KEEPALIVE_WORK_QUEUE_NAME"
        queue.problems.append(f"CALL_EVENTS_QUEUE_NAME must differ from {other} (both are {name!r})")
    topic = _Reader(environ)
    raw = topic.get("CALL_EVENTS_TOPIC_ENDPOINT")
    key = topic.get("CALL_EVENTS_TOPIC_KEY")
    client_id = topic.get("AzureWebJobsStorage__clientId")
    endpoint = None
    if raw is not None:
        parts = urlsplit(raw)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            # never quoted: a query could carry the key (Event Grid takes `?aeg-sas-key=`)
            topic.problems.append(
                "CALL_EVENTS_TOPIC_ENDPOINT must be an https URL without a query, such as "
                "https://<topic>.<region>-1.eventgrid.azure.net/api/events"
            )
        else:
            endpoint = raw
        if key is None and client_id is None:
            topic.problems.append(
                "CALL_EVENTS_TOPIC_KEY is not set and neither is AzureWebJobsStorage__clientId: the topic needs "
                "a key or the storage identity (Microsoft Entra ID)"
            )
    return _Events(raw is not None, endpoint, key, client_id, name, tuple(queue.problems), tuple(topic.problems))


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse the app settings. Never raises: problems are collected by name instead."""
    store = _Reader(environ)
    storage = load_storage(store.get, store.problems)
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
    events = _load_events(environ, cleanup_queue, work_queue)
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
        ca_bundle=next(((name, value) for name in CA_BUNDLE_SETTINGS if (value := env.get(name)) is not None), None),
        storage_problems=tuple(store.problems),
        tuning_problems=tuple(env.problems),
        credential_problems=tuple(credential_problems),
        events_enabled=events.enabled,
        events_topic_endpoint=events.endpoint,
        events_topic_key=events.key,
        events_identity_client_id=events.client_id,
        events_queue_name=events.queue_name,
        events_queue_problems=events.queue_problems,
        events_topic_problems=events.topic_problems,
    )


def load_from_environment() -> Settings:
    """The composition root's entry: the process environment."""
    return load_settings(os.environ)
