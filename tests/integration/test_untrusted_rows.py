"""Rows the app cannot read: another program's, or damaged by hand. One bad row costs that row, never the others.

Everything runs against the real Azurite table and the Graph stand-in: the rows are written with the SDK
beside calls registered through the API, then the timer sweep, a work range, the listing, the count and
the command line read the table.
"""

from __future__ import annotations

import base64
import json
import logging
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from azure.data.tables import EdmType, EntityProperty, TableClient
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.context import Context
from shared.fanout import WorkRange
from shared.keepalive import run_tick, run_work
from shared.models import call_keys, partition_of
from tests.conftest import ContextFactory
from tests.fakes import WorkMessage
from tests.helpers import raw_row
from tests.host import FunctionHost, body_of
from tests.integration.cli_harness import App
from tests.standins.fixtures import Standins
from tests.standins.server import Reply

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
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "shared.storage._rows" and r.levelno == logging.WARNING
    ]
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
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        summary = run_tick(table.ctx, dry_run=True)
    assert summary.skipped == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "shared.storage._rows"]
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


# --- the whole invariant: whatever comes from outside costs only itself (issue 18) -----------------------------
HOSTILE = "x\nERROR forged line\r\x00\x1b[2J\x7f\x85\u200b\u202e\u2028\u2029\ufeff\ud800"
INT32_MAX = 2**31 - 1
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
MAX_QUEUE_MESSAGE = 64 * 1024  # the base64 text of a queue message
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# Readable rows at the edges of what the app writes and registration accepts.
EXTREMES = ["plain", "max_failures", "max_metadata", "earliest", "latest", "long_error", "long_id", "no_tenant"]
# Rows beyond what registration accepts (each answered 404 by Graph, were it ever sent a keepAlive).
BEYOND = ["surrogate_metadata", "emoji_metadata", "big_metadata", "hostile_registration", "ancient", "status_1000"]


@dataclass(frozen=True)
class Healthy:
    """A readable call, at an `extreme`, and what Graph answers for it, or (`identity`) what the identity
    provider answers when the app asks for its tenant's token (then no keepAlive is sent at all)."""

    extreme: str = "plain"
    graph: Reply = Reply(200)
    identity: Reply | None = None


@dataclass(frozen=True)
class Case:
    healthy: tuple[Healthy, ...] = ()
    beyond: tuple[str, ...] = ()
    damaged: tuple[tuple[str, Any], ...] = ()
    work: str | bytes | None = None  # a work message's tickId (a range over the healthy calls), or a raw body


_OUTSIDE_TEXT = st.one_of(
    st.text(max_size=24),
    st.sampled_from([HOSTILE, "C" * 70_000 + HOSTILE, "\ud800", "itemNotFound", "", "😀" * 300]),
    st.text(st.sampled_from('\n\r\x00\x1b\x7f\x85\u200b\u202e\u2028\u2029\ufeff a=\\"'), max_size=40),
)
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=64)
_GRAPH_BODY = st.one_of(
    st.none(),
    st.builds(
        lambda code, message, inner: {"error": {"code": code, "message": message, "innerError": {"request-id": inner}}},
        _OUTSIDE_TEXT,
        _OUTSIDE_TEXT,
        _OUTSIDE_TEXT,
    ),
    st.sampled_from([b"\xff\xfe not json", b"[1, 2]", b'{"error": "flat"}', b'{"error": {"code": 7}}']),
)
_GRAPH_HEADERS = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"request-id": st.one_of(_HEADER_TEXT, st.just("r\x1b[31m\x85" + "x" * 4000))}),
    st.fixed_dictionaries({"Retry-After": _HEADER_TEXT}),
)
_GRAPH = st.builds(
    Reply,
    st.sampled_from([200, 202, 204, 400, 401, 403, 404, 409, 418, 429, 500, 503, 504, 599]),
    _GRAPH_HEADERS,
    _GRAPH_BODY,
)
_IDENTITY = st.builds(
    Reply,
    st.sampled_from([400, 401]),
    st.just({}),
    st.one_of(
        st.fixed_dictionaries(
            {"error": _OUTSIDE_TEXT, "error_description": _OUTSIDE_TEXT, "correlation_id": _OUTSIDE_TEXT}
        ),
        st.sampled_from([b"<html>not json</html>", b"[]"]),
    ),
)
_HEALTHY = st.builds(Healthy, st.sampled_from(EXTREMES), _GRAPH, st.one_of(st.none(), st.none(), _IDENTITY))
_CASES = st.builds(
    Case,
    st.lists(_HEALTHY, min_size=1, max_size=4).map(tuple),
    st.lists(st.sampled_from(BEYOND), max_size=2).map(tuple),
    st.lists(_DAMAGE, max_size=1).map(tuple),
    st.one_of(st.none(), st.text(min_size=1, max_size=64), st.binary(max_size=40)),
)
# The cases of issue 18 as it was filed, each of them a failure on the code it was filed against.
KNOWN = {
    "counter at Int32 max (1)": Case((Healthy("max_failures", Reply(403)), Healthy(), Healthy("max_metadata"))),
    "identity provider's huge code (3)": Case(
        (Healthy(identity=Reply(400, body={"error": "E" * 70_000 + "\nERROR forged", "correlation_id": HOSTILE})),)
    ),
    "lone surrogate metadata (4)": Case((Healthy(),), beyond=("surrogate_metadata",)),
    "metadata far over 4 KiB (5)": Case((Healthy(),), beyond=("emoji_metadata",)),
    "Graph's code, request id, tickId (8)": Case(
        (Healthy(graph=Reply(403, {"request-id": "r\x1b[2J\x85"}, {"error": {"code": HOSTILE, "message": "m"}})),),
        work="t\nERROR forged\u202e",
    ),
    "a row's registration id (8)": Case((Healthy(),), beyond=("hostile_registration",)),
    "a year below 1000 (9)": Case((Healthy("earliest"),), beyond=("ancient",)),
}


class World:
    """The app on Azurite and the stand-ins, its clock, and what reaches the outside: events and log records."""

    def __init__(self, ctx: Context, standins: Standins, host: FunctionHost, caplog: pytest.LogCaptureFixture) -> None:
        self.ctx, self.standins, self.host, self.caplog = ctx, standins, host, caplog
        self.sent: list[int] = []  # the base64 length of every queue message the app tried to send

    def row(self, call_id: str, tenant: str | None, **properties: Any) -> dict[str, Any]:
        entity = raw_row(call_id, tenant, **properties)
        self.ctx.storage.table().create_entity(entity)
        return entity

    def healthy_row(self, call: Healthy, tenant: str | None) -> dict[str, Any]:
        suffix = str(uuid.uuid4())
        call_id = ("😀" * 219 + "-" + suffix) if call.extreme == "long_id" else f"h-{suffix}"
        extra: dict[str, Any] = {
            "max_failures": {"ConsecutiveFailures": INT32_MAX},
            "max_metadata": {"Metadata": json.dumps({"k": "é" * 2044}, ensure_ascii=False, separators=(",", ":"))},
            "earliest": {
                "RegisteredAt": datetime(1601, 1, 1, tzinfo=UTC),
                "LastKeepAliveAt": datetime(1601, 1, 1, tzinfo=UTC),
            },
            "latest": {"RegisteredAt": datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)},
            "long_error": {"LastError": "E" * 256, "LastStatus": 599, "ConsecutiveFailures": 3},
        }.get(call.extreme, {})
        return self.row(call_id, None if call.extreme == "no_tenant" else tenant, **extra)

    def beyond_row(self, kind: str) -> dict[str, Any]:
        call_id = f"b-{uuid.uuid4()}"
        self.standins.graph.script(call_id, 404)
        extra: dict[str, Any] = {
            "surrogate_metadata": {"Metadata": '{"k":"\\ud800"}'},
            "emoji_metadata": {"Metadata": json.dumps({"k": "😀" * 16_000}, ensure_ascii=False)},
            "big_metadata": {"Metadata": json.dumps({"k": "m" * 5000})},
            "hostile_registration": {"RegistrationId": HOSTILE[:-1]},
            "ancient": {"RegisteredAt": EntityProperty("0999-06-01T00:00:00.000Z", EdmType.DATETIME)},
            "status_1000": {"LastStatus": 1000},
        }[kind]
        return self.row(call_id, self.standins.tenant, **extra)

    def check(self, case: Case) -> None:
        """Run one tick (and a work message) over `case`'s rows and check the whole invariant."""
        ctx, standins, host = self.ctx, self.standins, self.host
        table = ctx.storage.table()
        cleanup = ctx.storage.queue(ctx.settings.cleanup_queue_name)
        for entity in table.list_entities(select=["PartitionKey", "RowKey"]):  # each case starts from an empty table
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        cleanup.clear_messages()
        first_record = len(self.caplog.records)
        self.sent.clear()
        expected: dict[str, tuple[str, dict[str, Any]]] = {}  # callId -> (outcome, its row before the tick)
        for call in case.healthy:
            identity = call.identity if call.extreme != "no_tenant" else None  # that one takes GRAPH_TENANT_ID
            tenant = standins.new_tenant() if identity else OTHER_TENANT if call.extreme == "plain" else standins.tenant
            entity = self.healthy_row(call, tenant)
            call_id = entity["CallId"]
            if identity is not None:
                standins.identity.fail_next(identity, tenant=tenant)
                outcome = "failed"
            else:
                status = call.graph.status
                repeats = 4 if status in (429, 500, 502, 503, 504) else 2 if status == 401 else 1  # retries use all
                standins.graph.script(call_id, *[call.graph] * repeats)
                outcome = "succeeded" if 200 <= status < 300 else "ended" if status == 404 else "failed"
            expected[call_id] = (outcome, entity)
        beyond = [self.beyond_row(kind) for kind in case.beyond]
        beyond += [Table(ctx, host).damaged(f"d-{uuid.uuid4()}", name, value) for name, value in case.damaged]

        summary = run_tick(ctx)
        self.assert_logs_safe(first_record)

        # every healthy call's outcome is saved and counted, and nothing else is touched
        outcomes = Counter(outcome for outcome, _ in expected.values())
        assert (summary.calls, summary.skipped, summary.unsaved) == (len(expected), len(beyond), 0), summary
        assert (summary.succeeded, summary.failed, summary.ended) == (
            outcomes["succeeded"], outcomes["failed"], outcomes["ended"]
        ), summary  # fmt: skip
        now = ctx.now()
        for call_id, (outcome, before) in expected.items():
            keys = call_keys(call_id)
            if outcome == "ended":
                assert keys not in {(e["PartitionKey"], e["RowKey"]) for e in table.list_entities()}
                continue
            stored = table.get_entity(*keys)
            if outcome == "succeeded":
                assert stored["LastKeepAliveAt"] == now and stored["ConsecutiveFailures"] == 0
            else:
                assert stored["ConsecutiveFailures"] == min(before["ConsecutiveFailures"] + 1, INT32_MAX)
                assert stored.get("LastError") is not None and len(stored["LastError"]) <= 256
        ended = {json.loads(base64.b64decode(m.content))["callId"] for m in cleanup.receive_messages(max_messages=32)}
        assert ended == {c for c, (outcome, _) in expected.items() if outcome == "ended"}
        cleanup.clear_messages()
        for entity in beyond:  # left in place, as they were
            stored = table.get_entity(entity["PartitionKey"], entity["RowKey"])
            assert stored.get("RegistrationId") == entity.get("RegistrationId")

        # no API answer is a 5xx, whatever the table holds; unreadable rows are not found
        url: str | None = "/api/calls?top=2"
        listed: list[dict[str, Any]] = []
        while url is not None:
            page = host.request("GET", url)
            assert page.status_code == 200, page.get_body()[:300]
            listed += body_of(page)["value"]
            url = body_of(page).get("nextLink")
        assert sorted(r["callId"] for r in listed) == sorted(c for c, (o, _) in expected.items() if o != "ended")
        assert all(r["lastError"] is None or len(r["lastError"]) <= 256 for r in listed)
        for entity in beyond:
            answer = host.request("GET", "/api/calls/" + quote(str(entity.get("CallId", "x")), safe=""))
            assert answer.status_code in (400, 404), answer.get_body()[:300]
        assert ctx.calls.count(more_than=100) == len(listed)

        # a work message, whatever it holds, sweeps its range or is dropped: never retried for a bad value
        if case.work is not None:
            partitions = sorted({call_keys(c)[0] for c in expected})
            body = WorkRange(tuple(partitions), case.work).text() if isinstance(case.work, str) else case.work
            first_work_record = len(self.caplog.records)
            worked = run_work(ctx, WorkMessage(body))  # RangeIncomplete would be raised: a failure here
            self.assert_logs_safe(first_work_record)
            assert worked is None or (worked.complete and worked.unsaved == 0)

        # no event too large for the queue was attempted
        assert all(size <= MAX_QUEUE_MESSAGE for size in self.sent), self.sent

    def assert_logs_safe(self, first: int) -> None:
        """No log record of the app since `first` holds a raw control, format or separator character, or a
        lone surrogate: whatever came from outside is escaped, so each message is one line."""
        unsafe = [
            record.getMessage()[:160]
            for record in self.caplog.records[first:]
            if record.name.startswith("shared")
            and any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in record.getMessage())
        ]
        assert unsafe == []


@pytest.fixture
def world(
    make_context: ContextFactory,
    host: FunctionHost,
    standins: Standins,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    clock = [datetime(2026, 11, 27, 12, 0, tzinfo=UTC)]
    ctx = make_context(graph=True, install=True, now=lambda: clock[0], KEEPALIVE_CONCURRENCY="4")
    world = World(ctx, standins, host, caplog)
    send = QueueClient.send_message

    def spy(self: QueueClient, content: Any, **kwargs: Any) -> Any:
        world.sent.append(len(base64.b64encode(str(content).encode("utf-8", "surrogatepass"))))
        return send(self, content, **kwargs)

    monkeypatch.setattr(QueueClient, "send_message", spy)
    with caplog.at_level(logging.DEBUG, logger="shared"):
        yield world


@pytest.mark.parametrize("name", list(KNOWN))
def test_each_case_of_issue_18_costs_only_itself(world: World, name: str) -> None:
    world.check(KNOWN[name])


def test_whatever_comes_from_outside_costs_only_itself(world: World) -> None:
    """Arbitrary rows (readable ones at the edges included), Graph answers, identity provider answers and work
    messages: every healthy call's outcome is saved and counted, no API answer is a 5xx, no log record of the app
    holds a raw control or format character, `lastError` stays within 256 characters, and no event too large
    for the queue is attempted."""

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )
    @given(case=_CASES)
    def check(case: Case) -> None:
        world.check(case)

    check()
