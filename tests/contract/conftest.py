"""One suite, two implementations: every test of tests/contract/ runs against the in-memory storage of
tests/fakes.py and against the Azure one on Azurite, so that the fake the unit tests trust answers what Azure
answers. A backend hands out the `Stores` the engine gets, and reads back what was written."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.context import Context
from shared.storage import AzureRows, Rows, Stores, ended_entity
from tests.conftest import ContextFactory
from tests.fakes import MemoryStorage


class Backend(Protocol):
    name: str
    stores: Stores
    rows: Rows  # the calls table's rows, the seam under `CallsTable`

    def plant(self, entity: dict[str, Any]) -> None:
        """Store a row in the calls table as it is (another program's, or one damaged by hand)."""
        ...

    def stored(self) -> list[dict[str, Any]]:
        """Every row of the calls table, as stored."""
        ...

    def sent(self, queue: str) -> list[str]:
        """The texts on `cleanup`, `call_events` or `work`, as a queue trigger reads them."""
        ...

    def seed_ends(self, call_ids: Iterable[str], *, tenant_id: str | None, at: datetime) -> None:
        """Ends remembered at `at`, in bulk."""
        ...


class InMemory:
    name = "memory"

    def __init__(self) -> None:
        self.storage = MemoryStorage(topic=True)
        self.stores = self.storage.stores()
        self.rows: Rows = self.storage.rows

    def plant(self, entity: dict[str, Any]) -> None:
        self.storage.rows.put(entity)

    def stored(self) -> list[dict[str, Any]]:
        return self.storage.rows.all()

    def sent(self, queue: str) -> list[str]:
        if queue == "work":
            return list(self.storage.work.texts)
        source = self.storage.cleanup if queue == "cleanup" else self.storage.call_events
        assert source is not None
        return list(source.texts)

    def seed_ends(self, call_ids: Iterable[str], *, tenant_id: str | None, at: datetime) -> None:
        for call_id in call_ids:
            self.storage.ends.remember(call_id, tenant_id=tenant_id, reason="keepAliveNotFound", now=at)


class OnAzurite:
    name = "azure"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rows: Rows = AzureRows(ctx.storage)
        assert ctx.call_events is not None
        self.stores = Stores(
            calls=ctx.calls,
            cleanup=ctx.cleanup,
            call_events=ctx.call_events,
            recent_ends=ctx.recent_ends,
            work=ctx.work_queue,
            prepare=ctx.prepare_storage,
        )

    def plant(self, entity: dict[str, Any]) -> None:
        self.ctx.storage.table().create_entity(entity)

    def stored(self) -> list[dict[str, Any]]:
        return [dict(entity) for entity in self.ctx.storage.table().list_entities()]

    def sent(self, queue: str) -> list[str]:
        settings = self.ctx.settings
        name = {
            "cleanup": settings.cleanup_queue_name,
            "call_events": settings.events_queue_name,
            "work": settings.work_queue_name,
        }[queue]
        try:
            messages = self.ctx.storage.queue_client(name).peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [base64.b64decode(m.content).decode("utf-8") for m in messages]

    def seed_ends(self, call_ids: Iterable[str], *, tenant_id: str | None, at: datetime) -> None:
        rows = [ended_entity(c, tenant_id=tenant_id, reason="keepAliveNotFound", now=at) for c in call_ids]
        table = self.ctx.storage.table(self.ctx.settings.ended_table_name)
        for start in range(0, len(rows), 100):
            table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])


@pytest.fixture(params=["memory", pytest.param("azure", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return InMemory()
    make_context: ContextFactory = request.getfixturevalue("make_context")
    topic = make_context(CALL_EVENTS_TOPIC_ENDPOINT="https://topic.example/api/events", CALL_EVENTS_TOPIC_KEY="no key")
    return OnAzurite(topic)
