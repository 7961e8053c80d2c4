"""Fixtures of the integration tests beyond the shared ones (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import azurite as azurite_module
from tests.conftest import ContextFactory
from tests.integration.cli_harness import App
from tests.standins.fixtures import Standins


@pytest.fixture
def make_cli(
    tmp_path: Path,
    azurite: azurite_module.Azurite,
    storage_names: dict[str, str],
    standins: Standins,
    make_context: ContextFactory,
) -> Callable[..., App]:
    """An App (a folder with a local.settings.json) on the session's Azurite, this test's table and queues and
    the stand-ins, for real ticks; `NAME=value` changes a setting."""

    def make(**overrides: str) -> App:
        values = {
            **standins.environ(AzureWebJobsStorage=azurite.connection_string),
            **storage_names,
            "GRAPH_DRY_RUN": "false",
            "KEEPALIVE_CONCURRENCY": "8",
            # as `python -m tests.standins` prints it: the command line puts it into its environment
            "REQUESTS_CA_BUNDLE": str(standins.ca_bundle),
            **overrides,
        }
        app = App(tmp_path, values, make_context)
        app.write_settings()
        return app

    return make
