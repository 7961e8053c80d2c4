"""Property-based tests of the HTTP API through the host, against real Azurite (hypothesis); what any POST body
gets, a question of validation, against storage in memory (tests/fakes.py), where 200 examples take no Azurite.

Whatever arrives (arbitrary bytes, any JSON value, any Unicode, huge or deeply nested values in any
field, any percent-encoded path segment, any query), the API answers a status the contract allows,
with the contract's error shape, never a 5xx; the table never holds an invalid call; and a valid
call always round-trips exactly.

The expected answer comes from an oracle written from the contract (not from `shared.models`), and
a model of what the table should hold is kept across the examples of each test. Each test builds its
property inside the test function, so the function-scoped fixtures (`ctx`, a fresh table) serve all
of its examples. No example database is written (`database=None`).
"""

from __future__ import annotations

import contextlib
import json
import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from shared.context import Context
from shared.models import CallRecord, call_keys
from tests.conftest import ContextFactory
from tests.fakes import MemoryStorage
from tests.host import FunctionHost, body_of

pytestmark = pytest.mark.integration

PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,
    # No shrinking: every example talks to Azurite, and shrinking could take minutes. A failing example is
    # reported as generated (bodies print short, see `Body`); known edge cases are pinned with @example.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def bounded(examples: int) -> settings:
    """The shared settings with a number of examples: every property stays within a few seconds."""
    return settings(PROPERTY_SETTINGS, max_examples=examples)


MAX_BODY = 65_536
MAX_METADATA = 4096
RECORD_FIELDS = {
    "callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "lastError", "consecutiveFailures",
    "metadata",
}  # fmt: skip
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CAMEL = re.compile(r"[a-z][A-Za-z]*")
# Unicode's White_Space property (PropList.txt), written out rather than taken from str.isspace().
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
TRICKY = list("/\\#?%&=+;:@'\"<>{}[]|^`~!$*(),. \t\n\r\x00\x1f\x7f\x80\x85\x9f\xa0\u2028\u3000\ufeff\u200b\ufffd")
TRICKY += [
    "\ud800",
    "\udfff",
    "😀",
    "通",
    "é",
    "e\u0301",
    "%2F",
    "%00",
    "%ZZ",
    "..",
    "*",
    ".",
    "\u202e",
    "\u2066",
    "\u00ad",
]


# --- the oracle: the contract's rules, written out -------------------------------------------------
def valid_call_id(value: object) -> bool:
    if not isinstance(value, str) or not 1 <= len(value) <= 256 or value in (".", ".."):
        return False
    for ch in value:
        code = ord(ch)
        if ch in "/\\#?" or ch in WHITE_SPACE or code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
            return False
        if unicodedata.category(ch) == "Cf":  # format characters: bidi controls, zero-width, BOM
            return False
    return True


def valid_metadata(value: object) -> bool:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return False
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not valid Unicode
        return False
    return size <= MAX_METADATA


@dataclass(frozen=True)
class Refused:
    status: int
    codes: frozenset[str]


@dataclass(frozen=True)
class Valid:
    call_id: str
    tenant_id: str | None  # as given (lowercased); None when not given
    metadata: dict[str, str]


NOT_JSON_DEEPER_THAN = 128


def nesting(document: object) -> int:
    """How deep a parsed document nests (an array or object is one level), counted without recursion."""
    deepest, stack = 0, [(document, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((item, level + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def expected_post(body: bytes) -> Refused | Valid:
    """What the contract says `POST /api/calls` does with this body (before looking at the table)."""
    if len(body) > MAX_BODY:
        return Refused(413, frozenset({"payloadTooLarge"}))
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Refused(400, frozenset({"invalidRequest"}))
    if nesting(document) > NOT_JSON_DEEPER_THAN:  # the app's rule for JSON from outside (README, Choices)
        return Refused(400, frozenset({"invalidRequest"}))
    if not isinstance(document, dict) or "callId" not in document:
        return Refused(400, frozenset({"invalidRequest"}))
    codes = set()
    if not valid_call_id(document["callId"]):
        codes.add("invalidCallId")
    tenant = document.get("tenantId")
    if tenant is not None and not (isinstance(tenant, str) and _GUID.fullmatch(tenant)):
        codes.add("invalidTenantId")
    metadata = document.get("metadata")
    if metadata is not None and not valid_metadata(metadata):
        codes.add("invalidMetadata")
    if codes:  # the contract does not order the checks: any of the broken fields may be named
        return Refused(400, frozenset(codes))
    return Valid(document["callId"], tenant.lower() if tenant else None, dict(metadata or {}))


# --- checking answers -------------------------------------------------------------------------------
def check_error(response: Any, status: int, codes: frozenset[str] | None = None) -> str:
    assert response.status_code == status, (response.status_code, response.get_body()[:300])
    assert response.mimetype == "application/json"
    body = body_of(response)
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}
    assert isinstance(error["code"], str) and _CAMEL.fullmatch(error["code"])
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    if codes is not None:
        assert error["code"] in codes, (error["code"], codes)
    return str(error["code"])


def check_record(record: Any) -> None:
    assert isinstance(record, dict) and set(record) == RECORD_FIELDS
    assert valid_call_id(record["callId"])
    assert record["tenantId"] is None or (_GUID.fullmatch(record["tenantId"]) and record["tenantId"].islower())
    assert valid_metadata(record["metadata"])
    assert isinstance(record["registeredAt"], str) and record["registeredAt"].endswith("Z")


@dataclass
class Model:
    """What the calls table should hold: callId -> the record the API answered when it was registered. The table is
    Azurite's, or with `memory` the in-memory one."""

    ctx: Context
    host: FunctionHost
    memory: MemoryStorage | None = None
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        if self.memory is not None:
            return self.memory.rows.all()
        return [dict(entity) for entity in self.ctx.storage.table_client().list_entities()]

    def remove(self, entity: dict[str, Any]) -> None:
        if self.memory is not None:
            self.memory.rows.remove(entity["PartitionKey"], entity["RowKey"])
        else:
            self.ctx.storage.table_client().delete_entity(entity["PartitionKey"], entity["RowKey"])

    def post(self, body: bytes) -> None:
        expected = expected_post(body)
        response = self.host.request("POST", "/api/calls", body=body)
        assert response.status_code < 500, response.get_body()[:300]
        if isinstance(expected, Refused):
            check_error(response, expected.status, expected.codes)
            return
        stored = self.calls.get(expected.call_id)
        if stored is None:
            assert response.status_code == 201, (response.status_code, response.get_body()[:300], expected)
            record = body_of(response)
            check_record(record)
            assert record["callId"] == expected.call_id
            assert record["metadata"] == expected.metadata
            assert record["tenantId"] == expected.tenant_id  # no GRAPH_TENANT_ID in these settings
            assert (record["lastKeepAliveAt"], record["lastStatus"], record["lastError"]) == (None, None, None)
            assert record["consecutiveFailures"] == 0
            assert response.headers["Location"] == "/api/calls/" + quote(expected.call_id, safe="")
            self.calls[expected.call_id] = record
        elif expected.tenant_id and stored["tenantId"] and expected.tenant_id != stored["tenantId"]:
            check_error(response, 409, frozenset({"conflict"}))
        else:
            assert response.status_code == 200, (response.status_code, response.get_body()[:300])
            assert body_of(response) == stored  # the first registration wins, unchanged

    def check_table(self) -> None:
        """The table holds exactly the model's calls, each one valid and under its own keys."""
        seen: list[str] = []
        for entity in self.rows():
            record = CallRecord.from_entity(entity)
            assert (entity["PartitionKey"], entity["RowKey"]) == call_keys(record.call_id)
            check_record(record.to_json())
            seen.append(record.call_id)
        assert len(seen) == len(set(seen)), "a callId stored twice"
        assert set(seen) == set(self.calls), {"stored, never answered 201": set(seen) - set(self.calls)}

    def repair(self) -> None:
        """After a failed example: remove what should not be stored, so later examples (and shrinking) start clean."""
        for entity in self.rows():
            call_id = entity.get("CallId")
            try:
                check_record(CallRecord.from_entity(entity).to_json())
                keep = call_id in self.calls
            except (AssertionError, KeyError, TypeError, ValueError):
                keep = False
            if not keep:
                self.remove(entity)
                self.calls.pop(str(call_id), None)

    @contextlib.contextmanager
    def example(self) -> Iterator[None]:
        """One example: its checks, then the table checked; on failure the table is repaired."""
        try:
            yield
            self.check_table()
        except BaseException:
            self.repair()
            raise


@pytest.fixture
def model(ctx: Context, host: FunctionHost) -> Model:
    ctx.storage.table()  # the table exists from the start, so it can be read after a refused first request
    return Model(ctx, host)


@pytest.fixture
def memory_model(make_context: ContextFactory, host: FunctionHost) -> Model:
    memory = MemoryStorage()
    return Model(make_context(install=True, stores=memory.stores()), host, memory)


class Body(bytes):
    """A request body whose repr stays short, so a failing example of 70 kB is still reported readably."""

    def __repr__(self) -> str:
        head = bytes(self[:160])
        return f"Body({head!r}{'...' if len(self) > 160 else ''} len={len(self)})"


# --- strategies -------------------------------------------------------------------------------------
any_char = st.one_of(st.sampled_from([t for t in TRICKY if len(t) == 1]), st.characters(exclude_categories=()))
any_piece = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=()))  # surrogates included
any_text = st.lists(any_piece, max_size=30).map("".join)
valid_char = st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")).filter(valid_call_id)
valid_call_ids = st.text(valid_char, min_size=1, max_size=24) | st.text(valid_char, min_size=250, max_size=256)
call_ids = st.one_of(
    valid_call_ids,
    any_text,
    st.text(any_char, min_size=257, max_size=600),
    st.builds(lambda a, b, c: a + b + c, valid_call_ids, st.sampled_from(TRICKY), valid_call_ids),
)
guids = st.uuids().map(str).flatmap(lambda g: st.sampled_from([g, g.upper(), g.title()]))
guid_near_misses = st.one_of(
    st.builds(lambda g, s: g + s, guids, st.sampled_from(["\n", "\r\n", " ", "}", "0", "\x00"])),
    st.builds(lambda p, g: p + g, st.sampled_from(["{", " ", "\n", "x", "urn:uuid:"]), guids),
    st.builds(lambda g, i: g[:i] + "g" + g[i + 1 :], guids, st.integers(min_value=0, max_value=35)),
    st.builds(lambda g: g.replace("-", ""), guids),
)
tenant_ids = st.one_of(guids, guid_near_misses, any_text, st.text(min_size=1000, max_size=5000))
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False), any_text
)
json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=12
)
metadata_values = st.one_of(
    st.dictionaries(any_text, any_text, max_size=5),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(min_size=4000, max_size=4100), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=4), st.text("é通😀", min_size=1000, max_size=1400), min_size=1, max_size=1),
    st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    json_values,
)
call_bodies = st.fixed_dictionaries(
    {},
    optional={
        "callId": call_ids,
        "tenantId": st.one_of(tenant_ids, json_values),
        "metadata": metadata_values,
        "extra": json_values,
        "registeredAt": json_values,
    },
)


def nested(depth: int) -> bytes:
    return b'{"callId": "deep", "metadata": {"k": ' + b"[" * depth + b"]" * depth + b"}}"


def encode(document: Any, how: str) -> bytes:
    if how == "ascii":  # lone surrogates become \ud800 escapes: valid JSON text holding invalid Unicode
        return json.dumps(document).encode("ascii")
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")  # may be invalid UTF-8


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(nested, st.integers(min_value=1, max_value=40_000)),
    st.builds(lambda n: b"[" * n + b"]" * n, st.sampled_from([10, 1_000, 32_000, 40_000])),
    st.builds(
        lambda n: json.dumps({"callId": "big", "pad": "x" * n}).encode(), st.sampled_from([65_490, 65_520, 70_000])
    ),
    st.builds(encode, json_values, st.sampled_from(["ascii", "utf8"])),
)
near_valid_bodies = st.fixed_dictionaries(
    {"callId": valid_call_ids, "tenantId": tenant_ids}, optional={"metadata": metadata_values, "extra": json_values}
)
post_bodies = st.one_of(
    st.builds(encode, call_bodies, st.sampled_from(["ascii", "ascii", "utf8"])),
    st.builds(encode, near_valid_bodies, st.just("ascii")),
    raw_bodies,
).map(Body)


# --- the properties -----------------------------------------------------------------------------------
def test_any_post_body_gets_a_contract_answer_and_only_valid_calls_are_stored(memory_model: Model) -> None:
    model = memory_model

    @bounded(200)
    @given(body=post_bodies)
    @example(body=Body(b'{"callId": "edge", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47\\n"}'))
    @example(body=Body(b'{"callId": "edge\\u2028", "metadata": {"k": "v"}}'))
    def post_anything(body: bytes) -> None:
        with model.example():
            model.post(body)

    post_anything()


def test_valid_calls_round_trip_exactly(model: Model) -> None:
    @bounded(60)
    @given(
        call_id=valid_call_ids,
        tenant=st.none() | guids,
        metadata=st.none() | st.dictionaries(any_text.filter(valid_metadata_key), st.text(max_size=60), max_size=6),
        again=st.none() | guids,
    )
    def round_trip(call_id: str, tenant: str | None, metadata: dict[str, str] | None, again: str | None) -> None:
        body: dict[str, Any] = {"callId": call_id}
        if tenant is not None:
            body["tenantId"] = tenant
        if metadata is not None:
            body["metadata"] = metadata
        with model.example():
            fresh = call_id not in model.calls
            model.post(encode(body, "utf8"))
            created = model.calls[call_id]
            location = "/api/calls/" + quote(call_id, safe="")
            got = model.host.request("GET", location)
            assert got.status_code == 200 and body_of(got) == created
            if fresh:
                assert created["callId"] == call_id and created["metadata"] == (metadata or {})
                assert created["tenantId"] == (tenant.lower() if tenant else None)
            model.post(encode({"callId": call_id, **({"tenantId": again} if again else {})}, "ascii"))
            listed = body_of(model.host.request("GET", "/api/calls?top=1000"))["value"]
            assert [r for r in listed if r["callId"] == call_id] == [created]

    round_trip()


def valid_metadata_key(key: str) -> bool:
    return not any(0xD800 <= ord(ch) <= 0xDFFF for ch in key)


def segment_of(text: str, safe: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


segments = st.one_of(
    st.builds(segment_of, any_text.filter(bool), st.sampled_from(["", "%", "%'\"@:;=+$,!*()~"])),
    st.builds(segment_of, st.text(any_char, min_size=250, max_size=300), st.just("")),
    st.text(string.ascii_letters + string.digits + "%-._~", min_size=1, max_size=30),
)


def test_any_call_path_gets_a_contract_answer(model: Model) -> None:
    for call_id in ("plain", "Grüße 通话".replace(" ", "-"), "100%", "%41", "\ufffd", "x" * 256):
        model.post(json.dumps({"callId": call_id}).encode())
    model.check_table()

    @bounded(150)
    @given(segment=segments | st.sampled_from(["plain", "100%25", "%2541", "%41", "%ED%A0%80", "%FF", "x" * 256]))
    def any_path(segment: str) -> None:
        path = "/api/calls/" + segment
        call_id = unquote(segment)  # what the host hands the function as the route parameter
        with model.example():
            got = model.host.request("GET", path)
            if call_id in model.calls:
                assert got.status_code == 200 and body_of(got) == model.calls[call_id]
            else:
                check_error(got, 404, frozenset({"callNotFound"}))
            deleted = model.host.request("DELETE", path)
            if call_id in model.calls:
                assert deleted.status_code == 204 and deleted.get_body() == b""
                del model.calls[call_id]
            else:
                check_error(deleted, 404, frozenset({"callNotFound"}))

    any_path()


def expected_list(params: dict[str, str], issued: set[str]) -> set[int]:
    top = params.get("top")
    token = params.get("continuationToken")
    if top is not None:
        if not re.fullmatch(r"[0-9]+", top) or not 1 <= int(top) <= 1000:
            return {400}
        if top != str(int(top)):  # leading zeros: an integer all the same; either answer is fair
            return {200, 400}
    if token is not None and token not in issued:
        return {400}
    return {200}


def test_any_list_query_gets_a_contract_answer(model: Model) -> None:
    for index in range(5):
        model.post(json.dumps({"callId": f"listed-{index}"}).encode())
    first = body_of(model.host.request("GET", "/api/calls?top=2"))
    issued_link = first["nextLink"]
    issued = {unquote(issued_link.split("continuationToken=")[1])}
    [token] = issued
    tokens = st.one_of(
        any_text,
        st.sampled_from(sorted(issued)),
        st.builds(lambda extra: token + extra, st.text(string.ascii_letters + string.digits, min_size=1, max_size=3)),
        st.builds(lambda extra: extra + token, st.text(string.ascii_letters + string.digits, min_size=1, max_size=3)),
        st.builds(lambda cut: token[:cut], st.integers(min_value=0, max_value=len(token) - 1)),
    )
    tops = st.one_of(
        st.integers(min_value=-5, max_value=1100).map(str),
        st.sampled_from(
            ["01", "1e2", "1.0", " 1", "1 ", "1\n", "\u0661", "٣", "+1", "0x10", "", "1000", "10000000000"]
        ),
        any_text,
    )

    @bounded(150)
    @example(params={"top": "1\n"})
    @example(params={"top": "1000", "continuationToken": token})
    @given(params=st.fixed_dictionaries({}, optional={"top": tops, "continuationToken": tokens}))
    def any_query(params: dict[str, str]) -> None:
        query = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in params.items()})
        sent = dict(parse_qsl(query, keep_blank_values=True))  # what the host hands the function
        response = model.host.request("GET", "/api/calls" + ("?" + query if query else ""))
        allowed = expected_list(sent, issued)
        assert response.status_code in allowed, (params, response.status_code, response.get_body()[:200])
        if response.status_code == 400:
            check_error(response, 400, frozenset({"invalidRequest"}))
            return
        body = body_of(response)
        assert set(body) <= {"value", "nextLink"}
        for record in body["value"]:
            check_record(record)
            assert model.calls[record["callId"]] == record
        if "nextLink" in body:
            assert body["nextLink"].startswith("/api/calls?top=")

    any_query()
