"""Call events on Event Grid (contract: "Call events on Event Grid"), against Azurite, the Graph stand-in and the
Event Grid topic stand-in: the end sequence's new step, the queue function (invoked as the host does, through its
registration) and each answer of the topic, the Entra path, and the operator's resend from the poison queue."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

from shared import registry
from shared import topic as topic_module
from shared.call_events import poison_queue_name, resend_poisoned
from shared.context import Context
from shared.errors import SettingsError, TopicUnavailable
from shared.events import call_ended_event, event_text
from shared.keepalive import run_tick
from shared.models import CallRecord, utc_now
from tests.conftest import ContextFactory
from tests.fakes import FakeTokenCredential, RequestCounter
from tests.host import FunctionHost
from tests.standins.fixtures import Standins, Topic
from tests.standins.server import RESET, Reply
from tests.standins.topic import read_batch

pytestmark = pytest.mark.integration

ODD_CALL_ID = "café:42%x+y"  # percent-encoded as one segment in the CloudEvent's subject


@pytest.fixture
def events_app(make_context: ContextFactory, standins: Standins, topic: Topic) -> Callable[..., Context]:
    """A real (not dry-run) context on Azurite and the stand-ins with the topic set, installed for the functions."""

    def build(**overrides: Any) -> Context:
        settings = {**topic.settings(), **overrides}
        return make_context(graph=True, install=True, **settings)

    return build


def queue_texts(ctx: Context, name: str) -> list[str]:
    """The message texts of a queue (base64-decoded, as the trigger sees them), left in place."""
    try:
        messages = ctx.storage.queue_client(name).peek_messages(max_messages=32)
    except ResourceNotFoundError:
        return []
    return [base64.b64decode(m.content).decode("utf-8") for m in messages]


def deliver(host: FunctionHost, text: str | bytes, dequeue_count: int = 1) -> None:
    """The call-events function on one message, as the host calls it."""
    body = text.encode("utf-8") if isinstance(text, str) else text
    host.user_function("publish_call_event")(QueueMessage(id="m1", body=body, dequeue_count=dequeue_count))


# what Graph's 404 puts in an event (shared/graph.py): the schema requires every field, null when Graph sent none
GRAPH_404 = {"status": 404, "code": "itemNotFound", "message": "gone", "requestId": "req-1", "clientRequestId": "c-1"}


def an_event(call_id: str = ODD_CALL_ID) -> dict[str, Any]:
    record = CallRecord(call_id, "72f988bf-86f1-41af-91ab-2d7cd011db47", utc_now(), "reg-" + call_id.encode().hex(),
                        metadata={"meeting": "standup ü"})  # fmt: skip
    return call_ended_event(record, tenant_id=record.tenant_id, detected_at=utc_now(), reason="keepAliveNotFound",
                            graph=GRAPH_404)  # fmt: skip


def register(ctx: Context, *call_ids: str) -> None:
    for call_id in call_ids:
        registry.register(ctx.calls, call_id=call_id, tenant_id=None, default_tenant_id=ctx.settings.tenant_id,
                      metadata={}, now=ctx.now())  # fmt: skip


def errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("shared")]


# --- end to end ----------------------------------------------------------------------------------------
def test_a_404_reaches_the_topic_as_the_contracts_cloudevent(events_app, host, standins: Standins, topic: Topic):
    """Graph's 404 -> the event on the cleanup queue and on call-events (the same text) -> the queue function,
    invoked as the host would -> the topic receives one CloudEvent, read with the CNCF SDK as a subscriber would."""
    ctx = events_app()
    response = host.request("POST", "/api/calls", body={"callId": ODD_CALL_ID, "metadata": {"room": "ü"}})
    assert response.status_code == 201
    standins.graph.script(ODD_CALL_ID, Reply(404))
    host.user_function("keepalive_tick")(TimerRequest(past_due=False))

    [cleanup_text] = queue_texts(ctx, ctx.settings.cleanup_queue_name)
    [events_text] = queue_texts(ctx, ctx.settings.events_queue_name)
    assert events_text == cleanup_text  # the same event, byte for byte
    ended = json.loads(cleanup_text)
    assert host.request("GET", "/api/calls/" + quote(ODD_CALL_ID, safe="")).status_code == 404  # deleted after

    deliver(host, events_text)

    [request] = topic.standin.requests
    assert request.status == 200 and request.header("aeg-sas-key") == topic.standin.key
    assert request.header(
        "Content-Type",
    ).startswith("application/cloudevents-batch+json")
    assert request.header("Authorization") is None
    [event] = read_batch(request.body)  # a JSON array of one, each element a structured CloudEvent
    assert event.get_specversion() == "1.0"
    assert event.get_type() == "callkeeper.callEnded"
    assert event.get_source() == "/callkeeper"
    assert event.get_id() == ended["eventId"]
    assert event.get_time() == topic_module.parse_time(ended["detectedAt"])
    assert event.get_subject() == "calls/caf%C3%A9%3A42%25x%2By"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == ended and list(event.get_data()) == list(ended)  # exactly the cleanup event
    [raw] = json.loads(request.body)
    assert raw["time"] == ended["detectedAt"]  # the same text: to the millisecond, ending in Z


def test_without_a_topic_nothing_is_written_to_the_events_queue(make_context, standins: Standins):
    counter = RequestCounter()
    ctx = make_context(graph=True, on_storage_request=counter)
    assert ctx.call_events is None
    register(ctx, "gone", "alive")
    standins.graph.script("gone", Reply(404))
    before = counter.snapshot()
    summary = run_tick(ctx)
    assert summary.ended == 1
    assert queue_texts(ctx, ctx.settings.events_queue_name) == []
    with pytest.raises(ResourceNotFoundError):  # never even created
        ctx.storage.queue_client(ctx.settings.events_queue_name).get_queue_properties()
    spent = RequestCounter.since(before, counter.snapshot())
    assert spent.get("queue write", 0) == 2  # the cleanup queue: created, then the one event


def test_with_a_topic_an_end_costs_one_queue_write_more(events_app, standins: Standins):
    counter = RequestCounter()
    ctx = events_app(on_storage_request=counter)
    register(ctx, "warm", "gone")
    standins.graph.script("warm", Reply(404))
    run_tick(ctx)  # creates the tables and both queues
    standins.graph.script("gone", Reply(404))
    before = counter.snapshot()
    assert run_tick(ctx).ended == 1
    spent = RequestCounter.since(before, counter.snapshot())
    assert spent.get("queue write") == 2  # cleanup and call-events: one message each


def test_a_terminated_notification_with_a_bad_events_queue_answers_503_naming_it_and_changes_nothing(
    events_app, standins: Standins
):
    """With a topic set and CALL_EVENTS_QUEUE_NAME unusable, ending cannot write its event: nothing changes."""
    ctx = events_app(CALL_EVENTS_QUEUE_NAME="Bad_Name")
    register(ctx, "gone")
    record = ctx.calls.get("gone")
    assert record is not None
    from shared.ending import end_call
    from shared.errors import StorageMisconfigured

    event = call_ended_event(record, tenant_id=standins.tenant, detected_at=ctx.now(), reason="x", graph={})
    with pytest.raises(StorageMisconfigured, match="CALL_EVENTS_QUEUE_NAME"):
        end_call(ctx.calls, ctx.event_queues, ctx.recent_ends, record, event, ctx.now())
    assert ctx.calls.get("gone") is not None
    with pytest.raises(SettingsError, match="CALL_EVENTS_QUEUE_NAME"):
        run_tick(ctx)  # the tick does not run either: it would end calls


# --- the queue function: each answer of the topic -------------------------------------------------------
RETRIED = {
    "401 wrong key": ([], 1),  # the stand-in refuses the key itself
    "403": ([Reply(403)], 1),
    "408": ([Reply(408)], 1),
    "429 Retry-After 3600": ([Reply(429, headers={"Retry-After": "3600"})], 1),
    "500": ([Reply(500)] * 3, 3),
    "502": ([Reply(502)], 1),
    "503 Retry-After 3600": ([Reply(503, headers={"Retry-After": "3600"})] * 3, 3),
    "504": ([Reply(504)] * 3, 3),
    "connection reset": ([RESET], 1),
    "timeout": ([Reply(503, delay=1.5)], 1),  # no answer within read_timeout
}


@pytest.mark.parametrize("case", RETRIED)
def test_what_a_later_try_may_fix_fails_the_invocation_for_the_host_to_deliver_again(
    case, events_app, host, topic: Topic, caplog, monkeypatch
):
    """401/403/408/429/5xx, timeouts and connection errors: raised, nothing poisoned by the app; the SDK's own
    retries are bounded (3 attempts on 500/503/504 only) and never sleep for the topic's Retry-After."""
    replies, attempts = RETRIED[case]
    overrides = {"CALL_EVENTS_TOPIC_KEY": "wrong-key"} if case == "401 wrong key" else {}
    ctx = events_app(**overrides)
    monkeypatch.setitem(topic_module.SEND_OPTIONS, "read_timeout", 0.5)
    sleeps: list[float] = []
    monkeypatch.setattr(RequestsTransport, "sleep", lambda self, seconds: sleeps.append(seconds))
    event = an_event()
    topic.standin.script(*replies)
    with caplog.at_level(logging.WARNING), pytest.raises(TopicUnavailable):
        deliver(host, event_text(event), dequeue_count=1)
    assert len(topic.standin.requests) == attempts and topic.standin.events == []
    assert all(seconds <= topic_module.SEND_OPTIONS["retry_backoff_max"] for seconds in sleeps)
    assert queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name)) == []
    [warning] = errors(caplog, logging.WARNING)
    assert f"eventId={event['eventId']}" in warning and "the queue delivers it again" in warning

    caplog.clear()
    topic.standin.script(*replies)
    with caplog.at_level(logging.WARNING), pytest.raises(TopicUnavailable):
        deliver(host, event_text(event), dequeue_count=5)  # host.json maxDequeueCount: the host poisons it next
    [error] = errors(caplog)
    assert f"eventId={event['eventId']}" in error and "last try" in error
    assert queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name)) == []  # the host's to move


@pytest.mark.parametrize(("status", "code"), [(400, "BadRequest"), (404, "NotFound"), (413, "RequestEntityTooLarge")])
def test_any_other_answer_is_an_error_and_the_function_poisons_the_message_itself(
    status, code, events_app, host, topic: Topic, caplog
):
    ctx = events_app()
    event = an_event()
    topic.standin.script(Reply(status))
    with caplog.at_level(logging.ERROR):
        deliver(host, event_text(event))  # completes: the host deletes the original
    [error] = errors(caplog)
    assert f"eventId={event['eventId']}" in error and f"status={status}" in error and f"code={code}" in error
    assert queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name)) == [event_text(event)]


def test_a_message_while_the_endpoint_is_unset_goes_to_poison_naming_the_setting(make_context, host, caplog):
    ctx = make_context(install=True)
    event = an_event()
    with caplog.at_level(logging.ERROR):
        deliver(host, event_text(event))
    [error] = errors(caplog)
    assert "CALL_EVENTS_TOPIC_ENDPOINT is not set" in error and event["eventId"] in error
    assert queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name)) == [event_text(event)]


def test_a_topic_without_key_or_identity_poisons_naming_the_settings(events_app, host, topic: Topic, caplog):
    ctx = events_app(CALL_EVENTS_TOPIC_KEY=None)
    with caplog.at_level(logging.ERROR):
        deliver(host, event_text(an_event()))
    [error] = errors(caplog)
    assert "CALL_EVENTS_TOPIC_KEY" in error and "AzureWebJobsStorage__clientId" in error
    assert topic.standin.requests == []
    assert len(queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name))) == 1
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert run_tick(ctx).complete  # the tick runs (ends would still queue their events), and names it
    [named] = errors(caplog)
    assert named.startswith("call events not published: invalid settings: CALL_EVENTS_TOPIC_KEY")


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"type": "keepaliveRange"}', b'{"type": "callEnded", "eventId": "e"}', "\u00e9".encode("latin-1")],
)
def test_a_message_that_is_not_an_event_goes_to_poison_with_an_error(body, events_app, host, topic: Topic, caplog):
    ctx = events_app()
    with caplog.at_level(logging.ERROR):
        deliver(host, body)
    [error] = errors(caplog)
    assert "call event message invalid id=m1" in error
    assert topic.standin.requests == []
    assert len(queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name))) == 1


def test_an_events_queue_shared_with_another_queue_is_never_consumed(events_app, host, topic: Topic, caplog):
    """CALL_EVENTS_QUEUE_NAME = CLEANUP_QUEUE_NAME: the trigger would read the bot's own events; the function fails
    every invocation naming the setting, so the message stays on its queue, and moves nothing anywhere."""
    ctx = events_app(CALL_EVENTS_QUEUE_NAME=None)
    ctx = events_app(CALL_EVENTS_QUEUE_NAME=ctx.settings.cleanup_queue_name)
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError):
        deliver(host, event_text(an_event()))
    [error] = errors(caplog)
    assert "CALL_EVENTS_QUEUE_NAME must differ from CLEANUP_QUEUE_NAME" in error
    assert topic.standin.requests == [] and queue_texts(ctx, poison_queue_name(ctx.settings.cleanup_queue_name)) == []


# --- the Entra path ------------------------------------------------------------------------------------
def test_without_a_key_the_storage_identity_publishes_with_an_entra_token(events_app, host, topic: Topic):
    credential = FakeTokenCredential()
    topic.standin.tokens.add(credential.token)
    events_app(
        CALL_EVENTS_TOPIC_KEY=None,
        AzureWebJobsStorage__clientId="3d9f1e2a-0000-4000-8000-0000000000a1",
        topic_credential=credential,
    )
    event = an_event()
    deliver(host, event_text(event))
    [request] = topic.standin.requests
    assert request.status == 200 and request.header("aeg-sas-key") is None
    assert request.header("Authorization") == f"Bearer {credential.token}"
    assert credential.scopes == [("https://eventgrid.azure.net/.default",)]  # the SDK's scope, the contract's
    assert [e.get_id() for e in topic.standin.events] == [event["eventId"]]


# --- the operator's resend -----------------------------------------------------------------------------
def test_resend_moves_poisoned_events_back_unchanged_and_they_are_published(events_app, host, topic: Topic):
    ctx = events_app()
    first, second = an_event("call-1"), an_event("call-2")
    topic.standin.script(Reply(400), Reply(400))
    deliver(host, event_text(first))
    deliver(host, event_text(second))
    poison = poison_queue_name(ctx.settings.events_queue_name)
    connection = ctx.settings.storage.connection_string  # type: ignore[union-attr]
    QueueClient.from_connection_string(connection, poison).send_message("not base64 !")  # raw: left for a person

    result = resend_poisoned(ctx)
    assert (result.moved, result.left) == (2, 1)
    assert (result.source, result.target) == (poison, ctx.settings.events_queue_name)
    texts = queue_texts(ctx, ctx.settings.events_queue_name)
    assert sorted(texts) == sorted([event_text(first), event_text(second)])
    for text in texts:
        deliver(host, text)
    assert sorted(e.get_id() for e in topic.standin.events) == sorted([first["eventId"], second["eventId"]])


def test_the_command_line_resends_poisoned_events(make_cli):
    """`callkeeper events resend` as an operator runs it: the poisoned text back on the events queue, unchanged."""
    app = make_cli()
    ctx = app.context()
    event = an_event()
    ctx.storage.queue(poison_queue_name(ctx.settings.events_queue_name)).send_message(event_text(event))

    run = app.run("events", "resend", "--json")
    assert run.code == 0, run.stderr
    assert run.json() == {
        "moved": 1,
        "left": 0,
        "from": poison_queue_name(ctx.settings.events_queue_name),
        "to": ctx.settings.events_queue_name,
    }
    assert queue_texts(ctx, ctx.settings.events_queue_name) == [event_text(event)]
    assert queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name)) == []
    again = app.run("events", "resend")
    assert again.code == 0 and again.stdout.startswith("moved 0 events from ")


def test_the_local_standins_serve_a_topic_behind_a_flag(tmp_path, monkeypatch):
    """`python -m tests.standins --topic` (the README's local run): prints the CALL_EVENTS_* settings, takes what the
    app publishes with them, and logs each event, so a developer with `func start` sees the events arrive."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins", "--topic", "--dir", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            if line.startswith("serving"):
                break
            lines.append(line)
        values = json.loads("".join(lines))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", values["REQUESTS_CA_BUNDLE"])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        event = an_event()
        topic = topic_module.Topic(
            values["CALL_EVENTS_TOPIC_ENDPOINT"], topic_module.AzureKeyCredential(values["CALL_EVENTS_TOPIC_KEY"])
        )
        topic.publish(event)
        topic.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert f"topic received callkeeper.callEnded id={event['eventId']}" in stderr


def test_the_topic_key_never_reaches_a_log_record_or_a_queue(events_app, host, topic: Topic, caplog):
    """At DEBUG for every logger a publish goes through: accepted, refused, a wrong key, a key in the URL."""
    from tests.integration.test_secrets import LOGGERS, leaks, record_texts

    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    ctx = events_app()
    key = topic.standin.key
    assert key
    deliver(host, event_text(an_event("ok")))
    topic.standin.script(Reply(400))
    deliver(host, event_text(an_event("refused")))
    wrong = events_app(CALL_EVENTS_TOPIC_KEY=key + "-wrong")
    with pytest.raises(TopicUnavailable):
        deliver(host, event_text(an_event("wrong")))
    events_app(CALL_EVENTS_TOPIC_ENDPOINT=topic.endpoint + f"?aeg-sas-key={key}")
    deliver(host, event_text(an_event("query")))
    texts = list(record_texts(caplog.records))
    texts += queue_texts(ctx, poison_queue_name(ctx.settings.events_queue_name))
    texts += [repr(ctx.settings), repr(wrong.settings)]
    assert len(topic.standin.events) == 1
    assert leaks(texts, {"topic key": key}) == []
