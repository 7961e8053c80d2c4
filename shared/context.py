"""The composition root: settings and clients, built once per worker process and handed to the handlers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from datetime import datetime

import requests
from azure.core.credentials import AzureKeyCredential, TokenCredential

from shared import topic as topic_module
from shared.errors import SettingsError
from shared.graph import GraphClient, build_session
from shared.models import utc_now
from shared.ratelimit import RateLimiter
from shared.settings import Settings, load_from_environment
from shared.signing_keys import NotificationKeys
from shared.storage import (
    AzureRows,
    CallEventsQueue,
    Calls,
    CallsTable,
    CleanupQueue,
    EndMemory,
    EventQueue,
    KeepaliveWorkQueue,
    PoisonQueue,
    RecentEnds,
    RequestHook,
    Storage,
    Stores,
    WorkQueue,
)
from shared.telemetry import configure_telemetry
from shared.tokens import TokenProvider


@dataclass
class Context:
    """Everything a handler or a tick needs. Building one does no I/O."""

    settings: Settings
    now: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    pace_clock: Callable[[], float] = time.monotonic  # the rate limiter's clock and sleep (tests inject a fake pair)
    pace_sleep: Callable[[float], None] = time.sleep
    on_storage_request: RequestHook | None = None  # told of each storage request (benchmarks and tests count them)
    topic_credential: AzureKeyCredential | TokenCredential | None = None  # the topic's; None: from the settings
    stores: InitVar[Stores | None] = None  # the engine's tables and queues; None: Azure's, from the settings
    storage: Storage = field(init=False)  # the clients themselves (the tick's preflight, the poison queue, tests)
    calls: Calls = field(init=False)
    cleanup: EventQueue = field(init=False)
    call_events: EventQueue | None = field(init=False)  # None without CALL_EVENTS_TOPIC_ENDPOINT: nothing written
    recent_ends: EndMemory = field(init=False)
    work_queue: WorkQueue = field(init=False)
    prepare_storage: Callable[[bool], None] = field(init=False)  # `Stores.prepare`: before a sweep
    poison: PoisonQueue = field(init=False)  # <CALL_EVENTS_QUEUE_NAME>-poison
    _notification_keys: NotificationKeys | None = field(init=False, default=None, repr=False)
    _notification_keys_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _session: requests.Session | None = field(init=False, default=None, repr=False)
    _tokens: TokenProvider | None = field(init=False, default=None, repr=False)
    _graph: GraphClient | None = field(init=False, default=None, repr=False)
    _limiter: RateLimiter | None = field(init=False, default=None, repr=False)
    _topic: topic_module.Topic | None = field(init=False, default=None, repr=False)

    def __post_init__(self, stores: Stores | None) -> None:
        settings = self.settings
        self.storage = Storage(settings, self.on_storage_request)
        if stores is None:
            stores = Stores(
                calls=CallsTable(AzureRows(self.storage)),
                cleanup=CleanupQueue(self.storage, settings.cleanup_queue_name),
                call_events=CallEventsQueue(self.storage, settings) if settings.events_enabled else None,
                recent_ends=RecentEnds(self.storage, settings.ended_table_name),
                work=KeepaliveWorkQueue(self.storage, settings.work_queue_name),
                prepare=self._prepare,
            )
        self.calls, self.cleanup, self.call_events = stores.calls, stores.cleanup, stores.call_events
        self.recent_ends, self.work_queue, self.prepare_storage = stores.recent_ends, stores.work, stores.prepare
        self.poison = PoisonQueue(self.storage, settings.events_poison_queue_name, settings.events_queue_name)

    def _prepare(self, writes: bool) -> None:
        """The calls table (and with `writes` the cleanup queue), created when missing, once per process."""
        self.storage.table()
        if writes:
            self.storage.queue(self.settings.cleanup_queue_name)

    @property
    def event_queues(self) -> tuple[EventQueue, ...]:
        """The queues an end writes, in order: the cleanup queue, then the call-events queue with a topic."""
        return (self.cleanup,) if self.call_events is None else (self.cleanup, self.call_events)

    def session(self) -> requests.Session:
        """One pooled HTTP session for Graph and the identity provider, sized to the concurrency."""
        with self._lock:
            if self._session is None:
                self._session = build_session(self.settings.concurrency)
            return self._session

    def tokens(self) -> TokenProvider:
        """MSAL apps per tenant, kept for the life of the process so tokens survive across ticks."""
        session = self.session()
        with self._lock:
            if self._tokens is None:
                self._tokens = TokenProvider(self.settings, session)
            return self._tokens

    def limiter(self) -> RateLimiter:
        """This instance's pace of Graph requests per tenant, shared by every sweep of the process: each sweep
        paces at its share of KEEPALIVE_TENANT_RATE (`RateLimiter.pacing`); outside a sweep, the whole rate.

        Its slots are real time (milliseconds apart); a 429's pause lasts as long as the throttled call's own
        wait, which runs on `sleep`, so an injected sleep makes the pause as short as that wait.
        """
        with self._lock:
            if self._limiter is None:
                self._limiter = RateLimiter(self.settings.tenant_rate, clock=self.pace_clock, sleep=self.pace_sleep)
            return self._limiter

    def graph(self) -> GraphClient:
        tokens, session, limiter = self.tokens(), self.session(), self.limiter()
        with self._lock:
            if self._graph is None:
                self._graph = GraphClient(self.settings, session, tokens, sleep=self.sleep, now=self.now, gate=limiter)
            return self._graph

    def topic(self) -> topic_module.Topic:
        """The Event Grid topic's client, built on first use and kept for the life of the process (its connections
        and its token). `SettingsError` when CALL_EVENTS_TOPIC_ENDPOINT or its credential is not usable."""
        settings = self.settings
        with self._lock:
            if self._topic is None:
                if settings.events_topic_endpoint is None or settings.events_topic_problems:
                    raise SettingsError(settings.events_topic_problems or ("CALL_EVENTS_TOPIC_ENDPOINT is not set",))
                credential = self.topic_credential
                if credential is None:
                    credential = topic_module.credential(settings)
                self._topic = topic_module.Topic(settings.events_topic_endpoint, credential)
            return self._topic

    def notification_keys(self) -> NotificationKeys:
        """The signing keys of Graph's notification tokens, cached for the life of the process (built on first use)."""
        with self._notification_keys_lock:
            if self._notification_keys is None:
                session = requests.Session()  # trust_env: REQUESTS_CA_BUNDLE and HTTPS_PROXY apply
                self._notification_keys = NotificationKeys(self.settings.notification_openid_url, session, self.now)
            return self._notification_keys


_context: Context | None = None
_lock = threading.Lock()


def get_context() -> Context:
    """The process's context, built from the environment on first use (never at import time)."""
    global _context
    with _lock:
        if _context is None:
            _context = Context(load_from_environment())
            configure_telemetry(_context.settings)  # once per process; a no-op without APPLICATIONINSIGHTS_*
        return _context


def install(context: Context | None) -> Context | None:
    """Replace the process's context (tests and the command line); returns the one it replaces."""
    global _context
    with _lock:
        previous, _context = _context, context
        return previous
