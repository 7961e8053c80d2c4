"""Azure Table Storage and Queue Storage: the clients, built once per process, and the storage error boundary.

Every SDK call goes through `storage_errors()`, which turns an unreachable or failing service into
`StorageUnavailable`, and a refused identity, a bad certificate or a malformed setting into the other
`StorageError`s of `_faults` (each the API's `503 storageUnavailable`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.data.tables import TableClient
from azure.storage.queue import ExponentialRetry, QueueClient, TextBase64EncodePolicy

from shared.connection_string import StorageSettings
from shared.errors import StorageMisconfigured
from shared.logsafe import get_logger
from shared.settings import Settings
from shared.storage import _faults

logger = get_logger(__name__)

RequestHook = Callable[[str, str], None]  # (service, kind): told of each storage request sent

# Small retry budget: an unreachable account must answer 503 quickly, not hang the bot's request.
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": 5,
    "read_timeout": 20,
}
_RETRYABLE_STATUSES = frozenset({401, 403, 408, 429})
_Client = TypeVar("_Client", TableClient, QueueClient)


@contextmanager
def storage_errors(action: str, service: str = "table") -> Iterator[None]:
    """Turn a storage fault into a `StorageError`; let ordinary answers (404, 409, 412) through.

    `service` (`table` or `queue`) names the role a refused identity needs. A refusal (401/403) and a
    certificate that cannot be verified are configuration errors, logged as such (see `storage_faults`).
    """
    try:
        yield
    except (ServiceRequestError, ServiceResponseError, ClientAuthenticationError) as error:
        raise _faults.classify(action, service, error) from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status >= 500 or status in _RETRYABLE_STATUSES:
            raise _faults.classify(action, service, error) from error
        raise


def _credential(storage: StorageSettings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if storage.credential == "managedidentity":
        if storage.client_id:
            return ManagedIdentityCredential(client_id=storage.client_id)
        return ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=storage.client_id)


class Storage:
    """The app's table and queue clients, built once per process from `AzureWebJobsStorage`.

    Nothing here does I/O until first use; the table and each queue are created when missing,
    once per process (a failed attempt is tried again on the next use). `on_request`, when given, is told of
    every request sent (each attempt): its service (`table`, `queue`) and kind (`read`, `write`, `batch`).
    """

    def __init__(self, settings: Settings, on_request: RequestHook | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._credential: TokenCredential | None = None
        self._on_request = on_request
        _faults.redact_sas()

    def _storage(self) -> StorageSettings:
        if self._settings.storage is None or self._settings.storage_problems:
            for problem in self._settings.storage_problems:
                logger.error("storage setting invalid: %s", problem)
            detail = "; ".join(self._settings.storage_problems) or "AzureWebJobsStorage is not set"
            raise StorageMisconfigured(f"Storage is not configured: {detail}.")
        return self._settings.storage

    def _identity(self, storage: StorageSettings) -> TokenCredential:
        if self._credential is None:
            self._credential = _credential(storage)
        return self._credential

    def _hook(self, service: str) -> dict[str, Any]:
        """The SDK's per-request hook, telling `on_request` of each request; nothing without one."""
        on_request = self._on_request
        if on_request is None:
            return {}

        def hook(request: PipelineRequest[Any]) -> None:
            http = request.http_request
            if http.url.split("?", 1)[0].endswith("/$batch"):
                on_request(service, "batch")
            else:
                on_request(service, "read" if http.method in ("GET", "HEAD") else "write")

        return {"raw_request_hook": hook}

    def table_client(self, name: str | None = None) -> TableClient:
        """A table client (the calls table by default), without creating anything."""
        storage = self._storage()
        name = name or self._settings.calls_table_name
        options: dict[str, Any] = {**self._hook("table"), **CLIENT_OPTIONS}
        if storage.connection_string:
            with _faults.malformed_setting():
                return TableClient.from_connection_string(storage.connection_string, name, **options)
        assert storage.table_service_uri is not None
        return TableClient(storage.table_service_uri, name, credential=self._identity(storage), **options)

    def queue_client(self, name: str) -> QueueClient:
        """A queue client writing base64 text (what a Functions queue trigger expects), without creating anything."""
        storage = self._storage()
        options: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            **self._hook("queue"),
            **CLIENT_OPTIONS,
            # the queue SDK has its own retry policy (15 s, then 18 s by default): the same small budget
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1),
        }
        if storage.connection_string:
            with _faults.malformed_setting():
                return QueueClient.from_connection_string(storage.connection_string, name, **options)
        assert storage.queue_service_uri is not None
        return QueueClient(storage.queue_service_uri, name, credential=self._identity(storage), **options)

    def table(self, name: str | None = None) -> TableClient:
        """A table client (the calls table by default); the table is created when missing."""
        name = name or self._settings.calls_table_name
        return self._created(self._tables, name, self.table_client, lambda client: client.create_table())

    def queue(self, name: str) -> QueueClient:
        """A queue client; the queue is created when missing."""
        return self._created(self._queues, name, self.queue_client, lambda client: client.create_queue(), "queue")

    def _created(self, cache: dict[str, _Client], name: str, build: Callable[[str], _Client],
                 create: Callable[[_Client], object], service: str = "table") -> _Client:  # fmt: skip
        """The cached client of `name`, built and its resource created (if missing) on first use."""
        with self._lock:
            if name not in cache:
                client = build(name)
                with storage_errors(f"create {name}", service):
                    try:
                        create(client)
                    except ResourceExistsError:
                        pass
                cache[name] = client
            return cache[name]
