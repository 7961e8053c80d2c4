"""Shared fixtures: real Azurite for the session, a fresh table and queues per test, and a host-like invoker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import context as context_module
from shared.context import Context
from shared.settings import Settings, load_settings
from tests import azurite as azurite_module
from tests.host import FunctionHost

pytest_plugins = ["tests.standins.fixtures"]


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
    }


@pytest.fixture
def make_settings(azurite: azurite_module.Azurite, storage_names: dict[str, str]) -> Callable[..., Settings]:
    """Settings aimed at this session's Azurite and this test's own table and queues."""

    def make(**values: str) -> Settings:
        environ = {
            "AzureWebJobsStorage": azurite.connection_string,
            **storage_names,
            "GRAPH_DRY_RUN": "true",
            **values,
        }
        return load_settings({k: v for k, v in environ.items() if v is not None})

    return make


@pytest.fixture
def ctx(make_settings: Callable[..., Settings]) -> Iterator[Context]:
    """A context on Azurite, installed as the process's context so the functions use it."""
    context = Context(make_settings())
    previous = context_module.install(context)
    try:
        yield context
    finally:
        context_module.install(previous)


@pytest.fixture(scope="session")
def host() -> FunctionHost:
    import function_app

    return FunctionHost(function_app.app)


@pytest.fixture
def table_entities(ctx: Context) -> Callable[[], list[dict[str, Any]]]:
    """Every entity of this test's calls table, read directly with the SDK."""

    def read() -> list[dict[str, Any]]:
        return [dict(entity) for entity in ctx.storage.table().list_entities()]

    return read
