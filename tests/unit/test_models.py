"""shared.models without storage: the validators, the table keys, the times, and CallRecord's mappings."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import InvalidCallId, InvalidMetadata, InvalidTenantId
from shared.models import (
    CallRecord,
    call_id_problem,
    call_keys,
    format_time,
    partition_of,
    validate_call_id,
    validate_metadata,
    validate_tenant_id,
)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REGISTERED = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 10, 0, 456000, tzinfo=UTC)

LENGTH = "callId must be 1 to 256 characters long"
FORBIDDEN = "callId must not contain '/', '\\', '#' or '?'"
CONTROL = "callId must not contain control characters"
WHITESPACE = "callId must not contain whitespace"
SURROGATE = "callId must be valid Unicode (it holds a lone surrogate)"
NOT_STRING = "callId must be a string"


# --- callId ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call_id",
    [
        "a",
        "x" * 256,
        "19:meeting_NjE2@thread.v2",
        "2f1a0b00-8c1f-4e7f-9c55-3f9c1b2a1e01",
        "é漢字🎉",
        "%2F%3F",  # percent signs are kept verbatim, never decoded
        "a.b",
        "'\"<>&;:+=*!~",
        "\x7e\xa1",  # just outside DEL..C1
    ],
)
def test_a_valid_call_id_has_no_problem_and_is_returned_as_given(call_id):
    assert call_id_problem(call_id) is None
    assert validate_call_id(call_id) == call_id


@pytest.mark.parametrize(
    ("call_id", "problem"),
    [
        (None, NOT_STRING),
        (42, NOT_STRING),
        (["a"], NOT_STRING),
        (b"abc", NOT_STRING),
        ("", LENGTH),
        ("x" * 257, LENGTH),
        ("a/b", FORBIDDEN),
        ("a\\b", FORBIDDEN),
        ("a#b", FORBIDDEN),
        ("a?b", FORBIDDEN),
        ("a\x00b", CONTROL),
        ("a\x1fb", CONTROL),
        ("a\x7fb", CONTROL),  # DEL
        ("a\x80b", CONTROL),  # C1
        ("a\x9fb", CONTROL),
        ("a\tb", CONTROL),  # a control character first, though it is whitespace too
        ("a b", WHITESPACE),
        ("a\xa0b", WHITESPACE),  # no-break space
        ("a\u2003b", WHITESPACE),  # em space
        ("a\u3000b", WHITESPACE),  # ideographic space
        ("a\u2028b", WHITESPACE),  # line separator
        ("a\ud800b", SURROGATE),
        ("\udfff", SURROGATE),
    ],
)
def test_an_invalid_call_id_is_named_and_refused_as_invalid_call_id(call_id, problem):
    assert call_id_problem(call_id) == problem
    with pytest.raises(InvalidCallId) as raised:
        validate_call_id(call_id)
    assert (raised.value.code, raised.value.status, raised.value.message) == ("invalidCallId", 400, problem)


def test_the_first_problem_of_a_call_id_is_the_one_named():
    assert call_id_problem("a b/c") == WHITESPACE  # characters are checked in order
    assert call_id_problem("a/b c") == FORBIDDEN
    assert call_id_problem(" " * 257) == LENGTH  # length before characters


# --- tenantId ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (TENANT, TENANT),
        (TENANT.upper(), TENANT),
        ("72F988BF-86f1-41AF-91ab-2D7CD011DB47", TENANT),
    ],
)
def test_a_tenant_id_is_a_guid_stored_lowercase_and_null_means_not_given(value, expected):
    assert validate_tenant_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "contoso.onmicrosoft.com",
        TENANT + "\n",  # a trailing newline is not part of a GUID
        TENANT[:-1],
        TENANT + "0",
        "{" + TENANT + "}",
        TENANT.replace("-", ""),
        "g2f988bf-86f1-41af-91ab-2d7cd011db47",
        " " + TENANT,
        42,
        ["72f988bf-86f1-41af-91ab-2d7cd011db47"],
        True,
    ],
)
def test_anything_but_a_guid_is_an_invalid_tenant_id(value):
    with pytest.raises(InvalidTenantId) as raised:
        validate_tenant_id(value)
    assert (raised.value.code, raised.value.status) == ("invalidTenantId", 400)
    assert raised.value.message == "tenantId must be a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47"


# --- metadata ----------------------------------------------------------------------------------
def _metadata_of_size(size: int) -> dict[str, str]:
    """An object whose compact JSON is exactly `size` bytes: {"k":"xxx…"} is 8 bytes plus the value."""
    return {"k": "x" * (size - 8)}


def test_metadata_null_or_absent_is_empty_and_a_valid_object_is_copied():
    assert validate_metadata(None) == {}
    given = {"bot": "é", "": "", "n": "1"}
    result = validate_metadata(given)
    assert result == given and result is not given


def test_metadata_of_exactly_4096_bytes_is_taken_and_one_more_byte_is_refused():
    assert len(json.dumps(_metadata_of_size(4096), separators=(",", ":"))) == 4096
    assert validate_metadata(_metadata_of_size(4096)) == _metadata_of_size(4096)
    with pytest.raises(InvalidMetadata) as raised:
        validate_metadata(_metadata_of_size(4097))
    assert raised.value.message == "metadata must be at most 4096 bytes as compact JSON (got 4097)"


def test_metadata_size_counts_utf8_bytes_not_characters():
    fits = {"k": "é" * 2044}  # 8 + 2 × 2,044 = 4,096 bytes, 2,052 characters
    validate_metadata(fits)
    with pytest.raises(InvalidMetadata) as raised:
        validate_metadata({"k": "é" * 2045})
    assert raised.value.message.endswith("(got 4098)")


def test_metadata_size_is_of_compact_json_so_escapes_count_as_escaped():
    quotes = {"k": '"' * 2044}  # each quote is escaped as \" : 8 + 2 × 2,044 bytes
    assert validate_metadata(quotes) == quotes
    with pytest.raises(InvalidMetadata):
        validate_metadata({"k": '"' * 2045})


@pytest.mark.parametrize(
    "value",
    [[], ["a"], "text", 1, True, {"k": 1}, {"k": None}, {"k": {"nested": "x"}}, {"k": ["x"]}, {"a": "b", "k": False}],
)
def test_metadata_must_be_an_object_of_string_values(value):
    with pytest.raises(InvalidMetadata) as raised:
        validate_metadata(value)
    assert (raised.value.code, raised.value.status) == ("invalidMetadata", 400)
    assert raised.value.message == "metadata must be an object whose values are strings"


@pytest.mark.parametrize("value", [{"k": "\ud800"}, {"\udc00": "v"}])
def test_metadata_with_a_lone_surrogate_is_refused(value):
    with pytest.raises(InvalidMetadata) as raised:
        validate_metadata(value)
    assert raised.value.message == "metadata must be valid Unicode"


# --- keys and times ----------------------------------------------------------------------------
def test_the_keys_of_a_call_are_its_sha256_and_a_partition_from_its_first_two_hex_digits():
    digest = hashlib.sha256(b"abc").hexdigest()
    assert digest.startswith("ba")
    assert call_keys("abc") == ("58", digest)  # 0xba = 186, 186 % 64 = 58
    assert call_keys("é") == call_keys("é")
    assert call_keys("a") != call_keys("A")


@pytest.mark.parametrize(
    ("row_key", "partition"), [("00", "00"), ("3f", "63"), ("40", "00"), ("41", "01"), ("ff", "63")]
)
def test_partitions_are_two_digits_from_00_to_63(row_key, partition):
    assert partition_of(row_key + "0" * 62) == partition


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),  # cut, not rounded
        (datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T01:04:05.678Z"),
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5))), "2026-01-01T05:30:00.000Z"),
    ],
)
def test_times_are_iso_8601_utc_to_the_millisecond_ending_in_z(value, text):
    assert format_time(value) == text


# --- CallRecord --------------------------------------------------------------------------------
REG_1, REG_2 = "0f5e1a52-0000-4000-8000-000000000001", "0f5e1a52-0000-4000-8000-000000000002"
NEW = CallRecord(call_id="c1:é", tenant_id=None, registered_at=REGISTERED, registration_id=REG_1)
FULL = CallRecord(
    call_id="19:meeting_é'x@thread.v2",
    tenant_id=TENANT,
    registered_at=REGISTERED,
    registration_id=REG_2,
    last_keepalive_at=NOW,
    last_status=503,
    last_error="503 ServiceUnavailable",
    consecutive_failures=2,
    metadata={"bot": "é", "k": '"q"'},
)


def test_a_new_record_as_json_has_every_field_with_nulls_and_empty_metadata():
    assert NEW.to_json() == {
        "callId": "c1:é",
        "tenantId": None,
        "registeredAt": "2026-11-27T12:00:00.123Z",
        "lastKeepAliveAt": None,
        "lastStatus": None,
        "lastError": None,
        "consecutiveFailures": 0,
        "metadata": {},
    }


def test_a_record_as_json():
    assert FULL.to_json() == {
        "callId": "19:meeting_é'x@thread.v2",
        "tenantId": TENANT,
        "registeredAt": "2026-11-27T12:00:00.123Z",
        "lastKeepAliveAt": "2026-11-27T12:10:00.456Z",
        "lastStatus": 503,
        "lastError": "503 ServiceUnavailable",
        "consecutiveFailures": 2,
        "metadata": {"bot": "é", "k": '"q"'},
    }


def test_a_new_record_as_an_entity_leaves_out_its_null_fields():
    partition_key, row_key = call_keys("c1:é")
    assert NEW.to_entity() == {
        "PartitionKey": partition_key,
        "RowKey": row_key,
        "CallId": "c1:é",
        "RegisteredAt": REGISTERED,
        "RegistrationId": REG_1,
        "ConsecutiveFailures": 0,
        "Metadata": "{}",
    }


def test_a_record_as_an_entity_keeps_metadata_as_compact_json_text():
    partition_key, row_key = call_keys(FULL.call_id)
    assert FULL.to_entity() == {
        "PartitionKey": partition_key,
        "RowKey": row_key,
        "CallId": "19:meeting_é'x@thread.v2",
        "RegisteredAt": REGISTERED,
        "RegistrationId": REG_2,
        "ConsecutiveFailures": 2,
        "Metadata": '{"bot":"é","k":"\\"q\\""}',
        "TenantId": TENANT,
        "LastKeepAliveAt": NOW,
        "LastStatus": 503,
        "LastError": "503 ServiceUnavailable",
    }


class _SdkEntity(dict):
    """What the tables SDK hands back: a dict with the ETag on a `metadata` attribute."""

    def __init__(self, values, etag):
        super().__init__(values)
        self.metadata = {"etag": etag, "timestamp": NOW}


@pytest.mark.parametrize("record", [NEW, FULL], ids=["new", "full"])
def test_a_record_round_trips_through_its_entity_with_the_etag(record):
    back = CallRecord.from_entity(_SdkEntity(record.to_entity(), "W/\"datetime'1'\""))
    assert back == record
    assert back.etag == "W/\"datetime'1'\""
    assert back.to_json() == record.to_json()


def test_a_plain_entity_has_no_etag():
    assert CallRecord.from_entity(FULL.to_entity()).etag is None


def test_stored_times_are_read_as_utc_whatever_form_they_come_in():
    entity = {
        **NEW.to_entity(),
        "RegisteredAt": "2026-11-27T12:00:00.123Z",  # text
        "LastKeepAliveAt": datetime(2026, 11, 27, 14, 10, 0, 456000, tzinfo=timezone(timedelta(hours=2))),
    }
    back = CallRecord.from_entity(entity)
    assert back.registered_at == REGISTERED and back.registered_at.tzinfo is UTC
    assert back.last_keepalive_at == NOW and back.last_keepalive_at.tzinfo is UTC
    naive = CallRecord.from_entity({**NEW.to_entity(), "RegisteredAt": datetime(2026, 11, 27, 12, 0, 0, 123000)})
    assert naive.registered_at == REGISTERED  # a naive time is taken as UTC
    assert type(naive.registered_at) is datetime


def test_a_row_without_failures_or_metadata_reads_back_as_none_failed_and_empty_metadata():
    entity = NEW.to_entity()
    del entity["ConsecutiveFailures"], entity["Metadata"]
    back = CallRecord.from_entity(entity)
    assert (back.consecutive_failures, back.metadata) == (0, {})


def test_the_etag_does_not_count_in_equality():
    assert CallRecord.from_entity(_SdkEntity(FULL.to_entity(), "a")) == CallRecord.from_entity(
        _SdkEntity(FULL.to_entity(), "b")
    )


def test_a_success_sets_the_time_and_status_and_clears_the_error_and_the_failures():
    after = FULL.with_result(now=NOW + timedelta(minutes=10), status=204, error="ignored", ok=True)
    assert after.to_json() == {
        **FULL.to_json(),
        "lastKeepAliveAt": "2026-11-27T12:20:00.456Z",
        "lastStatus": 204,
        "lastError": None,
        "consecutiveFailures": 0,
    }
    assert (after.registration_id, after.registered_at) == (FULL.registration_id, FULL.registered_at)


def test_a_failure_keeps_the_last_success_and_counts_one_more_failure():
    after = FULL.with_result(now=NOW + timedelta(minutes=10), status=None, error="timeout", ok=False)
    assert after.to_json() == {**FULL.to_json(), "lastStatus": None, "lastError": "timeout", "consecutiveFailures": 3}
    again = after.with_result(now=NOW + timedelta(minutes=20), status=429, error="429 TooManyRequests", ok=False)
    assert (again.last_keepalive_at, again.last_status, again.consecutive_failures) == (NOW, 429, 4)


def test_with_result_returns_a_new_record_and_keeps_the_etag():
    record = CallRecord.from_entity(_SdkEntity(NEW.to_entity(), "e1"))
    after = record.with_result(now=NOW, status=200, error=None, ok=True)
    assert record.last_keepalive_at is None and after.last_keepalive_at == NOW
    assert after.etag == "e1"
