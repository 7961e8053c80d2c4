"""What a keepAlive and a tick come to, as the event, the record and the log show them: pure mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.events import call_ended_event
from shared.graph import KeepAliveResult
from shared.models import CallRecord
from shared.summary import TickSummary

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RECORD = CallRecord(
    call_id="c1",
    tenant_id=None,
    registered_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    registration_id="reg-1",
    last_keepalive_at=datetime(2026, 11, 27, 12, 10, 0, 250000, tzinfo=UTC),
    metadata={"bot": "é"},
)
DETECTED = datetime(2026, 11, 27, 12, 20, 0, 999999, tzinfo=UTC)


# --- KeepAliveResult ---------------------------------------------------------------------------------
def test_graph_fields_of_a_result_without_an_answer_are_null_but_the_client_request_id():
    result = KeepAliveResult(status=None, error="timeout", client_request_id="crid", attempts=4, retries=3)
    assert result.graph_fields() == {
        "status": None,
        "code": None,
        "message": None,
        "requestId": None,
        "clientRequestId": "crid",
    }


@pytest.mark.parametrize(("length", "kept"), [(0, 0), (1024, 1024), (1025, 1024)])
def test_graph_fields_cut_the_message_to_1024_characters(length, kept):
    result = KeepAliveResult(status=404, message="é" * length)
    assert result.graph_fields()["message"] == "é" * kept


# --- the callEnded event ------------------------------------------------------------------------------
def test_the_call_ended_event_of_a_404():
    graph = KeepAliveResult(
        status=404, code="itemNotFound", message="m" * 2000, request_id="rq", client_request_id="crid"
    ).graph_fields()
    event = call_ended_event(RECORD, tenant_id=TENANT, detected_at=DETECTED, reason="keepAliveNotFound", graph=graph)
    assert event == {
        "schemaVersion": 1,
        "type": "callEnded",
        "eventId": "reg-1",
        "callId": "c1",
        "tenantId": TENANT,  # the resolved tenant, not the record's null
        "registeredAt": "2026-11-27T12:00:00.000Z",
        "lastKeepAliveAt": "2026-11-27T12:10:00.250Z",
        "detectedAt": "2026-11-27T12:20:00.999Z",
        "reason": "keepAliveNotFound",
        "graph": {
            "status": 404,
            "code": "itemNotFound",
            "message": "m" * 1024,
            "requestId": "rq",
            "clientRequestId": "crid",
        },
        "metadata": {"bot": "é"},
    }


def test_the_event_id_is_the_registrations_so_a_repeat_is_the_same_event():
    first = call_ended_event(RECORD, tenant_id=TENANT, detected_at=DETECTED, reason="r", graph={})
    again = call_ended_event(
        RECORD, tenant_id=TENANT, detected_at=datetime(2027, 1, 1, tzinfo=UTC), reason="r", graph={}
    )
    assert first["eventId"] == again["eventId"] == "reg-1"


def test_the_event_of_a_terminated_notification_carries_its_result_info_and_a_long_message_is_cut():
    graph = {"code": 0, "subcode": 540000, "message": "x" * 5000}
    event = call_ended_event(
        RECORD, tenant_id=TENANT, detected_at=DETECTED, reason="terminatedNotification", graph=graph
    )
    assert (event["reason"], event["graph"]) == (
        "terminatedNotification",
        {"code": 0, "subcode": 540000, "message": "x" * 1024},
    )
    assert graph["message"] == "x" * 5000  # the caller's mapping is left as it was


# --- the tick's summary line ----------------------------------------------------------------------------
CONTRACT_KEYS = ["calls", "succeeded", "ended", "failed", "retries", "seconds"]


def pairs(text: str) -> dict[str, str]:
    assert text.startswith("keepalive tick ")
    return dict(pair.split("=", 1) for pair in text.removeprefix("keepalive tick ").split(" "))


def test_the_summary_line_has_the_contract_keys_first_in_the_contract_order():
    text = TickSummary(calls=10, succeeded=6, ended=2, failed=2, retries=5, seconds=12.345).log_text()
    assert text.startswith("keepalive tick calls=10 succeeded=6 ended=2 failed=2 retries=5 seconds=12.3 ")
    assert list(pairs(text))[:6] == CONTRACT_KEYS  # more keys may follow (contract), never before these


def test_the_keys_after_the_contracts_of_an_incomplete_dry_run():
    summary = TickSummary(calls=3, skipped=3, at_risk=1, seconds=0.04, dry_run=True, complete=False, unsaved=2)
    values = pairs(summary.log_text())
    assert {key: values[key] for key in CONTRACT_KEYS} == {
        "calls": "3", "succeeded": "0", "ended": "0", "failed": "0", "retries": "0", "seconds": "0.0",
    }  # fmt: skip
    extra = {"atRisk": "1", "skipped": "3", "dryRun": "true", "complete": "false", "unsaved": "2", "notSent": "0"}
    assert {key: values[key] for key in extra} == extra
