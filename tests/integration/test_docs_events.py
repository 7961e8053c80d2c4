"""docs/events.md's Python example runs: its Event Grid-triggered function, indexed as the host indexes it, takes an
event the app published to the topic stand-in, decoded by azure-functions' own Event Grid converter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage

from shared.events import call_ended_event, event_text
from shared.models import CallRecord, utc_now
from tests.standins.fixtures import Topic

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def python_example() -> str:
    [code] = [
        block for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if "event_grid_trigger" in block
    ]
    return code


def test_the_documented_function_handles_a_published_event_once(make_context, host, topic: Topic):
    make_context(install=True, **topic.settings())
    record = CallRecord("491f0b00-ffff-4bc9-a43e-b226498ec22a", "72f988bf-86f1-41af-91ab-2d7cd011db47", utc_now(),
                        "0b0c3f9e-1111-4222-8333-444455556666", metadata={"meeting": "standup"})  # fmt: skip
    event = call_ended_event(record, tenant_id=record.tenant_id, detected_at=utc_now(), reason="keepAliveNotFound",
                             graph={"status": 404, "code": "itemNotFound", "message": "gone", "requestId": None,
                                    "clientRequestId": "8d3b2c1a-0000-4000-8000-000000000001"})  # fmt: skip
    host.user_function("publish_call_event")(QueueMessage(id="m", body=event_text(event).encode(), dequeue_count=1))
    [published] = topic.standin.raw_events

    namespace: dict[str, Any] = {}
    exec(compile(python_example(), str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own code
    handled: set[tuple[str, str]] = set()
    released: list[tuple[Any, ...]] = []
    namespace["already_handled"] = lambda source, event_id: (
        (source, event_id) in handled or handled.add((source, event_id))
    )
    namespace["release_call"] = lambda *args: released.append(args)
    app: func.FunctionApp = namespace["app"]
    [function] = app.get_functions()
    [binding] = json.loads(function.get_function_json())["bindings"]
    assert (binding["type"], binding["name"]) == ("eventGridTrigger", "event")

    delivered = EventGridEventInConverter.decode(Datum(json.dumps(published), "json"), trigger_metadata={})
    assert isinstance(delivered, func.CloudEvent)
    function.get_user_function()(delivered)
    function.get_user_function()(delivered)  # delivered again: dropped by (source, id)
    assert released == [(record.call_id, record.tenant_id, "keepAliveNotFound", {"meeting": "standup"})]
    assert handled == {("/callkeeper", event["eventId"])}
