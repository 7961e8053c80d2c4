"""The sweep (shared/sweep.py) with fakes of our own protocols, a fake clock and no services; and a whole sweep over
storage in memory when storage fails part way: what was read is swept, nothing is lost, an ended call's event is
repeated under the same `eventId`, and the next sweep records what this one could not."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import StorageUnavailable
from shared.graph import KeepAliveResult
from shared.models import CallRecord, call_keys, format_time
from shared.settings import load_settings
from shared.storage import SkippedRows
from shared.summary import TickSummary
from shared.sweep import Sweep, Unsaved
from shared.writers import BatchWriter, DryRunSender, DryRunWriter
from tests.fakes import FakeClock, FakeSender, FakeWriter, MemoryStorage

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def record(call_id: str, *, tenant: str | None = TENANT, age_minutes: float = 0, last_ok_minutes: float | None = None):
    return CallRecord(
        call_id=call_id,
        tenant_id=tenant,
        registered_at=NOW - timedelta(minutes=age_minutes),
        registration_id=f"reg-{call_id}",
        last_keepalive_at=None if last_ok_minutes is None else NOW - timedelta(minutes=last_ok_minutes),
        metadata={"m": call_id},
    )


def sweep(sender, writer, **settings):
    values = {"GRAPH_DRY_RUN": "true", **{k: str(v) for k, v in settings.items()}}
    return Sweep(load_settings(values), sender, writer, lambda: NOW)


def test_each_outcome_goes_to_the_writer_and_the_summary():
    sender = FakeSender(
        {
            "gone": KeepAliveResult(status=404, code="NotFound", message="m" * 2000, request_id="rq", attempts=1),
            "throttled": KeepAliveResult(status=429, error="429 TooManyRequests", attempts=4, retries=3),
            "flaky": KeepAliveResult(status=200, attempts=2, retries=1),
        }
    )
    writer = FakeWriter()
    summary = sweep(sender, writer).run([[record("ok"), record("gone")], [record("throttled"), record("flaky")]])

    assert (summary.calls, summary.succeeded, summary.ended, summary.failed, summary.retries) == (4, 2, 1, 1, 4)
    assert summary.complete
    assert writer.flushes == 1  # what a writer buffers is written once, at the end of the sweep
    ops = {op[1]: op for op in writer.ops}
    assert ops["ok"][0] == "succeeded" and ops["flaky"][0] == "succeeded"
    assert ops["throttled"][:4] == ("failed", "throttled", 429, "429 TooManyRequests")
    event = ops["gone"][2]
    assert event["schemaVersion"] == 1 and event["type"] == "callEnded"
    assert event["eventId"] == "reg-gone" and event["callId"] == "gone" and event["tenantId"] == TENANT
    assert event["reason"] == "keepAliveNotFound" and event["detectedAt"] == "2026-11-27T12:00:00.000Z"
    assert event["graph"]["status"] == 404 and event["graph"]["code"] == "NotFound"
    assert len(event["graph"]["message"]) == 1024 and event["graph"]["requestId"] == "rq"
    assert event["metadata"] == {"m": "gone"} and event["lastKeepAliveAt"] is None


def test_summary_line_has_the_contract_keys():
    summary = sweep(FakeSender(), FakeWriter()).run([[record("a")]])
    text = summary.log_text()
    assert text.startswith("keepalive tick calls=1 succeeded=1 ended=0 failed=0 retries=0 seconds=")


def test_a_call_without_tenant_uses_graph_tenant_id_else_fails_without_a_request():
    other = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
    sender, writer = FakeSender(), FakeWriter()
    sweep(sender, writer, GRAPH_TENANT_ID=other).run([[record("a", tenant=None)]])
    assert sender.sent == [("a", other)]

    sender, writer = FakeSender(), FakeWriter()
    summary = sweep(sender, writer).run([[record("b", tenant=None)]])
    assert sender.sent == [] and summary.failed == 1
    assert writer.ops == [("failed", "b", None, "no tenant")]


def test_concurrency_is_bounded_and_used():
    gate = threading.Event()
    sender = FakeSender(gate=gate)
    calls = [record(f"c{i}") for i in range(40)]
    timer = threading.Timer(0.3, gate.set)
    timer.start()
    summary = sweep(sender, FakeWriter(), KEEPALIVE_CONCURRENCY=8).run([calls])
    timer.join()
    assert summary.succeeded == 40
    assert sender.max_in_flight == 8


def test_pages_are_read_lazily_so_memory_stays_bounded():
    gate = threading.Event()
    sender = FakeSender(gate=gate)
    produced = 0

    def pages():
        nonlocal produced
        for p in range(50):
            produced += 1
            yield [record(f"p{p}-{i}") for i in range(10)]

    def release():
        # while every worker is blocked, the sweep must not have read far ahead of them
        assert produced <= 2, produced
        gate.set()

    timer = threading.Timer(0.3, release)
    timer.start()
    summary = sweep(sender, FakeWriter(), KEEPALIVE_CONCURRENCY=4).run(pages())
    timer.join()
    assert summary.calls == 500 and produced == 50


def test_storage_failing_on_a_write_keeps_going_and_counts_a_failure():
    summary = sweep(FakeSender(), FakeWriter(fail_on={"b"})).run([[record("a"), record("b"), record("c")]])
    assert (summary.succeeded, summary.failed) == (2, 1)


def test_storage_failing_while_reading_pages_ends_the_sweep_incomplete():
    def pages():
        yield [record("a")]
        raise StorageUnavailable("down")

    summary = sweep(FakeSender(), FakeWriter()).run(pages())
    assert summary.calls == 1 and summary.succeeded == 1 and not summary.complete
    assert "complete=false" in summary.log_text()


def test_at_risk_calls_are_warned_by_call_id(caplog):
    sender = FakeSender({"failing-old": KeepAliveResult(status=503, error="503", attempts=4, retries=3)})
    calls = [
        record("failing-old", age_minutes=120, last_ok_minutes=31),
        record("ok-old", age_minutes=120, last_ok_minutes=40),  # succeeds now: not at risk
        record("failing-new", age_minutes=5),
    ]
    sender.results["failing-new"] = KeepAliveResult(status=503, error="503", attempts=4, retries=3)
    with caplog.at_level(logging.WARNING, logger="shared"):
        summary = sweep(sender, FakeWriter(), KEEPALIVE_AT_RISK_MINUTES=30).run([calls])
    at_risk = [r.getMessage() for r in caplog.records if "at risk" in r.getMessage()]
    assert summary.at_risk == 1
    assert len(at_risk) == 1 and "callId=failing-old" in at_risk[0] and "minutes=31" in at_risk[0]


def test_dry_run_sends_nothing_and_writes_nothing(caplog):
    settings = load_settings({"GRAPH_DRY_RUN": "true", "GRAPH_BASE_URL": "https://graph.example"})
    with caplog.at_level(logging.INFO, logger="shared"):
        summary = Sweep(settings, DryRunSender(settings), DryRunWriter(), lambda: NOW, dry_run=True).run(
            [[record("a b?")]]
        )
    assert (summary.calls, summary.not_sent, summary.succeeded, summary.failed) == (1, 1, 0, 0)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "dry run" in messages
    assert "https://graph.example/v1.0/communications/calls/a%20b%3F/keepAlive" in messages


def test_outcomes_a_writer_could_not_save_count_as_failures():
    losing = FakeWriter(unsaved=Unsaved(succeeded=2, failed=0))
    sweep = Sweep(load_settings({"GRAPH_DRY_RUN": "true"}), FakeSender(), losing, lambda: NOW)
    summary = sweep.run([[record("a"), record("b"), record("c")]])
    assert all(kind == "succeeded" for kind, *_ in losing.ops)  # no call ends here
    assert (summary.calls, summary.succeeded, summary.failed, summary.unsaved) == (3, 1, 2, 2)
    assert " unsaved=2 " in summary.log_text()


# --- a whole sweep over storage in memory, when storage fails part way --------------------------------------------
GONE = KeepAliveResult(status=404, code="NotFound", attempts=1)


class Tick:
    """What `run_tick` does, over storage in memory and a fake sender: every page, a `BatchWriter`, the end
    sequence; `clock` moves 10 minutes before each tick."""

    def __init__(self, *, topic: bool = False, concurrency: int = 4) -> None:
        self.storage = MemoryStorage(topic=topic)
        self.clock = FakeClock(NOW)
        self.sender = FakeSender()
        self.settings = load_settings({"KEEPALIVE_CONCURRENCY": str(concurrency)})

    def register(self, *call_ids: str) -> dict[str, CallRecord]:
        records = {}
        for i, call_id in enumerate(call_ids):
            record = CallRecord(call_id, TENANT, self.clock(), f"00000000-0000-4000-8000-{i:012d}", metadata={})
            assert self.storage.calls.insert(record)
            records[call_id] = record
        return records

    def __call__(self, page_size: int = 1000) -> TickSummary:
        self.clock.advance(minutes=10)
        self.sender.sent.clear()
        storage = self.storage
        writer = BatchWriter(storage.calls, storage.event_queues, storage.ends, self.clock)
        skipped = SkippedRows()
        return Sweep(self.settings, self.sender, writer, self.clock).run(
            storage.calls.pages(page_size, skipped), skipped
        )

    def stored(self) -> dict[str, CallRecord]:
        return {r.call_id: r for page in self.storage.calls.pages() for r in page}

    def swept(self) -> set[str]:
        return {call_id for call_id, _ in self.sender.sent}


def test_reading_the_table_failing_part_way_sweeps_what_was_read_and_leaves_the_rest_for_the_next_tick(caplog):
    tick = Tick()
    ids = [f"call-{i:02d}" for i in range(50)]
    tick.register(*ids)
    tick.storage.faults.fail(
        "calls.page", when=lambda index, partition: index == 2
    )  # two pages of 10, then storage fails

    with caplog.at_level(logging.ERROR):
        partial = tick(page_size=10)
    assert (partial.calls, partial.succeeded, partial.complete) == (20, 20, False)
    assert any("could not read calls" in r.getMessage() for r in caplog.records)
    assert len(tick.swept()) == 20
    assert {c for c, r in tick.stored().items() if r.last_keepalive_at is not None} == tick.swept()
    assert sorted(tick.stored()) == ids  # nothing lost

    full = tick(page_size=10)
    assert (full.calls, full.succeeded, full.complete) == (50, 50, True) and tick.swept() == set(ids)
    assert {r.last_keepalive_at for r in tick.stored().values()} == {tick.clock()}


def test_writes_failing_part_way_keep_the_calls_and_the_next_tick_records_them(caplog):
    tick = Tick()
    ids = [f"call-{i:02d}" for i in range(20)]
    records = tick.register(*ids, "gone")
    tick.sender.results["gone"] = GONE
    bad = {call_keys(call_id)[0] for call_id in ids[::2]}
    unwritten = {call_id for call_id in ids if call_keys(call_id)[0] in bad}
    faults = tick.storage.faults  # a partition's outcomes are written in one transaction, or alone when one
    batches = faults.fail("calls.replace_all", times=10**6, when=lambda changes: changes[0][0]["PartitionKey"] in bad)
    singles = faults.fail("calls.replace", times=10**6, when=lambda entity: entity["PartitionKey"] in bad)
    deletes = tick.storage.faults.fail("calls.delete")  # and the first delete after a callEnded event

    with caplog.at_level(logging.ERROR):
        first = tick()
    assert (first.calls, first.ended) == (21, 0)
    assert (first.succeeded, first.failed) == (20 - len(unwritten), len(unwritten) + 1)
    assert batches.raised + singles.raised == len(bad) and deletes.raised == 1
    assert sum("StorageUnavailable" in r.getMessage() for r in caplog.records) == len(bad) + 1
    assert sorted(tick.stored()) == sorted([*ids, "gone"])  # nothing lost
    assert {c for c, r in tick.stored().items() if r.last_keepalive_at is not None} == set(ids) - unwritten

    tick.storage.faults.clear()  # storage is back
    second = tick()
    assert (second.calls, second.succeeded, second.ended, second.failed) == (21, 20, 1, 0)
    assert sorted(tick.stored()) == ids
    assert {r.last_keepalive_at for r in tick.stored().values()} == {tick.clock()}
    events = tick.storage.cleanup.events()
    assert [e["callId"] for e in events] == ["gone", "gone"]  # the first delete failed: the event repeats
    assert {e["eventId"] for e in events} == {records["gone"].registration_id}


@pytest.mark.parametrize("failing", ["cleanup.send", "call_events.send", "ends.remember", "calls.delete"])
def test_any_step_of_an_end_failing_keeps_the_call_and_the_next_tick_ends_it_under_the_same_event_id(failing):
    tick = Tick(topic=True)
    records = tick.register("gone", "live")
    tick.sender.results["gone"] = GONE
    tick.storage.faults.fail(failing)

    first = tick()
    assert (first.ended, first.failed, first.succeeded) == (0, 1, 1)
    assert sorted(tick.stored()) == ["gone", "live"]  # kept: the next tick reports it again
    assert not tick.storage.ends.recently_ended("gone", TENANT, tick.clock()) or failing == "calls.delete"

    second = tick()
    assert (second.ended, second.succeeded) == (1, 1) and sorted(tick.stored()) == ["live"]
    assert tick.storage.ends.recently_ended("gone", TENANT, tick.clock())
    events = tick.storage.cleanup.events()
    assert {e["eventId"] for e in events} == {records["gone"].registration_id}  # a repeat, never a new id
    assert events[-1]["detectedAt"] == format_time(tick.clock())
    assert tick.storage.call_events is not None and tick.storage.call_events.events()[-1] == events[-1]
