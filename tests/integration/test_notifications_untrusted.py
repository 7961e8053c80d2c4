"""Notifications as Graph really sends them, the per-tenant memory of ends and its purge, and signing keys
that are fetched over HTTPS only, read with a size limit, and never hold up a request whose key is known.

Real Azurite, the OpenID stand-in over HTTPS, the app's clock injected (`Clock`)."""
# ruff: noqa: F811  (the `app` fixture is imported from test_notifications and named as a parameter)

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import tracemalloc
from typing import Any

import pytest
import requests

from shared.errors import InvalidToken
from shared.events import MAX_GRAPH_STRING
from shared.notifications import REASON
from shared.signing_keys import MAX_DOCUMENT_BYTES, NotificationKeys
from shared.storage import ended_entity
from tests.integration.test_http_api import assert_error
from tests.integration.test_notifications import (  # noqa: F401 - `app` is a fixture
    CLIENT_ID,
    OTHER_TENANT,
    TENANT,
    app,
    counts,
    note,
    payload,
    result,
)
from tests.standins.openid import KEYS_PATH
from tests.standins.server import Reply

pytestmark = pytest.mark.integration


def resource_only(call_id: str, state: str, path: str = "/app/calls/") -> dict[str, Any]:
    """An item as older payloads carry it: `resource`, no `resourceUrl`."""
    return {
        "changeType": "updated",
        "resource": path + call_id,
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state},
    }


# --- the call id --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/app/calls/", "app/calls/", "/communications/calls/"])
def test_the_call_id_comes_from_resource_when_resource_url_is_absent(app, path):
    assert counts(app.post(payload(resource_only("c1", "established", path)))) == result(registered=1)
    assert app.call("c1") is not None
    assert counts(app.post(payload(resource_only("c1", "terminated", path)))) == result(removed=1)
    assert app.call("c1") is None


def test_resource_url_wins_over_resource(app):
    item = {**note("c1", "established"), "resource": "/app/calls/other"}
    assert counts(app.post(payload(item))) == result(registered=1)
    assert app.call("c1") is not None and app.call("other") is None


# --- at most 100 items, folded per call ---------------------------------------------------------
def test_more_than_100_items_is_invalid_and_changes_nothing(app):
    before = app.state()
    response = app.post(payload(*[note(f"c{i}", "established") for i in range(101)]))
    assert_error(response, 400, "invalidRequest")
    assert "100" in response.get_body().decode()
    assert app.state() == before
    assert counts(app.post(payload(*[note(f"c{i}", "established") for i in range(100)]))) == result(registered=100)


def storage_requests(app, body: dict[str, Any]) -> tuple[dict[str, int], Any]:
    before = app.context.on_storage_request.snapshot()
    response = app.post(body)
    return app.context.on_storage_request.since(before, app.context.on_storage_request.snapshot()), response


def test_items_of_one_call_are_folded_so_storage_work_grows_with_distinct_calls(app):
    app.register("warm", tenantId=TENANT)
    app.post(payload(note("warm", "terminated")))  # tables and queue created, keys fetched
    one, response = storage_requests(app, payload(note("c1", "established")))
    assert counts(response) == result(registered=1)
    app.register("c2", tenantId=TENANT)
    hundred, response = storage_requests(
        app, payload(*[note("c2", "established") for _ in range(99)], note("c2", "terminated"))
    )
    assert counts(response) == result(removed=1, ignored=99)  # the last state wins
    single, _ = storage_requests(app, payload(note("c3", "established")))
    app.register("c4", tenantId=TENANT)
    terminated_once, response = storage_requests(app, payload(note("c4", "terminated")))
    assert counts(response) == result(removed=1)

    assert sum(hundred.values()) == sum(terminated_once.values()), (hundred, terminated_once)
    assert sum(one.values()) == sum(single.values())
    [event] = [e for e in app.events() if e["callId"] == "c2"]
    assert event["reason"] == "terminatedNotification"


def test_a_terminated_then_established_in_one_payload_stays_ended(app):
    app.register("c1", tenantId=TENANT)
    body = payload(note("c1", "terminated"), note("c1", "established"), note("c1", "established"))
    assert counts(app.post(body)) == result(removed=1, ignored=2)
    assert app.call("c1") is None


# --- the memory of ends: per tenant, 24 hours, purged -------------------------------------------
def test_an_end_under_one_tenant_never_blocks_another(app):
    assert counts(app.post(payload(note("c1", "terminated")), tenant=TENANT)) == result(ignored=1)
    assert counts(app.post(payload(note("c1", "established")), tenant=OTHER_TENANT)) == result(registered=1)
    assert app.call("c1")["tenantId"] == OTHER_TENANT  # type: ignore[index]
    assert counts(app.post(payload(note("c2", "terminated")), tenant=OTHER_TENANT)) == result(ignored=1)
    assert counts(app.post(payload(note("c2", "established")), tenant=OTHER_TENANT)) == result(ignored=1)
    assert app.call("c2") is None


def seed_ends(app, count: int, at, prefix: str = "old") -> None:
    """`count` ends remembered at `at`, written in transactions of 100 (as 100-item `terminated` requests would)."""
    table = app.context.storage.table(app.context.settings.ended_table_name)
    rows = [ended_entity(f"{prefix}-{i}", tenant_id=TENANT, reason=REASON, now=at) for i in range(count)]
    for start in range(0, count, 100):
        table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])


def test_ends_are_forgotten_after_24_hours_and_purged(app):
    ended = app.context.recent_ends
    table = app.context.settings.ended_table_name
    start = app.clock()
    for i in range(250):
        ended.remember(f"old-{i}", tenant_id=TENANT, reason="keepAliveNotFound", now=start)
    app.clock.advance(hours=12)
    for i in range(30):
        ended.remember(f"new-{i}", tenant_id=TENANT, reason="keepAliveNotFound", now=app.clock())
    app.clock.advance(hours=12, seconds=1)  # the first 250 are now older than 24 hours, the 30 are 12 hours old
    now = app.clock()

    assert not ended.recently_ended("old-0", TENANT, now)  # forgotten, purged or not
    assert ended.recently_ended("new-0", TENANT, now)
    before = app.context.on_storage_request.snapshot()
    purged = ended.purge(now)
    used = app.context.on_storage_request.since(before, app.context.on_storage_request.snapshot())
    assert (purged.removed, purged.left) == (250, False)
    assert used == {"table read": 1, "table batch": 3}  # one page of keys, transactions of 100, 100 and 50
    assert ended.purge(now).removed == 0
    remaining = list(app.context.storage.table(table).list_entities())
    assert sorted(e["CallId"] for e in remaining) == sorted(f"new-{i}" for i in range(30))
    assert ended.recently_ended("new-29", TENANT, now)


# --- events fit the queue -----------------------------------------------------------------------
def test_every_string_of_graph_in_the_event_is_cut_to_1024_characters(app):
    app.register("c1", tenantId=TENANT)
    info = {"code": "C" * 5000, "subcode": "S" * 3000, "message": "M" * 70000}
    response = app.post({"value": [note("c1", "terminated", result_info=info)]})
    if response.status_code == 413:  # the body limit is 64 KiB: send a message that fits it
        info["message"] = "M" * 50000
        response = app.post({"value": [note("c1", "terminated", result_info=info)]})
    assert counts(response) == result(removed=1)
    [event] = app.events()
    assert {name: len(value) for name, value in event["graph"].items()} == {
        "code": MAX_GRAPH_STRING,
        "subcode": MAX_GRAPH_STRING,
        "message": MAX_GRAPH_STRING,
    }


# --- signing keys ---------------------------------------------------------------------------------
def test_an_http_openid_configuration_is_refused_with_an_error(make_context, openid, host, caplog):
    url = openid.config_url.replace("https://", "http://")
    make_context(install=True, GRAPH_CLIENT_ID=CLIENT_ID, GRAPH_NOTIFICATION_OPENID_URL=url)
    token = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))
    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"):
        response = host.request(
            "POST",
            "/api/notifications",
            body=payload(note("c1", "established")),
            headers={"Authorization": "Bearer " + token},
        )
    assert_error(response, 401, "invalidToken")
    assert openid.config_fetches == 0  # nothing sent over http
    assert any("https only" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_an_http_jwks_uri_is_refused_with_an_error(app, caplog):
    app.openid.failure = Reply(200, body={"jwks_uri": "http://127.0.0.1:9/keys"})
    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"):
        assert_error(app.post(payload(note("c1", "established"))), 401, "invalidToken")
    assert any("https only" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_the_size_limit_is_enforced_while_reading_not_after(app, caplog):
    huge = b'{"jwks_uri": "' + b"x" * (16 * MAX_DOCUMENT_BYTES) + b'"}'
    app.openid.failure = Reply(200, body=huge, chunked=True)  # no Content-Length: only reading can tell
    keys = app.context.notification_keys()

    tracemalloc.start()
    try:
        with caplog.at_level(logging.ERROR, logger="shared.signing_keys"), pytest.raises(InvalidToken):
            keys.key_for("any")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert any("larger than" in r.getMessage() for r in caplog.records)
    assert peak < 4 * MAX_DOCUMENT_BYTES, peak  # the 16 MiB document was never held whole


def test_the_fetch_deadline_holds_while_the_peer_drips_a_byte_at_a_time(app, caplog):
    document = json.dumps({"jwks_uri": app.openid.base_url + KEYS_PATH, "pad": "x" * 100}).encode()
    app.openid.failure = Reply(200, body=document, drip=0.05)  # ~150 bytes: 7.5 s to send, no read ever idle
    keys = NotificationKeys(app.openid.config_url, requests.Session(), app.clock, deadline=0.5)

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"), pytest.raises(InvalidToken):
        keys.key_for("any")
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, elapsed  # the 0.5 s deadline and a margin for a busy machine, not the 7.5 s of the drip
    assert any("took over the fetch deadline" in r.getMessage() for r in caplog.records)


def test_a_compressed_key_document_is_decoded_within_the_size_limit(app, caplog):
    config = json.dumps({"jwks_uri": app.openid.base_url + KEYS_PATH}).encode()
    app.openid.failure = Reply(200, body=gzip.compress(config), headers={"Content-Encoding": "gzip"})
    keys = app.context.notification_keys()
    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"), pytest.raises(InvalidToken):
        keys.key_for("any")  # both documents decoded: the second, the configuration again, has no keys
    assert any("the key set has no keys" in r.getMessage() for r in caplog.records)

    bomb = gzip.compress(b"0" * (16 * MAX_DOCUMENT_BYTES))  # 16 KiB on the wire, 16 MiB decoded
    app.openid.failure = Reply(200, body=bomb, headers={"Content-Encoding": "gzip"})
    app.clock.advance(minutes=2)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"), pytest.raises(InvalidToken):
        keys.key_for("any")
    assert any("larger than" in r.getMessage() for r in caplog.records)


def test_a_fetch_for_an_unknown_kid_never_holds_up_a_request_whose_key_is_cached(app):
    assert counts(app.post(payload(note("c0", "established")))) == result(registered=1)  # keys cached
    app.clock.advance(minutes=2)  # a fetch for an unknown kid is allowed again
    keys = app.context.notification_keys()
    app.openid.hold = threading.Event()
    unknown_done = threading.Event()
    outcome: list[BaseException] = []

    def unknown() -> None:
        try:
            keys.key_for("unknown-kid")
        except InvalidToken as error:
            outcome.append(error)
        finally:
            unknown_done.set()

    slow = threading.Thread(target=unknown)
    slow.start()
    try:
        assert app.openid.held.wait(10), "the fetch for the unknown kid reached the stand-in"
        # The fetch is in progress and held: a request whose key is cached is answered meanwhile.
        known_done = threading.Event()
        answers: list[Any] = []

        def known() -> None:
            answers.append(app.post(payload(note("c1", "established"))))
            known_done.set()

        threading.Thread(target=known).start()
        answered_while_held = known_done.wait(10)
        still_fetching = not unknown_done.is_set()
    finally:
        app.openid.hold.set()
        slow.join(10)
    assert answered_while_held and still_fetching
    assert counts(answers[0]) == result(registered=1)
    assert len(outcome) == 1 and "unknown" in str(outcome[0])
    assert app.openid.config_fetches == 2


# --- log lines cannot be forged -----------------------------------------------------------------
def test_values_from_a_request_cannot_forge_a_log_line_or_a_key_value_pair(app, caplog):
    call_id = 'x"=tenantId=evil'
    with caplog.at_level(logging.INFO):
        assert counts(app.post(payload(note(call_id, "established")))) == result(registered=1)
        app.post(payload(note(call_id, "established")), tenant=OTHER_TENANT)
        response = app.host.request("DELETE", "/api/calls/x%22%3DtenantId%3Devil")
    assert response.status_code == 204
    lines = [r.getMessage() for r in caplog.records if "callId=" in r.getMessage()]
    assert len(lines) >= 3
    for line in lines:
        assert "tenantId=evil" not in line and 'x"=' not in line
        assert 'callId="x\\"\\u003dtenantId\\u003devil"' in line
