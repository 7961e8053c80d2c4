"""Shared fixtures: real Azurite for the session, a fresh table and queues per test, the one context factory
(`make_context`), and a host-like invoker. The stand-ins' fixtures come from `tests.standins.fixtures`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from shared import context as context_module
from shared.context import Context
from shared.models import utc_now
from shared.settings import Settings, load_settings
from shared.storage import RequestHook, Stores
from tests import azurite as azurite_module
from tests import fakes
from tests.fakes import RecordingSleep
from tests.host import FunctionHost

if TYPE_CHECKING:  # imported by pytest as a plugin below: importing it here first would defeat assert rewriting
    from tests.standins.fixtures import Standins

pytest_plugins = ["tests.standins.fixtures"]


@pytest.fixture(autouse=True)
def no_contract_violations() -> Iterator[None]:
    """Fails a test in which the engine broke a rule of the storage Protocols, even where the engine swallowed the
    in-memory storage's `ContractViolation` (`BatchWriter` counts any error of a write as unsaved)."""
    yield
    fakes.check_violations()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite_module.Azurite]:
    """One Azurite for the whole session, on free ports, stopped even when tests fail."""
    location = tmp_path_factory.mktemp("azurite")
    instance, process = azurite_module.start(Path(location))
    try:
        yield instance
    finally:
        azurite_module.stop(process)


@pytest.fixture
def storage_names() -> dict[str, str]:
    suffix = uuid.uuid4().hex
    return {
        "CALLS_TABLE_NAME": f"calls{suffix}",
        "CLEANUP_QUEUE_NAME": f"cleanup-{suffix}",
        "KEEPALIVE_WORK_QUEUE_NAME": f"work-{suffix}",
        "CALL_EVENTS_QUEUE_NAME": f"events-{suffix}",
    }


def settings_on(connection: str | None, storage_names: dict[str, str], **values: str | None) -> Settings:
    """Settings on `connection` and the test's table and queues, in dry run unless `values` say otherwise;
    a value of None removes that setting."""
    environ = {"AzureWebJobsStorage": connection, **storage_names, "GRAPH_DRY_RUN": "true", **values}
    return load_settings({k: v for k, v in environ.items() if v is not None})


@pytest.fixture
def make_settings(azurite: azurite_module.Azurite, storage_names: dict[str, str]) -> Callable[..., Settings]:
    """Settings aimed at this session's Azurite and this test's own table and queues."""

    def make(**values: str | None) -> Settings:
        return settings_on(azurite.connection_string, storage_names, **values)

    return make


class ContextFactory(Protocol):
    def __call__(
        self,
        *,
        graph: bool = False,
        install: bool = False,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] | None = None,
        pace_clock: Callable[[], float] = time.monotonic,
        pace_sleep: Callable[[float], None] = time.sleep,
        on_storage_request: RequestHook | None = None,
        topic_credential: Any = None,
        stores: Stores | None = None,
        **settings: str | None,
    ) -> Context: ...


@pytest.fixture
def make_context(request: pytest.FixtureRequest, storage_names: dict[str, str]) -> Iterator[ContextFactory]:
    """Builds the test's contexts: the one way a test makes a `Context`.

    Settings: this test's table and queues on the session's Azurite (unless `AzureWebJobsStorage=` is given:
    then Azurite is not needed), dry run, then `settings` (`NAME=None` removes a setting). `graph=True` aims
    them at the Graph and identity stand-ins (the `standins` fixture) for real, not dry-run, keepAlives.
    `now`, `sleep` (by default a `RecordingSleep`: nothing waits for real), `pace_clock`/`pace_sleep`,
    `on_storage_request`, `topic_credential` and `stores` (the engine's tables and queues: `MemoryStorage().stores()`
    keeps them in memory, and Azurite is then not started) go to the `Context`. `install=True` makes it the process's
    context, as the functions see it. At teardown the process's context is put back and the contexts' HTTP
    sessions (and topic clients) are closed.
    """
    built: list[Context] = []
    replaced: list[Context | None] = []

    def make(
        *,
        graph: bool = False,
        install: bool = False,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] | None = None,
        pace_clock: Callable[[], float] = time.monotonic,
        pace_sleep: Callable[[float], None] = time.sleep,
        on_storage_request: RequestHook | None = None,
        topic_credential: Any = None,
        stores: Stores | None = None,
        **settings: str | None,
    ) -> Context:
        values: dict[str, str | None] = {}
        if graph:
            standins: Standins = request.getfixturevalue("standins")
            values.update(standins.environ(AzureWebJobsStorage=None), GRAPH_DRY_RUN="false")
        values.update(settings)
        if "AzureWebJobsStorage" in values:
            connection = values.pop("AzureWebJobsStorage")
        elif stores is not None:
            connection = None
        else:
            connection = request.getfixturevalue("azurite").connection_string
        context = Context(
            settings_on(connection, storage_names, **values),
            now=now,
            sleep=sleep if sleep is not None else RecordingSleep(),
            pace_clock=pace_clock,
            pace_sleep=pace_sleep,
            on_storage_request=on_storage_request,
            topic_credential=topic_credential,
            stores=stores,
        )
        built.append(context)
        if install:
            replaced.append(context_module.install(context))
        return context

    yield make
    if replaced:
        context_module.install(replaced[0])
    for context in built:
        context.session().close()
        if context._topic is not None:
            context._topic.close()


@pytest.fixture
def ctx(make_context: ContextFactory) -> Context:
    """A dry-run context on Azurite, installed as the process's context so the functions use it."""
    return make_context(install=True)


@pytest.fixture(scope="session")
def host() -> FunctionHost:
    import function_app

    return FunctionHost.of(function_app.app)


@pytest.fixture
def table_entities(ctx: Context) -> Callable[[], list[dict[str, Any]]]:
    """Every entity of this test's calls table, read directly with the SDK."""

    def read() -> list[dict[str, Any]]:
        return [dict(entity) for entity in ctx.storage.table().list_entities()]

    return read
