"""The wire path (shared/storage/_tablewire.py) on Azurite: its page reads and entity group transactions agree with
the SDK's own calls, through the table client's pipeline and through the SDK's public calls alike."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode

from shared.context import Context
from shared.errors import TransactionFailed
from shared.storage._tablewire import query_pages, replace_all
from tests.conftest import ContextFactory
from tests.helpers import ids_in
from tests.integration.test_batching import register

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(make_context: ContextFactory) -> Context:
    """A dry-run context on Azurite, installed for the functions."""
    return make_context(install=True)


class WithoutPipeline:
    """A table client whose internals moved: tablewire falls back to the SDK's public calls."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        if name == "_client":
            raise AttributeError(name)
        return getattr(self._table, name)


@pytest.mark.parametrize("through_sdk", [False, True])
def test_transactions_and_queries_agree_with_the_sdk(ctx, host, through_sdk):
    ids = ids_in("07", 3)
    register(host, *ids)
    table: Any = ctx.storage.table()
    client = WithoutPipeline(table) if through_sdk else table

    [page] = list(query_pages(client, query_filter="PartitionKey eq @p", parameters={"p": "07"}))
    assert sorted(e["CallId"] for e in page) == sorted(ids)
    sdk = {e["RowKey"]: e.metadata["etag"] for e in table.query_entities("PartitionKey eq '07'")}
    assert {e["RowKey"]: e.metadata["etag"] for e in page} == sdk

    changes = [
        ({**{k: v for k, v in e.items() if "@" not in k and "." not in k}, "LastStatus": 299}, e.metadata["etag"])
        for e in page
    ]
    etags = replace_all(client, changes)
    stored = {e["RowKey"]: e for e in table.query_entities("PartitionKey eq '07'")}
    assert all(stored[entity["RowKey"]]["LastStatus"] == 299 for entity, _ in changes)
    assert etags == [stored[entity["RowKey"]].metadata["etag"] for entity, _ in changes]

    table.update_entity(
        dict(stored[changes[0][0]["RowKey"]]),
        mode=UpdateMode.REPLACE,
        etag=etags[0],
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(TransactionFailed) as refused:  # the first entity changed meanwhile: nothing is written
        replace_all(
            client, [({**entity, "LastStatus": 298}, etag) for (entity, _), etag in zip(changes, etags, strict=True)]
        )
    assert refused.value.conflict
    assert all(e["LastStatus"] == 299 for e in table.query_entities("PartitionKey eq '07'"))
