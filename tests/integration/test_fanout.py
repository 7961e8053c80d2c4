"""Fan-out end to end: the timer over the threshold writes work messages, the queue function sweeps each
range, a failed range is delivered again; on Azurite and the Graph and identity stand-ins (where storage must
fail part way, or the purge needs thousands of ends, on storage in memory: tests/fakes.py).

Messages are read back the way the host's queue trigger reads them (base64 text) and handed to the
queue function through its registration, as `azure.functions.queue.QueueMessage` with a dequeue count.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared.context import Context
from shared.errors import RangeIncomplete
from shared.fanout import ALL_PARTITIONS
from shared.models import call_keys, utc_now
from tests.azurite import decode_event
from tests.conftest import ContextFactory
from tests.fakes import MemoryStorage
from tests.host import FunctionHost, body_of
from tests.standins.fixtures import Standins

pytestmark = pytest.mark.integration


class Fanout:
    """A context on the stand-ins, installed for the functions, with its queues read back: on Azurite, or with
    `memory` its tables and queues in memory (where storage can be made to fail)."""

    def __init__(self, ctx: Context, host: FunctionHost, memory: MemoryStorage | None = None) -> None:
        self.ctx = ctx
        self.host = host
        self.memory = memory

    def register(self, *call_ids: str) -> None:
        for call_id in call_ids:
            response = self.host.request("POST", "/api/calls", body={"callId": call_id})
            assert response.status_code == 201, response.get_body()

    def tick(self) -> None:
        self.host.user_function("keepalive_tick")(TimerRequest(past_due=False))

    def _queue(self, name: str, *, raw: bool = False) -> QueueClient:
        connection = self.ctx.settings.storage.connection_string  # type: ignore[union-attr]
        policy = None if raw else TextBase64DecodePolicy()
        return QueueClient.from_connection_string(connection, name, message_decode_policy=policy)

    def work_messages(self) -> list[Any]:
        """Receive every work message (hidden for a minute, as the host would while running it)."""
        if self.memory is not None:
            texts, self.memory.work.texts[:] = list(self.memory.work.texts), []
            return [SimpleNamespace(id=f"m{i}", content=text) for i, text in enumerate(texts)]
        queue = self._queue(self.ctx.settings.work_queue_name)
        try:
            return list(queue.receive_messages(max_messages=32, visibility_timeout=60))
        except ResourceNotFoundError:
            return []

    def events(self) -> list[dict[str, Any]]:
        if self.memory is not None:
            return self.memory.cleanup.events()
        try:
            messages = self._queue(self.ctx.settings.cleanup_queue_name, raw=True).peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [decode_event(m.content) for m in messages]

    def run(self, message: Any, dequeue_count: int = 1) -> None:
        """The queue function on one message, as the host calls it."""
        delivered = QueueMessage(id=message.id, body=message.content.encode("utf-8"), dequeue_count=dequeue_count)
        self.host.user_function("keepalive_work")(delivered)

    def get(self, call_id: str) -> dict[str, Any] | None:
        response = self.host.request("GET", f"/api/calls/{call_id}")
        return body_of(response) if response.status_code == 200 else None


@pytest.fixture
def fanout(make_context: ContextFactory, host: FunctionHost) -> Callable[..., Fanout]:
    def build(*, memory: bool = False, **overrides: str) -> Fanout:
        storage = MemoryStorage() if memory else None
        settings = {"KEEPALIVE_FANOUT_THRESHOLD": "10", **overrides}
        stores = storage.stores() if storage is not None else None
        ctx = make_context(graph=True, install=True, stores=stores, **settings)
        return Fanout(ctx, host, storage)

    return build


def keepalives(standins: Standins) -> Counter[str]:
    return Counter(r.call_id for r in standins.graph.requests if r.call_id is not None)


def test_a_tick_over_the_threshold_only_writes_work_messages_that_cover_the_table(fanout, standins, caplog):
    f = fanout()
    ids = [f"call-{i:02d}" for i in range(30)]
    f.register(*ids)

    with caplog.at_level(logging.INFO, logger="shared"):
        f.tick()

    assert standins.graph.requests == []  # the timer sweeps nothing itself
    messages = f.work_messages()
    bodies = [json.loads(m.content) for m in messages]
    assert len(bodies) >= 3  # 30 calls at 10 a range
    assert all(b["schemaVersion"] == 1 and b["type"] == "keepaliveRange" for b in bodies)
    assert len({b["tickId"] for b in bodies}) == 1
    partitions = sorted(p for b in bodies for p in b["partitions"])
    assert partitions == list(ALL_PARTITIONS)  # every partition, once
    lines = [r.getMessage() for r in caplog.records]
    assert f"keepalive fanout ranges={len(bodies)}" in " ".join(lines)
    assert not any(line.startswith("keepalive tick ") for line in lines)


def test_the_queue_function_keeps_every_call_alive_exactly_once(fanout, standins, caplog):
    f = fanout()
    ids = [f"call-{i:02d}" for i in range(30)]
    f.register(*ids)
    f.tick()
    messages = f.work_messages()

    with caplog.at_level(logging.INFO, logger="shared"):
        for message in messages:
            f.run(message)

    assert keepalives(standins) == Counter(dict.fromkeys(ids, 1))
    for call_id in ids:
        record = f.get(call_id)
        assert record is not None and record["lastStatus"] == 200 and record["lastKeepAliveAt"] is not None
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keepalive tick ")]
    assert len(summaries) == len(messages)  # one summary per work message
    assert sum(int(line.split("calls=")[1].split()[0]) for line in summaries) == 30
    assert all("partitions=" in line and "tickId=" in line and "dequeueCount=1" in line for line in summaries)


def message_for(messages: list[Any], partition: str) -> Any:
    return next(m for m in messages if partition in json.loads(m.content)["partitions"])


def test_a_range_whose_delete_failed_is_retried_and_the_event_keeps_its_event_id(fanout, standins):
    f = fanout(memory=True)
    ids = [f"call-{i:02d}" for i in range(30)]
    f.register("gone", *ids)
    registration = f.get("gone")
    assert registration is not None
    standins.graph.script("gone", 404, 404)
    f.memory.faults.fail("calls.delete")  # type: ignore[union-attr]
    f.tick()
    message = message_for(f.work_messages(), call_keys("gone")[0])
    in_range = [c for c in ids if call_keys(c)[0] in json.loads(message.content)["partitions"]]

    with pytest.raises(RangeIncomplete):
        f.run(message, dequeue_count=1)
    assert f.get("gone") is not None  # the event went out, the delete failed: the call is kept
    first = f.events()
    assert [e["callId"] for e in first] == ["gone"]

    f.run(message, dequeue_count=2)  # the host delivers it again
    assert f.get("gone") is None
    events = f.events()
    assert [e["callId"] for e in events] == ["gone", "gone"]
    assert {e["eventId"] for e in events} == {first[0]["eventId"]}  # the repeat keeps its eventId
    counts = keepalives(standins)
    assert counts["gone"] == 2
    assert all(counts[c] == 2 for c in in_range)  # a retried range repeats its keepAlives


def test_a_range_whose_table_read_failed_part_way_is_retried(fanout, standins):
    f = fanout(memory=True, KEEPALIVE_FANOUT_THRESHOLD="40")  # ranges of many partitions
    ids = [f"call-{i:03d}" for i in range(80)]
    f.register(*ids)
    f.tick()
    messages = f.work_messages()
    message = max(messages, key=lambda m: len(json.loads(m.content)["partitions"]))
    partitions = json.loads(message.content)["partitions"]
    assert len(partitions) >= 2
    failing = partitions[-1]  # reading the range's last partition fails, once
    f.memory.faults.fail("calls.page", when=lambda index, partition: partition == failing)  # type: ignore[union-attr]
    in_range = [c for c in ids if call_keys(c)[0] in partitions]
    last = [c for c in in_range if call_keys(c)[0] == partitions[-1]]

    with pytest.raises(RangeIncomplete):
        f.run(message, dequeue_count=1)
    counts = keepalives(standins)
    assert all(counts[c] == 1 for c in in_range if c not in last) and all(counts[c] == 0 for c in last)

    f.run(message, dequeue_count=2)
    counts = keepalives(standins)
    assert all(counts[c] >= 1 for c in in_range)
    assert all(f.get(c)["lastKeepAliveAt"] is not None for c in in_range)  # type: ignore[index]


def test_a_dry_run_never_fans_out(fanout, standins, caplog):
    f = fanout(GRAPH_DRY_RUN="true")
    f.register(*[f"call-{i:02d}" for i in range(30)])

    with caplog.at_level(logging.INFO, logger="shared"):
        f.tick()

    assert f.work_messages() == [] and standins.graph.requests == []
    lines = [r.getMessage() for r in caplog.records]
    assert not any(line.startswith("keepalive fanout") for line in lines)
    [summary] = [line for line in lines if line.startswith("keepalive tick ")]
    assert "calls=30" in summary and "dryRun=true" in summary


def test_below_the_threshold_the_timer_sweeps_itself(fanout, standins):
    f = fanout(KEEPALIVE_FANOUT_THRESHOLD="30")
    ids = [f"call-{i:02d}" for i in range(30)]
    f.register(*ids)
    f.tick()
    assert f.work_messages() == []
    assert keepalives(standins) == Counter(dict.fromkeys(ids, 1))


@pytest.mark.parametrize("calls", [1, 30], ids=["sweep", "fan-out"])
def test_each_timer_invocation_purges_expired_ends_after_its_sweep_or_fan_out(fanout, standins, caplog, calls):
    f = fanout(memory=True)  # a threshold of 10: 30 calls fan out, 1 is swept by the timer itself
    f.register(*[f"call-{i:02d}" for i in range(calls)])
    ends = f.memory.ends  # type: ignore[union-attr]
    for i in range(3000):  # 30 requests of 100 `terminated` items' worth: more than 1,000 a tick
        ends.remember(f"gone-{i}", tenant_id=None, reason="terminatedNotification", now=utc_now() - timedelta(hours=25))
    ends.remember("recent", tenant_id=None, reason="keepAliveNotFound", now=utc_now())

    with caplog.at_level(logging.INFO, logger="shared"):
        f.tick()

    assert [end[0] for end in ends.ends()] == ["recent"]  # every expired end in one invocation
    lines = [r.getMessage() for r in caplog.records]
    purged = next(i for i, line in enumerate(lines) if line.startswith("ended calls purged removed=3000"))
    swept = next(i for i, line in enumerate(lines) if line.startswith(("keepalive tick ", "keepalive fanout ")))
    assert swept < purged  # after its sweep or fan-out: the keepAlives never wait for the purge


def test_an_invalid_work_message_is_dropped_not_retried(fanout, standins, caplog):
    f = fanout()
    with caplog.at_level(logging.ERROR):
        f.host.user_function("keepalive_work")(QueueMessage(id="m1", body=b'{"type": "other"}', dequeue_count=1))
    assert any("keepalive work message dropped id=m1" in r.getMessage() for r in caplog.records)
    assert standins.graph.requests == []
