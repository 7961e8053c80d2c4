"""Rows the app cannot read: another program's, or damaged by hand. One bad row costs that row, never the others.

Everything runs against the real Azurite table and the Graph stand-in: the rows are written with the SDK
beside calls registered through the API, then the timer sweep, a work range, the listing, the count and
the command line read the table.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from azure.data.tables import TableClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.context import Context
from shared.fanout import WorkRange
from shared.keepalive import run_tick, run_work
from shared.models import call_keys, partition_of
from tests.conftest import ContextFactory
from tests.fakes import WorkMessage
from tests.host import FunctionHost, body_of
from tests.integration.cli_harness import App
from tests.standins.fixtures import Standins

pytestmark = pytest.mark.integration

GOOD_ENTITY: dict[str, Any] = {
    "CallId": "",
    "RegisteredAt": datetime(2025, 1, 1, tzinfo=UTC),
    "RegistrationId": "3f1c1a52-7a39-4a8e-9a7e-3c1b0f2f3f3f",
    "ConsecutiveFailures": 0,
    "Metadata": "{}",
}
# Each damage makes a row the app wrote unreadable: (what is changed, the value or None to remove it).
DAMAGES: list[tuple[str, Any]] = [
    ("CallId", None),
    ("CallId", 42),
    ("CallId", "has space"),
    ("RegisteredAt", None),
    ("RegisteredAt", "not a date"),
    ("RegisteredAt", 3.5),
    ("RegistrationId", None),
    ("RegistrationId", True),
    ("ConsecutiveFailures", "three"),
    ("ConsecutiveFailures", -1),
    ("Metadata", "{not json"),
    ("Metadata", '["a list"]'),
    ("Metadata", '{"k": 1}'),
    ("LastStatus", 99999),
    ("LastStatus", "404"),
    ("LastKeepAliveAt", "yesterday"),
    ("TenantId", "not-a-guid"),
    ("LastError", 7),
]


class Table:
    """A context on Azurite and the stand-ins (installed for the functions), and its calls table."""

    def __init__(self, ctx: Context, host: FunctionHost) -> None:
        self.ctx = ctx
        self.host = host

    @property
    def client(self) -> TableClient:
        return self.ctx.storage.table()

    def register(self, call_id: str) -> None:
        response = self.host.request("POST", "/api/calls", body={"callId": call_id})
        assert response.status_code == 201, response.get_body()

    def damaged(self, call_id: str, name: str, value: Any) -> dict[str, Any]:
        """A row as the app writes it, for `call_id`, with one property changed (None: removed); written."""
        partition_key, row_key = call_keys(call_id)
        entity = {**GOOD_ENTITY, "CallId": call_id, "PartitionKey": partition_key, "RowKey": row_key}
        if value is None:
            entity.pop(name, None)
        else:
            entity[name] = value
        self.client.upsert_entity(entity)
        return entity

    def listed(self, top: int = 3) -> list[str]:
        """Every callId `GET /api/calls` lists, following nextLink."""
        ids: list[str] = []
        url: str | None = f"/api/calls?top={top}"
        while url is not None:
            response = self.host.request("GET", url)
            assert response.status_code == 200, response.get_body()
            body = body_of(response)
            ids += [record["callId"] for record in body["value"]]
            url = body.get("nextLink")
        return ids

    def keys(self) -> set[tuple[str, str]]:
        return {(e["PartitionKey"], e["RowKey"]) for e in self.client.list_entities(select=["PartitionKey", "RowKey"])}


@pytest.fixture
def table(make_context: ContextFactory, host: FunctionHost) -> Table:
    return Table(make_context(graph=True, install=True, KEEPALIVE_CONCURRENCY="8"), host)


def keepalives(standins: Standins) -> Counter[str]:
    return Counter(r.call_id for r in standins.graph.requests if r.call_id is not None)


# --- the property -------------------------------------------------------------------------------
_KEY_TEXT = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x24F), max_size=24)
_NAMES = st.sampled_from(
    ["CallId", "RegisteredAt", "RegistrationId", "TenantId", "LastStatus", "LastError", "ConsecutiveFailures",
     "Metadata", "LastKeepAliveAt", "Other", "x1"]
)  # fmt: skip
_VALUES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    st.binary(max_size=16),
    st.uuids(),
)
_FOREIGN = st.fixed_dictionaries(
    {
        "PartitionKey": st.one_of(st.sampled_from([f"{i:02d}" for i in range(64)]), _KEY_TEXT.filter(bool)),
        "RowKey": st.one_of(_KEY_TEXT.filter(bool), st.just("")),
        "properties": st.dictionaries(_NAMES, _VALUES, max_size=6),
    }
)
_DAMAGE = st.sampled_from(DAMAGES)


def test_arbitrary_rows_beside_real_calls_cost_only_themselves(table: Table, standins: Standins) -> None:
    """Whatever other rows the table holds: every real call is kept alive once and listed once by every
    tick and listing, every other row is skipped, counted and left exactly where it was."""
    real: set[str] = set()
    foreign: set[tuple[str, str]] = set()

    @settings(
        max_examples=6,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        rows=st.lists(_FOREIGN, max_size=4),
        damaged=st.lists(_DAMAGE, max_size=3),
        claims_a_real_id=st.booleans(),
    )
    def check(rows: list[dict[str, Any]], damaged: list[tuple[str, Any]], claims_a_real_id: bool) -> None:
        for _ in range(2):
            call_id = f"real-{uuid.uuid4()}"
            table.register(call_id)
            real.add(call_id)
        real_keys = {call_keys(call_id) for call_id in real}
        for row in rows:
            entity = {k: v for k, v in row["properties"].items() if v is not None}
            if claims_a_real_id:  # a well-formed copy of a real call at other keys: still not that call
                entity = {**entity, **GOOD_ENTITY, "CallId": sorted(real)[0]}
            entity.update(PartitionKey=row["PartitionKey"], RowKey=row["RowKey"])
            if (entity["PartitionKey"], entity["RowKey"]) in real_keys:
                continue
            table.client.upsert_entity(entity)
            foreign.add((entity["PartitionKey"], entity["RowKey"]))
        for name, value in damaged:
            entity = table.damaged(f"damaged-{uuid.uuid4()}", name, value)
            foreign.add((entity["PartitionKey"], entity["RowKey"]))

        before = keepalives(standins)
        summary = run_tick(table.ctx)
        sent = keepalives(standins) - before

        assert sent == Counter(real), "every real call kept alive exactly once, nothing else"
        assert (summary.calls, summary.succeeded, summary.failed) == (len(real), len(real), 0)
        assert summary.skipped == len(foreign) and summary.complete
        assert sorted(table.listed()) == sorted(real), "every real call listed exactly once"
        assert table.ctx.calls.count(more_than=10**6) == len(real)
        assert table.keys() == foreign | {call_keys(call_id) for call_id in real}, "nothing deleted or added"

    check()


# --- each reader ---------------------------------------------------------------------------------
def test_each_damaged_row_is_skipped_logged_with_its_keys_and_counted_by_the_tick(table, standins, caplog):
    table.register("alive-1")
    table.register("alive-2")
    damaged = [table.damaged(f"damaged-{i}", name, value) for i, (name, value) in enumerate(DAMAGES)]

    with caplog.at_level(logging.INFO):
        summary = run_tick(table.ctx)

    assert (summary.calls, summary.succeeded, summary.skipped) == (2, 2, len(DAMAGES))
    assert keepalives(standins) == Counter({"alive-1": 1, "alive-2": 1})
    warnings = [r.getMessage() for r in caplog.records if r.name == "shared.rows" and r.levelno == logging.WARNING]
    assert len(warnings) == len(DAMAGES)
    for entity in damaged:
        assert any(f"partitionKey={entity['PartitionKey']} rowKey={entity['RowKey']}" in line for line in warnings), (
            entity
        )
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keepalive tick ")]
    assert line.startswith("keepalive tick calls=2 succeeded=2 ended=0 failed=0 retries=0 seconds=")
    assert f" skipped={len(DAMAGES)} " in line
    assert len(table.keys()) == 2 + len(DAMAGES)  # left in place


def test_a_foreign_rows_keys_are_logged_so_they_cannot_forge_a_line(table, caplog):
    table.client.upsert_entity({"PartitionKey": "x tenantId=evil", "RowKey": "y\u202ez", "CallId": 1})
    with caplog.at_level(logging.WARNING, logger="shared.rows"):
        summary = run_tick(table.ctx, dry_run=True)
    assert summary.skipped == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "shared.rows"]
    assert " tenantId=evil" not in line and "\u202e" not in line
    assert 'partitionKey="x\\u0020tenantId\\u003devil" rowKey="y\\u202ez"' in line


def test_a_work_range_skips_a_damaged_row_and_completes(table, standins):
    table.register("alive-1")
    entity = table.damaged("damaged-range", "Metadata", "{oops")
    partitions = tuple(sorted({call_keys("alive-1")[0], entity["PartitionKey"]}))

    summary = run_work(table.ctx, WorkMessage(WorkRange(partitions, "tick-1").text(), id="m1"))

    assert summary is not None and summary.complete and summary.skipped == 1
    assert keepalives(standins) == Counter({"alive-1": 1})
    assert (entity["PartitionKey"], entity["RowKey"]) in table.keys()


def test_the_api_leaves_a_damaged_row_out_and_never_answers_500(table):
    table.register("alive-1")
    table.damaged("damaged-api", "RegisteredAt", "not a date")

    assert table.listed(top=1) == ["alive-1"]
    assert table.host.request("GET", "/api/calls/damaged-api").status_code == 404
    assert table.host.request("DELETE", "/api/calls/damaged-api").status_code == 404
    again = table.host.request("POST", "/api/calls", body={"callId": "damaged-api"})
    assert again.status_code == 409 and body_of(again)["error"]["code"] == "conflict"
    assert call_keys("damaged-api") in table.keys()  # left in place
    assert table.ctx.calls.count(more_than=100) == 1
    damaged_partition = partition_of(call_keys("damaged-api")[1])
    assert table.ctx.calls.count(more_than=100, partition=damaged_partition) == int(
        call_keys("alive-1")[0] == damaged_partition
    )


@pytest.fixture
def cli(make_cli: Callable[..., App]) -> App:
    return make_cli(KEEPALIVE_CONCURRENCY="4")


def test_the_command_line_lists_and_ticks_past_a_damaged_row(cli: App, standins: Standins):
    ctx = cli.context()
    assert cli.run("calls", "add", "alive-1").code == 0
    partition_key, row_key = call_keys("damaged-cli")
    ctx.storage.table().upsert_entity({"PartitionKey": partition_key, "RowKey": row_key, "CallId": "damaged-cli"})

    listed = cli.run("--json", "calls", "list")
    assert listed.code == 0, listed.stderr
    assert [record["callId"] for record in listed.json()["value"]] == ["alive-1"]
    assert f"partitionKey={partition_key} rowKey={row_key}" in listed.stderr

    ticked = cli.run("--json", "tick")
    assert ticked.code == 0, ticked.stderr
    summary = ticked.json()
    assert (summary["calls"], summary["succeeded"], summary["skipped"]) == (1, 1, 1)
    assert "Traceback" not in ticked.stderr
    assert keepalives(standins) == Counter({"alive-1": 1})


def test_a_percent_encoded_path_to_a_damaged_row_is_a_404(table):
    table.damaged("dam%aged", "CallId", 5)
    assert table.host.request("GET", "/api/calls/" + quote("dam%aged", safe="")).status_code == 404
