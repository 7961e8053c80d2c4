"""The topic client's rules (shared/topic.py) that need no network: the CloudEvent, the credential, the bounds."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.core.credentials import AzureKeyCredential

from shared import topic as topic_module
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
EVENT = {
    "schemaVersion": 1,
    "type": "callEnded",
    "eventId": "0b0c3f9e-1111-4222-8333-444455556666",
    "callId": "a/b é",
    "detectedAt": "2026-11-27T13:10:36.120Z",
    "metadata": {},
}
TOPIC = "https://topic.westus2-1.eventgrid.azure.net/api/events"


def test_the_cloud_event_sets_every_attribute_the_contract_names():
    event = topic_module.cloud_event(EVENT)
    assert (event.type, event.source, event.id) == ("callkeeper.callEnded", "/callkeeper", EVENT["eventId"])
    assert event.time == datetime(2026, 11, 27, 13, 10, 36, 120000, tzinfo=UTC)  # never the SDK's own "now"
    assert event.subject == "calls/a%2Fb%20%C3%A9"  # one segment: a slash is encoded too
    assert event.datacontenttype == "application/json" and event.data == EVENT and event.specversion == "1.0"


def test_a_key_is_sent_as_a_key_credential():
    settings = load_settings({"CALL_EVENTS_TOPIC_ENDPOINT": TOPIC, "CALL_EVENTS_TOPIC_KEY": "k"})
    credential = topic_module.credential(settings)
    assert isinstance(credential, AzureKeyCredential) and credential.key == "k"


def test_without_a_key_the_storage_identity_is_the_managed_identity(monkeypatch):
    import azure.identity

    made: list[dict[str, str | None]] = []
    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", lambda **kwargs: made.append(kwargs) or "mi")
    settings = load_settings({"CALL_EVENTS_TOPIC_ENDPOINT": TOPIC, "AzureWebJobsStorage__clientId": "storage-id"})
    assert topic_module.credential(settings) == "mi"
    assert made == [{"client_id": "storage-id"}]  # the storage identity, never GRAPH_MANAGED_IDENTITY_CLIENT_ID


def test_one_invocation_stays_well_under_the_function_timeout():
    options = topic_module.SEND_OPTIONS
    worst = (options["retry_total"] + 1) * (options["connection_timeout"] + options["read_timeout"])
    worst += options["retry_total"] * options["retry_backoff_max"]
    assert worst <= options["timeout"] <= 60
    hours, minutes, seconds = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    assert options["timeout"] * 5 <= int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def test_only_the_sdks_warnings_about_our_send_options_are_silenced(caplog):
    topic_module.Topic(TOPIC, AzureKeyCredential("k"))  # installs the filter (no I/O)
    model = logging.getLogger("azure.eventgrid._legacy._generated._serialization")
    text = "%s is not a known attribute of class %s and will be ignored"
    with caplog.at_level(logging.WARNING, logger=model.name):
        model.warning(text, "retry_total", "CloudEvent")
        model.warning(text, "raw_response_hook", "CloudEvent")
        model.warning(text, "something_else", "CloudEvent")
        model.warning("Datetime with no tzinfo will be considered UTC.")
    assert [r.getMessage().split()[0] for r in caplog.records] == ["something_else", "Datetime"]


@pytest.mark.parametrize("text", ["2026-11-27T13:10:36.120Z", "2026-11-27T13:10:36.000Z"])
def test_times_round_trip_to_the_same_text_in_the_sdks_serializer(text):
    from azure.eventgrid._legacy._generated._serialization import Serializer

    assert Serializer.serialize_iso(topic_module.parse_time(text)) == text
