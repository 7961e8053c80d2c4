"""The sweep's orchestration with fakes of our own protocols, a fake clock and no services."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.budget import schedule_interval
from shared.context import Context
from shared.errors import SettingsError, StorageUnavailable
from shared.graph import KeepAliveResult
from shared.keepalive import check_settings, preflight, purge_budget
from shared.models import CallRecord
from shared.settings import load_settings
from shared.sweep import Sweep
from shared.writers import DryRunSender, DryRunWriter
from tests.fakes import FakeSender, FakeWriter

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


def test_bad_settings_refuse_the_tick_with_one_error_naming_them(caplog):
    settings = load_settings({"KEEPALIVE_CONCURRENCY": "0", "GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "x"})
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError) as raised:
        preflight(Context(settings), dry=False)  # before any client is built or storage is asked
    assert "KEEPALIVE_CONCURRENCY" in str(raised.value)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "KEEPALIVE_CONCURRENCY" in errors[0].getMessage()


def test_a_dry_run_needs_no_credential_but_a_real_tick_does():
    settings = load_settings({})
    check_settings(settings, dry_run=True)
    with pytest.raises(SettingsError) as raised:
        check_settings(settings, dry_run=False)
    assert "GRAPH_CLIENT_SECRET" in str(raised.value) and "GRAPH_CLIENT_ID" in str(raised.value)


@pytest.mark.parametrize(
    ("schedule", "budget"),
    [
        ("0 */10 * * * *", 120.0),  # the default: 2 minutes of every 10
        ("0 */5 * * * *", 60.0),  # a fifth of a shorter interval
        ("0 * * * * *", 12.0),
        ("0 0 * * * *", 120.0),  # never more than 2 minutes
        ("not a schedule", 120.0),
    ],
)
def test_the_purge_of_ended_calls_gets_a_fifth_of_the_interval_at_most_two_minutes(schedule, budget):
    assert purge_budget(schedule_interval(schedule)) == budget
