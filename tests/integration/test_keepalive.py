"""The keep-alive tick end to end: real Azurite, real MSAL and requests against the local HTTPS stand-ins.

One test per row of the contract's outcome table, and the guarantees around it. Waits between
retries go to a fake sleep; the clock is injected where a test needs time to pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from shared.context import Context
from shared.errors import SettingsError
from shared.keepalive import run_tick
from shared.loglimit import FAILURE_WARNINGS
from shared.models import call_keys, utc_now
from shared.summary import TickSummary
from tests.azurite import decode_event
from tests.conftest import ContextFactory
from tests.fakes import RecordingSleep
from tests.host import FunctionHost, body_of
from tests.standins.fixtures import Standins
from tests.standins.server import RESET, Reply

pytestmark = pytest.mark.integration

OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"


class Tick:
    """A context on Azurite and the stand-ins, the functions bound to it, and what the tick slept."""

    def __init__(self, context: Context, host: FunctionHost, standins: Standins, queue: QueueClient) -> None:
        self.ctx = context
        self.host = host
        self.standins = standins
        self.queue = queue
        self.waits: list[float] = []

    def register(self, call_id: str, tenant: str | None = None, **metadata: str) -> dict[str, Any]:
        body: dict[str, Any] = {"callId": call_id, "metadata": metadata}
        if tenant:
            body["tenantId"] = tenant
        response = self.host.request("POST", "/api/calls", body=body)
        assert response.status_code == 201, response.get_body()
        return body_of(response)

    def get(self, call_id: str) -> dict[str, Any] | None:
        response = self.host.request("GET", "/api/calls/" + quote(call_id, safe=""))
        return body_of(response) if response.status_code == 200 else None

    def run(self, **kwargs: Any) -> TickSummary:
        return run_tick(self.ctx, **kwargs)

    def events(self) -> list[dict[str, Any]]:
        """Every message on the cleanup queue, decoded the way a Functions queue trigger would."""
        try:
            messages = self.queue.peek_messages(max_messages=32)
        except ResourceNotFoundError:  # never created: nothing was sent
            return []
        return [decode_event(m.content) for m in messages]


@pytest.fixture
def tick(make_context: ContextFactory, standins: Standins, host: FunctionHost) -> Callable[..., Tick]:
    def build(now: Callable[[], datetime] = utc_now, **overrides: str) -> Tick:
        sleep = RecordingSleep()
        context = make_context(graph=True, install=True, now=now, sleep=sleep, **overrides)
        queue = QueueClient.from_connection_string(
            context.settings.storage.connection_string,  # type: ignore[union-attr]
            context.settings.cleanup_queue_name,
        )
        harness = Tick(context, host, standins, queue)
        harness.waits = sleep.waits
        return harness

    return build


# --- 2xx ---------------------------------------------------------------------------------------
def test_2xx_records_the_success(tick, standins: Standins, caplog):
    t = tick()
    t.register("ok-1")
    t.register("ok-2")
    standins.graph.script("ok-2", 202)
    before = utc_now()

    with caplog.at_level(logging.INFO, logger="shared"):
        summary = t.run()

    assert (summary.calls, summary.succeeded, summary.failed, summary.ended) == (2, 2, 0, 0)
    for call_id, status in (("ok-1", 200), ("ok-2", 202)):
        record = t.get(call_id)
        assert record is not None
        assert record["lastStatus"] == status and record["lastError"] is None
        assert record["consecutiveFailures"] == 0
        assert record["lastKeepAliveAt"] >= before.strftime("%Y-%m-%dT%H:%M:%S")
        [sent] = standins.graph.requests_for(call_id)
        assert sent.method == "POST" and sent.header("Content-Length") == "0"
        assert (sent.header("Authorization") or "").startswith("Bearer ")
        assert (sent.header("User-Agent") or "").startswith("callkeeper/")
        assert sent.tenant == standins.tenant
    ids = {r.header("client-request-id") for r in standins.graph.requests}
    assert len(ids) == 2
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keepalive tick ")]
    assert line.startswith("keepalive tick calls=2 succeeded=2 ended=0 failed=0 retries=0 seconds=")
    assert [r.levelno for r in caplog.records if r.getMessage().startswith("keepalive tick ")] == [logging.INFO]


def test_a_success_resets_the_failure_count(tick, standins: Standins):
    t = tick()
    t.register("c")
    standins.graph.script("c", 400)
    t.run()
    assert t.get("c")["consecutiveFailures"] == 1
    t.run()
    record = t.get("c")
    assert (record["consecutiveFailures"], record["lastStatus"], record["lastError"]) == (0, 200, None)


# --- 404 ---------------------------------------------------------------------------------------
def test_404_sends_the_event_then_deletes_the_call(tick, standins: Standins, table_entities):
    t = tick()
    registered = t.register("ended-1", tenant=None, meeting="standup")
    t.register("alive")
    standins.graph.script("ended-1", 404)

    summary = t.run()

    assert (summary.ended, summary.succeeded, summary.failed) == (1, 1, 0)
    assert t.get("ended-1") is None
    assert [e["CallId"] for e in table_entities()] == ["alive"]
    [event] = t.events()
    [sent] = standins.graph.requests_for("ended-1")
    assert set(event) == {
        "schemaVersion", "type", "eventId", "callId", "tenantId", "registeredAt", "lastKeepAliveAt",
        "detectedAt", "reason", "graph", "metadata",
    }  # fmt: skip
    assert event["schemaVersion"] == 1 and event["type"] == "callEnded" and event["reason"] == "keepAliveNotFound"
    assert event["callId"] == "ended-1"
    assert event["tenantId"] == standins.tenant  # resolved: the registration had the default tenant
    assert event["registeredAt"] == registered["registeredAt"] and event["lastKeepAliveAt"] is None
    assert event["detectedAt"].endswith("Z")
    assert event["graph"]["status"] == 404 and event["graph"]["code"] == "itemNotFound"
    assert event["graph"]["clientRequestId"] == sent.header("client-request-id")
    assert event["graph"]["requestId"]
    assert event["metadata"] == {"meeting": "standup"}
    entity = t.ctx.storage.table().list_entities()
    assert len(list(entity)) == 1
    assert t.ctx.recent_ends.recently_ended("ended-1", standins.tenant, utc_now())


def test_event_id_is_stable_for_a_registration_and_new_for_the_next(tick, standins: Standins):
    t = tick()
    t.register("c")
    first_id = t.ctx.calls.get("c").registration_id
    standins.graph.script("c", 404)
    t.run()
    t.register("c")  # the bot registers the same callId again: a new registration
    standins.graph.script("c", 404)
    t.run()
    events = t.events()
    assert [e["eventId"] for e in events][0] == first_id
    assert len({e["eventId"] for e in events}) == 2


# --- 429 / 5xx / timeout / connection error ----------------------------------------------------
def test_429_waits_retry_after_seconds_then_succeeds(tick, standins: Standins):
    t = tick()
    t.register("c")
    standins.graph.script("c", Reply(429, {"Retry-After": "7"}), 200)
    summary = t.run()
    assert (summary.succeeded, summary.retries) == (1, 1)
    assert t.waits == [7.0]
    assert len(standins.graph.requests_for("c")) == 2


def test_429_waits_retry_after_http_date_capped_at_60(tick, standins: Standins):
    t = tick()
    t.register("soon")
    t.register("late")
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    late = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    standins.graph.script("soon", Reply(429, {"Retry-After": soon}), 200)
    standins.graph.script("late", Reply(429, {"Retry-After": late}), 200)
    summary = t.run()
    assert summary.succeeded == 2
    assert max(t.waits) == 60.0
    assert any(15 <= w <= 21 for w in t.waits)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_persistent_5xx_is_four_attempts_then_recorded_and_kept(tick, standins: Standins, status: int):
    t = tick()
    t.register("c")
    standins.graph.script("c", *[status] * 8)

    summary = t.run()

    assert (summary.failed, summary.retries, summary.succeeded) == (1, 3, 0)
    assert len(standins.graph.requests_for("c")) == 4
    assert len(t.waits) == 3 and all(0 <= w <= 60 for w in t.waits)
    record = t.get("c")
    assert record["lastStatus"] == status and record["lastError"].startswith(str(status))
    assert record["consecutiveFailures"] == 1 and record["lastKeepAliveAt"] is None
    t.run()
    assert t.get("c")["consecutiveFailures"] == 2


def test_timeouts_are_retried_then_recorded_without_status(tick, standins: Standins):
    t = tick(KEEPALIVE_REQUEST_TIMEOUT="0.2")
    t.register("slow")
    standins.graph.script("slow", *[Reply(200, delay=0.6)] * 4)
    started = time.monotonic()
    summary = t.run()
    assert time.monotonic() - started < 5
    assert (summary.failed, summary.retries) == (1, 3)
    record = t.get("slow")
    assert record["lastStatus"] is None and record["lastError"] == "timeout"


def test_a_connection_reset_is_retried(tick, standins: Standins):
    t = tick()
    t.register("c")
    standins.graph.script("c", RESET, 200)
    summary = t.run()
    assert (summary.succeeded, summary.retries) == (1, 1)


# --- 401 / 403 / other 4xx ---------------------------------------------------------------------
def test_401_takes_a_fresh_token_once_and_retries_once(tick, standins: Standins):
    t = tick()
    t.register("c")
    t.run()
    assert standins.identity.requests_of(standins.tenant) == 1
    standins.identity.revoke_all()  # Graph now refuses the cached token

    summary = t.run()

    assert (summary.succeeded, summary.retries) == (1, 0)  # the re-send after a 401 is not a retry
    assert [r.status for r in standins.graph.requests_for("c")] == [200, 401, 200]
    assert standins.identity.requests_of(standins.tenant) == 2


def test_401_twice_records_the_failure_with_a_credentials_hint(tick, standins: Standins, caplog):
    t = tick()
    t.register("c")
    standins.graph.script("c", 401, 401, 200)
    with caplog.at_level(logging.WARNING):
        summary = t.run()
    assert summary.failed == 1
    assert len(standins.graph.requests_for("c")) == 2
    assert t.get("c")["lastStatus"] == 401
    assert any("credential" in r.getMessage().lower() for r in caplog.records)


def test_403_is_one_request_recorded_with_a_permissions_hint(tick, standins: Standins, caplog):
    t = tick()
    t.register("c")
    standins.graph.script("c", 403, 200)
    with caplog.at_level(logging.WARNING):
        summary = t.run()
    assert summary.failed == 1 and len(standins.graph.requests_for("c")) == 1
    record = t.get("c")
    assert record["lastStatus"] == 403 and record["consecutiveFailures"] == 1
    hints = " ".join(r.getMessage() for r in caplog.records)
    assert "another app registration or tenant" in hints and "checks no permission of its own" in hints
    assert "Calls.Initiate.All" not in hints  # contract: keepAlive checks no permission, so none is suggested


def test_failure_warnings_of_one_tick_are_capped_and_the_summary_counts_every_failure(tick, standins: Standins, caplog):
    t = tick(KEEPALIVE_CONCURRENCY="4")
    calls = [f"forbidden-{n}" for n in range(FAILURE_WARNINGS + 7)]
    for call_id in calls:
        t.register(call_id)
        standins.graph.script(call_id, 403)  # each call: a hint and a failure, 2 records
    with caplog.at_level(logging.DEBUG, logger="shared"):
        summary = t.run()
    assert summary.failed == len(calls)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    capped = [m for m in warnings if m.startswith("keepalive failure warnings capped")]
    assert capped == [
        f"keepalive failure warnings capped shown={FAILURE_WARNINGS} more={2 * len(calls) - FAILURE_WARNINGS} "
        f"total={2 * len(calls)} (the first {FAILURE_WARNINGS} are shown, the rest are logged at DEBUG; "
        "the tick summary counts every failure)"
    ]
    assert len(warnings) == FAILURE_WARNINGS + 1
    held_back = [
        r
        for r in caplog.records
        if r.levelno == logging.DEBUG and r.getMessage().startswith(("keepalive failed", "graph keepalive forbidden"))
    ]
    assert len(held_back) == 2 * len(calls) - FAILURE_WARNINGS  # still there at DEBUG (-v)
    summary_line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keepalive tick ")]
    assert f"failed={len(calls)}" in summary_line[0]


@pytest.mark.parametrize("status", [400, 405, 409, 410])
def test_other_4xx_is_one_request_recorded_and_kept(tick, standins: Standins, status: int):
    t = tick()
    t.register("c")
    standins.graph.script("c", status, 200)
    summary = t.run()
    assert summary.failed == 1 and len(standins.graph.requests_for("c")) == 1
    assert t.get("c")["lastStatus"] == status


# --- tokens, encoding, concurrency -------------------------------------------------------------
ODD_IDS = ["a b", "100%", "x:y", "it's", "Grüße📞", "a+b&c=d", "19:meeting_M2IzYTdl@thread.v2"]


@pytest.mark.parametrize("call_id", [i for i in ODD_IDS if " " not in i])
def test_the_call_id_reaches_graph_as_one_percent_encoded_segment(tick, standins: Standins, call_id: str):
    t = tick()
    t.register(call_id)
    t.run()
    [sent] = standins.graph.requests_for(call_id)
    assert sent.path == f"/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"


def test_one_token_request_per_tenant_across_two_tenants_and_two_ticks(tick, standins: Standins):
    t = tick(KEEPALIVE_CONCURRENCY="16")
    for i in range(20):
        t.register(f"a{i}", tenant=standins.tenant)
        t.register(f"b{i}", tenant=OTHER_TENANT)
    t.run()
    t.run()
    assert standins.identity.requests_of(standins.tenant) == 1
    assert standins.identity.requests_of(OTHER_TENANT) == 1
    tenants = {r.call_id[0]: r.tenant for r in standins.graph.requests}
    assert tenants == {"a": standins.tenant, "b": OTHER_TENANT}


def test_concurrency_never_exceeds_the_setting_and_is_used(tick, standins: Standins):
    t = tick(KEEPALIVE_CONCURRENCY="4")
    for i in range(24):
        t.register(f"c{i}")
    standins.graph.latency = 0.05
    summary = t.run()
    assert summary.succeeded == 24
    assert standins.graph.max_in_flight == 4


# --- races and faults --------------------------------------------------------------------------
def test_a_call_deleted_while_its_keepalive_is_in_flight_stays_deleted(tick, standins: Standins, table_entities):
    t = tick()
    t.register("c")
    standins.graph.script("c", Reply(200, delay=0.5))

    def delete_meanwhile() -> None:
        deadline = time.monotonic() + 5
        while not standins.graph.requests_for("c") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert t.host.request("DELETE", "/api/calls/c").status_code == 204

    deleter = threading.Thread(target=delete_meanwhile)
    deleter.start()
    summary = t.run()
    deleter.join()

    assert summary.calls == 1
    assert t.get("c") is None and table_entities() == []


# --- dry run, at risk, settings, the timer function --------------------------------------------
def test_dry_run_sends_nothing_and_changes_nothing(tick, standins: Standins, table_entities, caplog):
    t = tick(GRAPH_DRY_RUN="true")
    t.register("c1")
    t.register("c2")
    standins.graph.script("c2", 404)
    before = table_entities()

    with caplog.at_level(logging.INFO, logger="shared"):
        summary = t.run()

    assert standins.graph.requests == [] and standins.identity.requests_of(standins.tenant) == 0
    assert table_entities() == before
    assert t.events() == []
    assert summary.calls == 2 and summary.not_sent == 2 and summary.dry_run
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "dry run" in text and "/v1.0/communications/calls/c1/keepAlive" in text


def test_at_risk_calls_are_warned_by_call_id(tick, standins: Standins, caplog):
    clock = [utc_now()]
    t = tick(now=lambda: clock[0], KEEPALIVE_AT_RISK_MINUTES="30")
    t.register("failing")
    t.register("fine")
    standins.graph.script("failing", *[503] * 4)
    clock[0] += timedelta(minutes=31)
    with caplog.at_level(logging.WARNING, logger="shared"):
        summary = t.run()
    at_risk = [r.getMessage() for r in caplog.records if "at risk" in r.getMessage()]
    assert summary.at_risk == 1
    assert len(at_risk) == 1 and "callId=failing" in at_risk[0]


def test_a_missing_graph_setting_logs_one_error_and_changes_nothing(tick, standins: Standins, table_entities, caplog):
    t = tick(GRAPH_CLIENT_SECRET="")
    t.register("c")
    before = table_entities()
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError):
        t.run()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "GRAPH_CLIENT_SECRET" in errors[0]
    assert standins.graph.requests == [] and table_entities() == before


def test_the_timer_function_runs_a_tick_through_the_host(tick, standins: Standins, host: FunctionHost, caplog):
    t = tick()
    t.register("c")

    class Timer:
        past_due = True

    with caplog.at_level(logging.INFO):
        host.user_function("keepalive_tick")(Timer())

    messages = [r.getMessage() for r in caplog.records]
    assert any("past due" in m for m in messages)
    assert any(m.startswith("keepalive tick calls=1 succeeded=1") for m in messages)
    assert len(standins.graph.requests_for("c")) == 1
    assert call_keys("c")  # the call is still registered under its keys
    assert t.get("c")["lastStatus"] == 200


def test_the_secretless_chain_runs_a_whole_tick(tick, standins: Standins, monkeypatch):
    """Managed identity → federated assertion → MSAL app token → keepAlive, all against local stand-ins."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", standins.identity_endpoint)  # what App Service gives the app
    monkeypatch.setenv("IDENTITY_HEADER", standins.managed_identity.identity_header)
    t = tick(GRAPH_CLIENT_SECRET="", GRAPH_MANAGED_IDENTITY_CLIENT_ID=standins.managed_identity_client_id)
    t.register("c1")
    t.register("c2", tenant=OTHER_TENANT)

    summary = t.run()

    assert summary.succeeded == 2
    assert sorted((r.tenant, r.credential) for r in standins.identity.records) == sorted(
        [(standins.tenant, "federated"), (OTHER_TENANT, "federated")]
    )
    assert len(standins.managed_identity.requests) == 1


def test_the_identity_provider_failing_records_failures_and_deletes_nothing(tick, standins: Standins):
    from tests.standins.identity import entra_error

    t = tick()
    t.register("c1")
    t.register("c2")
    standins.identity.fail_next(*[entra_error(500, "server_error", 0, "down")] * 4)

    summary = t.run()

    assert summary.failed == 2 and summary.ended == 0
    for call_id in ("c1", "c2"):
        record = t.get(call_id)
        assert record is not None and record["lastError"].startswith("token: ")
    assert standins.graph.requests == []
