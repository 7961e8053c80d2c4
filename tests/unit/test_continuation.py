"""Continuation tokens of `GET /api/calls`: the table's next keys, handed out as one checked URL-safe string."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidRequest
from shared.store import _checksum, decode_token, encode_token

NEXT_KEYS = {"PartitionKey": "1!8!MDA-", "RowKey": "1!88!YWJj"}
# Issued by this version: a token handed out before a deploy must still be taken after it.
ISSUED = "eyJwayI6IjEhOCFNREEtIiwicmsiOiIxITg4IVlXSmoifQ.978d4a626f576d0c"
NOT_ISSUED = "continuationToken is not one this API issued"
URL_SAFE = set(string.ascii_letters + string.digits + "-_.")


def forged(payload: bytes) -> str:
    """A token with a valid checksum around any payload: what only a bug (or the salt leaking) could produce."""
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=") + "." + _checksum(payload)


def test_a_token_is_base64url_json_of_the_next_keys_and_a_checksum():
    assert encode_token(NEXT_KEYS) == ISSUED
    body, checksum = ISSUED.split(".")
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == {"pk": "1!8!MDA-", "rk": "1!88!YWJj"}
    assert len(checksum) == 16 and set(checksum) <= set(string.hexdigits.lower())


def test_an_issued_token_decodes_to_the_next_keys():
    assert decode_token(ISSUED) == NEXT_KEYS


@pytest.mark.parametrize(
    "keys",
    [
        {"PartitionKey": None, "RowKey": None},
        {"PartitionKey": "00", "RowKey": None},
        {"PartitionKey": "é漢", "RowKey": "a.b/c?d=e&f"},
    ],
)
def test_next_keys_round_trip(keys):
    assert decode_token(encode_token(keys)) == keys


def test_only_the_two_next_keys_are_carried():
    token = encode_token({**NEXT_KEYS, "NextTableName": "other"})  # type: ignore[dict-item]
    assert token == ISSUED
    assert encode_token({}) == encode_token({"PartitionKey": None, "RowKey": None})


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="dot only"),
        pytest.param(ISSUED.split(".")[0], id="no checksum"),
        pytest.param(ISSUED.split(".")[0] + ".", id="empty checksum"),
        pytest.param("." + ISSUED.split(".")[1], id="no body"),
        pytest.param(ISSUED[:-1] + ("1" if ISSUED[-1] != "1" else "2"), id="checksum changed"),
        pytest.param(ISSUED.upper(), id="upper case"),
        pytest.param(ISSUED + ".x", id="trailing part"),
        pytest.param(ISSUED + "0", id="checksum too long"),
        pytest.param("A" + ISSUED, id="body changed"),
        pytest.param("a.978d4a626f576d0c", id="body not base64"),
        pytest.param("é." + ISSUED.split(".")[1], id="body not ascii"),
        pytest.param("%2E" + ISSUED, id="percent-encoded"),
        pytest.param(
            base64.urlsafe_b64encode(b'{"pk":"00","rk":null}').decode().rstrip("=") + ".0000000000000000",
            id="well-formed without our checksum",
        ),
        pytest.param(forged(b"not json"), id="checksummed garbage"),
        pytest.param(forged(b"\xff\xfe"), id="checksummed non-utf8"),
        pytest.param(forged(b'["00","01"]'), id="checksummed list"),
        pytest.param(forged(b'"00"'), id="checksummed string"),
        pytest.param(forged(b'{"pk":0,"rk":null}'), id="checksummed number key"),
        pytest.param(forged(b'{"pk":"00","rk":["x"]}'), id="checksummed list key"),
    ],
)
def test_a_token_the_api_did_not_issue_is_an_invalid_request(token):
    with pytest.raises(InvalidRequest) as raised:
        decode_token(token)
    assert (raised.value.code, raised.value.status, raised.value.message) == ("invalidRequest", 400, NOT_ISSUED)


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()))
def test_any_next_keys_round_trip_through_a_url_safe_token(partition_key, row_key):
    keys = {"PartitionKey": partition_key, "RowKey": row_key}
    token = encode_token(keys)
    assert set(token) <= URL_SAFE
    assert decode_token(token) == keys


@settings(max_examples=200, deadline=None, database=None)
@given(st.text())
def test_any_other_text_is_refused_as_an_invalid_request_and_nothing_else(text):
    with pytest.raises(InvalidRequest):
        decode_token(text)
