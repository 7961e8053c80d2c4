"""Continuation tokens of `GET /api/calls`: where the next page starts, as a key the app itself writes.

A token the API could not have issued (malformed, over 1,024 characters, or naming keys the app never
writes: a PartitionKey other than `00`..`63`, a RowKey other than 64 lowercase hex digits) is
`400 invalidRequest`. A token carries no checksum: its content is what is checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidRequest
from shared.paging import MAX_TOKEN_CHARS, decode_token, encode_token, first_key_at_or_after

ROW = "3fa2" + "0" * 56 + "beef"
# Issued by this version: a token handed out before a deploy must still be taken after it.
ISSUED = "07-3fa200000000000000000000000000000000000000000000000000000000beef"
NOT_ISSUED = "continuationToken is not one this API issued"
HEX = "0123456789abcdef"
PARTITIONS = [f"{i:02d}" for i in range(64)]
app_keys = st.tuples(st.sampled_from(PARTITIONS), st.text(HEX, min_size=64, max_size=64))


def test_a_token_names_the_key_where_the_next_page_starts():
    assert encode_token(("07", ROW)) == ISSUED
    assert decode_token(ISSUED) == ("07", ROW)
    assert set(ISSUED) <= set(string.ascii_letters + string.digits + "-")  # URL-safe as it is


@settings(max_examples=200, deadline=None, database=None)
@given(app_keys)
def test_every_app_key_round_trips(key):
    assert decode_token(encode_token(key)) == key


def salted(payload: bytes) -> str:
    """A token of the previous format, its checksum forged with the salt everyone could read in the code."""
    checksum = hashlib.sha256(b"callkeeper-continuation-v1" + payload).hexdigest()[:16]
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=") + "." + checksum


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("-", id="dash only"),
        pytest.param("07", id="no row key"),
        pytest.param("07-", id="empty row key"),
        pytest.param("-" + ROW, id="no partition"),
        pytest.param("64-" + ROW, id="partition 64"),
        pytest.param("99-" + ROW, id="partition 99"),
        pytest.param("7-" + ROW, id="partition of one digit"),
        pytest.param("007-" + ROW, id="partition of three digits"),
        pytest.param("0a-" + ROW, id="partition not decimal"),
        pytest.param("07-" + ROW.upper(), id="upper-case hex"),
        pytest.param("07-" + ROW[:-1], id="63 hex digits"),
        pytest.param("07-" + ROW + "0", id="65 hex digits"),
        pytest.param("07-" + ROW[:-1] + "g", id="not hex"),
        pytest.param(ISSUED + "\n", id="trailing newline"),
        pytest.param(" " + ISSUED, id="leading space"),
        pytest.param("07_" + ROW, id="other separator"),
        pytest.param("07-" + ROW[:-1] + "\u0661", id="a non-ASCII digit"),
        pytest.param(ISSUED + "x" * MAX_TOKEN_CHARS, id="over 1,024 characters"),
        pytest.param(salted(b'{"pk":"1!8!MDA-","rk":"1!88!YWJj"}'), id="previous format, forged checksum"),
        pytest.param(salted(json.dumps({"pk": "zz", "rk": None}).encode()), id="previous format, other keys"),
    ],
)
def test_a_token_the_api_could_not_have_issued_is_an_invalid_request(token):
    with pytest.raises(InvalidRequest) as raised:
        decode_token(token)
    assert (raised.value.code, raised.value.status, raised.value.message) == ("invalidRequest", 400, NOT_ISSUED)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=1100))
def test_any_other_text_is_refused_as_an_invalid_request_and_nothing_else(text):
    try:
        key = decode_token(text)
    except InvalidRequest:
        return
    assert encode_token(key) == text  # only a token of the issued form gets through


# --- where the next page starts -------------------------------------------------------------------
def predecessor(key: tuple[str, str]) -> tuple[str, str] | None:
    """The app key just before `key`, or None for the very first."""
    partition, row = key
    if row != "0" * 64:
        value = int(row, 16) - 1
        return partition, f"{value:064x}"
    index = PARTITIONS.index(partition)
    return None if index == 0 else (PARTITIONS[index - 1], "f" * 64)


# Keys of rows written by another program: any text, near the app's keys or far from them.
near = st.text(HEX + "gzF/-é\U0001f600 ", max_size=70)
partitions = st.one_of(st.sampled_from(["", "0", "00", "07", "63", "64", "6", "99", "0a", "1!", "~", "é"]), st.text())


@settings(max_examples=500, deadline=None, database=None)
@given(partitions, st.one_of(near, st.text(), app_keys.map(lambda key: key[1])))
@example("07", ROW)
@example("07", "f" * 64)
@example("63", "f" * 64)
@example("63", "f" * 64 + "0")
@example("07", "f" * 10 + "g")
@example("07", "0f" + "g")  # carried two digits to the left, past an "f"
@example("07", "1fff~")
@example("07", "")
@example("", "")
def test_the_next_page_starts_at_the_least_app_key_at_or_after_the_next_row(partition, row):
    key = first_key_at_or_after(partition, row)
    if key is None:  # nothing the app writes sorts after this row: no next page
        assert (partition, row) > ("63", "f" * 64)
        return
    assert decode_token(encode_token(key)) == key  # an app key: a token the API issues
    assert key >= (partition, row)
    before = predecessor(key)
    assert before is None or before < (partition, row)  # no app key is skipped
