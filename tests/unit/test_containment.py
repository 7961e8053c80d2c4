"""Containment at every boundary (issue 18, part A), the rules that are pure logic: `lastError` and the identity
provider's code are bounded, a row is readable only when registration would accept it, and a callEnded event always
fits a queue message. (The one check of what Table Storage takes, items 1 and 9: tests/unit/test_tablewire.py.)"""

from __future__ import annotations

import base64
import json
import logging
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from shared.errors import TokenError, UnreadableRow
from shared.events import MAX_EVENT_BYTES, call_ended_event, event_text
from shared.graph import GraphClient
from shared.models import (
    EARLIEST,
    INT32_MAX,
    LATEST,
    MAX_LAST_ERROR,
    MAX_METADATA_BYTES,
    CallRecord,
    call_keys,
    last_error_text,
)
from shared.settings import load_settings
from shared.tokens import CODE_LIMIT, TokenProvider

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REGISTRATION = "3f1c1a52-7a39-4a8e-9a7e-3c1b0f2f3f3f"
HOSTILE = "x\nERROR forged line\r\x1b[2J\u202e\u2028\ufeff\ud800"
RECORD = CallRecord("c1", TENANT, NOW, REGISTRATION)


def unsafe(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"}]


# --- item 3: lastError and the identity provider's code --------------------------------------------------
def test_last_error_is_one_line_of_at_most_256_characters_wherever_it_is_built():
    assert last_error_text("429 TooManyRequests") == "429 TooManyRequests"
    assert len(last_error_text("x" * 5000)) == MAX_LAST_ERROR and last_error_text("x" * 5000).endswith("...")
    assert unsafe(last_error_text(HOSTILE * 100)) == [] and len(last_error_text(HOSTILE * 100)) <= MAX_LAST_ERROR
    failed = RECORD.with_result(now=NOW, status=400, error="400 " + HOSTILE * 1000, ok=False)
    assert (
        failed.last_error is not None and len(failed.last_error) <= MAX_LAST_ERROR and unsafe(failed.last_error) == []
    )
    # Graph's code, as the keepAlive client makes lastError of it
    body = json.dumps({"error": {"code": HOSTILE * 50, "message": "m"}}).encode()
    error = GraphClient._read(400, {}, body).error()
    assert error is not None and error.startswith("400 x\\u000aERROR") and len(error) <= MAX_LAST_ERROR
    assert unsafe(error) == []


class RefusingApp:
    """MSAL's answer when the identity provider refused: its `error` and ids are whatever it sent."""

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return {
            "error": "E" * 70_000 + HOSTILE,
            "error_description": "   ",
            "correlation_id": "c\nERROR forged" * 10_000,
        }


def test_the_identity_providers_code_is_cut_and_never_reaches_a_log_or_last_error_raw(caplog):
    settings = load_settings({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s3cret", "GRAPH_DRY_RUN": "false"})
    tokens = TokenProvider(settings, requests.Session())
    tokens._build_app = lambda tenant: RefusingApp()  # type: ignore[method-assign]
    with caplog.at_level(logging.DEBUG, logger="shared"), pytest.raises(TokenError) as refused:
        tokens.token(TENANT)
    assert len(refused.value.code) == CODE_LIMIT and "no description" in str(refused.value)
    [record] = [r for r in caplog.records if r.getMessage().startswith("graph token failed ")]
    assert unsafe(record.getMessage()) == [] and len(record.getMessage()) < 3 * 1024

    client = GraphClient(settings, requests.Session(), tokens, sleep=lambda s: None)
    result = client.keep_alive("c1", TENANT)
    assert result.error is not None and result.error.startswith("token: EEE")
    assert len(result.error) <= MAX_LAST_ERROR and unsafe(result.error) == []
    stored = RECORD.with_result(now=NOW, status=result.status, error=result.error, ok=False)
    assert stored.last_error == result.error  # bounded, so storage takes it (tests/unit/test_tablewire.py)


# --- items 4 and 5: readable only when registration would accept it --------------------------------------
def row(**changes: Any) -> dict[str, Any]:
    partition_key, row_key = call_keys("c1")
    values: dict[str, Any] = {
        "PartitionKey": partition_key,
        "RowKey": row_key,
        "CallId": "c1",
        "RegisteredAt": NOW,
        "RegistrationId": REGISTRATION,
        "ConsecutiveFailures": 0,
        "Metadata": "{}",
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def metadata_of(size: int, char: str = "x") -> str:
    """Compact metadata JSON of exactly `size` bytes of UTF-8 (`char` of 1 or 2 bytes)."""
    overhead = len(b'{"k":""}')
    count = (size - overhead) // len(char.encode())
    text = json.dumps({"k": char * count}, ensure_ascii=False, separators=(",", ":"))
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize(
    "changes",
    [
        {"Metadata": metadata_of(MAX_METADATA_BYTES + 1)},
        {"Metadata": metadata_of(MAX_METADATA_BYTES + 2, "é")},
        {"Metadata": json.dumps({"k": "x" * 60_000})},
        {"Metadata": '{"k":"\\ud800"}'},  # a lone surrogate once decoded
        {"Metadata": '{"\\udfff":"v"}'},
        {"Metadata": '{"k":"a\ud800"}'},  # one stored raw
        {"RegistrationId": "r"},
        {"RegistrationId": "x\nERROR forged"},
        {"RegisteredAt": datetime(1600, 12, 31, 23, 59, tzinfo=UTC)},
        {"RegisteredAt": "0999-01-01T00:00:00.000Z"},
        {"LastKeepAliveAt": "1000-01-01T00:00:00Z"},
        {"LastStatus": 1000},
        {"CallId": "a\u202eb", "PartitionKey": call_keys("a\u202eb")[0], "RowKey": call_keys("a\u202eb")[1]},
    ],
)
def test_a_row_beyond_what_registration_accepts_is_unreadable(changes):
    with pytest.raises(UnreadableRow):
        CallRecord.from_entity(row(**changes))


def test_a_row_at_the_limits_registration_accepts_is_readable():
    at_limit = CallRecord.from_entity(
        row(
            Metadata=metadata_of(MAX_METADATA_BYTES, "é"),
            ConsecutiveFailures=INT32_MAX,
            RegisteredAt=EARLIEST,
            LastKeepAliveAt=LATEST,
            LastStatus=999,
            TenantId=TENANT.upper(),
        )
    )
    assert len(at_limit.metadata["k"]) == (MAX_METADATA_BYTES - 8) // 2 and at_limit.tenant_id == TENANT
    assert at_limit.consecutive_failures == INT32_MAX
    assert json.loads(json.dumps(at_limit.to_json()))["registeredAt"] == "1601-01-01T00:00:00.000Z"


def test_a_last_error_written_before_its_limit_is_read_cut():
    record = CallRecord.from_entity(row(LastError="403 " + "C" * 70_000))
    assert record.last_error is not None and len(record.last_error) == MAX_LAST_ERROR


def test_a_callended_event_always_fits_a_queue_message():
    worst = CallRecord(
        "😀" * 256,
        TENANT,
        NOW,
        REGISTRATION,
        last_keepalive_at=NOW,
        metadata=json.loads(metadata_of(MAX_METADATA_BYTES, "é")),
    )
    graph = {name: "\x01" * 5000 for name in ("code", "message", "requestId", "clientRequestId", "subcode")}
    event = call_ended_event(worst, tenant_id=TENANT, detected_at=NOW, reason="keepAliveNotFound", graph=graph)
    text = event_text(event).encode("utf-8")
    assert len(text) <= MAX_EVENT_BYTES and len(base64.b64encode(text)) <= 64 * 1024
    assert event["graph"]["message"] == "\x01" * 1024  # the contract's cut, unchanged: it fits


def test_an_event_that_could_not_fit_is_cut_further_or_never_built():
    crowded = CallRecord("c1", TENANT, NOW, REGISTRATION, metadata={"k": "x" * 47_500})
    graph = {"status": 404, "code": "C" * 5000, "message": "M" * 5000}
    event = call_ended_event(crowded, tenant_id=TENANT, detected_at=NOW, reason="keepAliveNotFound", graph=graph)
    assert len(event_text(event).encode()) <= MAX_EVENT_BYTES and len(event["graph"]["message"]) < 1024
    huge = CallRecord("c1", TENANT, NOW, REGISTRATION, metadata={"k": "x" * 60_000})
    with pytest.raises(ValueError):
        call_ended_event(huge, tenant_id=TENANT, detected_at=NOW, reason="keepAliveNotFound", graph=graph)


def test_a_lone_surrogate_from_graph_cannot_make_an_event_unsendable():
    graph = {"status": 404, "code": "itemNotFound", "message": "gone \ud800 now", "requestId": "\udfff"}
    event = call_ended_event(RECORD, tenant_id=TENANT, detected_at=NOW, reason="keepAliveNotFound", graph=graph)
    event_text(event).encode("utf-8")  # the queue client sends UTF-8: this must not raise
    assert event["graph"]["message"] == "gone \ufffd now"


# --- item 8: Graph's values in the keepAlive client's log lines ------------------------------------------
def test_graphs_code_and_request_id_reach_the_hints_escaped(caplog):
    body = json.dumps({"error": {"code": HOSTILE, "message": "m", "innerError": {"request-id": "r\nCRITICAL x"}}})
    answer = GraphClient._read(403, {}, body.encode())
    with caplog.at_level(logging.WARNING, logger="shared.graph"):
        client = GraphClient(load_settings({}), requests.Session(), tokens=None)  # type: ignore[arg-type]
        client._hint(answer, "c1", TENANT)
    [record] = caplog.records
    message = record.getMessage()
    assert unsafe(message) == [] and " tenantId=" in message
    assert 'requestId="r\\nCRITICAL\\u0020x"' in message  # quoted: it cannot fake a key=value pair either
