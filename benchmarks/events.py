"""What an end costs with an Event Grid topic set, beside one without; and how long an event may wait while the
topic is down, from host.json and the topic client's bounds.

    .venv/bin/python benchmarks/events.py [--ends 200] [--runs 3]

Starts its own Azurite and an HTTPS Event Grid topic stand-in (in this process), then with the real clients
(storage requests counted by the SDK pipeline's request hook, `Context(on_storage_request=...)`):

- ends `--ends` calls through the one end sequence (`shared.ending.end_call`: events, memory, delete), once
  without a topic and once with one, side by side in each run: storage requests and milliseconds per end;
- publishes each queued event with the queue function's body (`shared.call_events.publish_message`), as the
  host would hand it over: topic requests, storage requests and milliseconds per event.
Prints medians of `--runs`. The host's own queue requests for the trigger (a receive and a delete per message,
and its polling) are not the app's and are not counted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.functions.queue import QueueMessage  # noqa: E402

from shared import topic as topic_module  # noqa: E402
from shared.call_events import publish_message  # noqa: E402
from shared.context import Context  # noqa: E402
from shared.ending import end_call  # noqa: E402
from shared.events import call_ended_event  # noqa: E402
from shared.fanout import MAX_DEQUEUE_COUNT  # noqa: E402
from shared.models import utc_now  # noqa: E402
from shared.registry import register  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from tests import azurite  # noqa: E402
from tests.fakes import RequestCounter  # noqa: E402
from tests.standins.server import StandinServer  # noqa: E402
from tests.standins.tls import make_tls  # noqa: E402
from tests.standins.topic import TopicStandin  # noqa: E402

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _seconds(span: str) -> float:
    hours, minutes, seconds = span.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def end_run(ctx: Context, ends: int, label: str) -> tuple[dict[str, int], float]:
    """Register `ends` calls, then end each: storage requests of the ends alone, and ms per end."""
    now = utc_now()
    records = []
    for i in range(ends):
        call_id = f"{label}-{i}"
        register(ctx.calls, call_id=call_id, tenant_id=TENANT, default_tenant_id=None, metadata={}, now=now)
        record = ctx.calls.get(call_id)  # as the sweep reads it: with its ETag, for the conditional delete
        assert record is not None
        records.append(record)
    counter = ctx.on_storage_request
    assert isinstance(counter, RequestCounter)
    before = counter.snapshot()
    started = time.perf_counter()
    for record in records:
        event = call_ended_event(record, tenant_id=TENANT, detected_at=now, reason="keepAliveNotFound", graph={})
        end_call(ctx.calls, ctx.event_queues, ctx.recent_ends, record, event, now)
    elapsed = time.perf_counter() - started
    return RequestCounter.since(before, counter.snapshot()), elapsed * 1000 / ends


def publish_run(ctx: Context, standin: TopicStandin) -> tuple[int, dict[str, int], float, int]:
    """Publish every event waiting on the events queue as the host would: topic requests, storage requests, ms."""
    queue = ctx.storage.queue_client(ctx.settings.events_queue_name)
    messages = []
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
        messages.extend(batch)
    counter = ctx.on_storage_request
    assert isinstance(counter, RequestCounter)
    topic_before = len(standin.requests)
    before = counter.snapshot()
    started = time.perf_counter()
    for message in messages:
        body = base64.b64decode(message.content)
        publish_message(ctx, QueueMessage(id=message.id, body=body, dequeue_count=1))
    elapsed = time.perf_counter() - started
    spent = RequestCounter.since(before, counter.snapshot())
    for message in messages:  # what the host does after a success (not counted: not the app's request)
        queue.delete_message(message)
    return len(standin.requests) - topic_before, spent, elapsed * 1000 / max(1, len(messages)), len(messages)


def wait_arithmetic() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    visibility = _seconds(queues["visibilityTimeout"])
    polling = _seconds(queues["maxPollingInterval"])
    tries = queues["maxDequeueCount"]
    assert tries == MAX_DEQUEUE_COUNT
    options = topic_module.SEND_OPTIONS
    fast = 0.0  # refused connections, 401/403/429 (no retry within the invocation)
    slow = float(options["timeout"])  # azure-core's bound on one send, retries included
    gaps = (tries - 1) * (visibility + polling)
    print("how long an event may wait while the topic is down (host.json, shared/topic.py)")
    print(f"  maxDequeueCount {tries}, visibilityTimeout {visibility:g} s, maxPollingInterval {polling:g} s, "
          f"one invocation at most {slow:g} s (functionTimeout {host['functionTimeout']})")  # fmt: skip
    print(f"  to poison: {tries} tries and {tries - 1} waits of visibilityTimeout (+ up to one polling interval)")
    print(f"  fast failures:  {tries} x {fast:g} s + {tries - 1} x ({visibility:g} + {polling:g}) s = "
          f"{tries * fast + gaps:.0f} s (about {(tries * fast + gaps) / 60:.1f} min)")  # fmt: skip
    print(f"  slowest tries:  {tries} x {slow:g} s + {tries - 1} x ({visibility:g} + {polling:g}) s = "
          f"{tries * slow + gaps:.0f} s (about {(tries * slow + gaps) / 60:.1f} min)")  # fmt: skip
    print(f"  then on <name>-poison for up to {timedelta(days=7).days} days (the queue's default time to live), "
          "until `callkeeper events resend`")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ends", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        instance, process = azurite.start(Path(folder))
        tls = make_tls(Path(folder) / "tls")
        standin = TopicStandin(key="bench-topic-key")
        server = StandinServer(standin, tls.server_context).serve_in_thread()
        os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca_bundle)
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        try:
            suffix = [0]

            def make(topic: bool) -> Context:
                suffix[0] += 1
                values = {
                    "AzureWebJobsStorage": instance.connection_string,
                    "CALLS_TABLE_NAME": f"bench{suffix[0]}",
                    "CLEANUP_QUEUE_NAME": f"bench-cleanup-{suffix[0]}",
                    "CALL_EVENTS_QUEUE_NAME": f"bench-events-{suffix[0]}",
                    "GRAPH_DRY_RUN": "true",
                }
                if topic:
                    values["CALL_EVENTS_TOPIC_ENDPOINT"] = f"{server.url}/api/events"
                    values["CALL_EVENTS_TOPIC_KEY"] = standin.key or ""
                ctx = Context(load_settings(values), on_storage_request=RequestCounter())
                end_run(ctx, 1, "warm")  # tables and queues created, clients built: the steady state
                if topic:
                    publish_run(ctx, standin)  # the warm-up's event: the topic client built, its connection open
                return ctx

            rows: dict[str, list[tuple[dict[str, int], float]]] = {"without a topic": [], "with a topic": []}
            published: list[tuple[int, dict[str, int], float, int]] = []
            for run in range(args.runs):
                for name, topic in (("without a topic", False), ("with a topic", True)):
                    ctx = make(topic)
                    rows[name].append(end_run(ctx, args.ends, f"r{run}"))
                    if topic:
                        published.append(publish_run(ctx, standin))
            print(f"one end (shared/ending.py), {args.ends} ends per run, median of {args.runs} runs, Azurite")
            print(f"  {'case':<18} {'storage requests per end':<46} {'ms per end':>10}")
            medians = {}
            for name, results in rows.items():
                counts = results[-1][0]
                shown = ", ".join(f"{k} {v / args.ends:g}" for k, v in sorted(counts.items()))
                medians[name] = statistics.median(ms for _, ms in results)
                print(f"  {name:<18} {sum(counts.values()) / args.ends:>4g} ({shown:<38}) {medians[name]:>10.2f}")
            print(f"  with/without: {medians['with a topic'] / medians['without a topic']:.2f}")
            topic_requests, storage, ms, count = published[-1]
            print(f"publishing (the queue function's body), {count} events per run, median of {args.runs} runs")
            print(f"  topic requests per event {topic_requests / max(1, count):g}, app storage requests per event "
                  f"{sum(storage.values()) / max(1, count):g}, "
                  f"ms per event {statistics.median(p[2] for p in published):.2f}")  # fmt: skip
            wait_arithmetic()
        finally:
            server.stop()
            azurite.stop(process)


if __name__ == "__main__":
    main()
