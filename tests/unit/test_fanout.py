"""Fan-out without services: ranges, work messages, the queue function's metadata and host.json, and what a
sweep reports when writes are lost. (The batch writer: tests/unit/test_writers.py.)"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.errors import InvalidWorkMessage, StorageMisconfigured
from shared.fanout import ALL_PARTITIONS, MAX_DEQUEUE_COUNT, WorkRange, parse_work, plan_ranges
from shared.keepalive import run_work
from tests.fakes import WorkMessage

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


# --- ranges -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("estimate", "per_range", "count"),
    [(1, 5000, 1), (5001, 5000, 2), (10_000, 5000, 2), (100_000, 5000, 20), (1_000_000, 5000, 64), (30, 10, 3)],
)
def test_ranges_cover_every_partition_once_in_contiguous_groups(estimate, per_range, count):
    ranges = plan_ranges(estimate, per_range, "tick")
    assert len(ranges) == count
    assert [p for r in ranges for p in r.partitions] == list(ALL_PARTITIONS)
    sizes = [len(r.partitions) for r in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert {r.tick_id for r in ranges} == {"tick"}


def test_a_range_is_labelled_by_its_first_and_last_partition():
    assert WorkRange(("07",), "t").label == "07"
    assert WorkRange(tuple(ALL_PARTITIONS[:32]), "t").label == "00-31"


def test_a_work_message_reads_back_as_its_range():
    work = WorkRange(("00", "01"), "6f1c")
    assert json.loads(work.text()) == {
        "schemaVersion": 1,
        "type": "keepaliveRange",
        "partitions": ["00", "01"],
        "tickId": "6f1c",
    }
    assert parse_work(work.text().encode()) == work
    assert parse_work(json.dumps({**work.to_json(), "partitions": ["01", "00"], "extra": 1})) == work


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        "not json",
        "[1, 2]",
        json.dumps({"schemaVersion": 2, "type": "keepaliveRange", "partitions": ["00"], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "callEnded", "partitions": ["00"], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": [], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": "00", "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["64"], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["7"], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": [0], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["00", "00"], "tickId": "t"}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["00"]}),
        json.dumps({"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["00"], "tickId": ""}),
        "x" * 5000,
    ],
)
def test_anything_else_is_an_invalid_work_message(body):
    with pytest.raises(InvalidWorkMessage):
        parse_work(body)


# --- the queue function and host.json ------------------------------------------------------------------
def test_the_queue_function_is_bound_to_the_work_queue_setting(host):
    trigger = host.trigger("keepalive_work")
    assert trigger["type"] == "queueTrigger"
    assert trigger["queueName"] == "%KEEPALIVE_WORK_QUEUE_NAME%"
    assert trigger["connection"] == "AzureWebJobsStorage"
    assert trigger["name"] == "msg"


def test_host_json_queue_settings_match_the_code():
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert queues["batchSize"] == 1 and queues["newBatchThreshold"] == 0  # one range at a time per instance
    assert set(queues) == {
        "batchSize",
        "newBatchThreshold",
        "maxDequeueCount",
        "visibilityTimeout",
        "maxPollingInterval",
    }


def test_an_invalid_work_message_is_logged_and_dropped_without_touching_anything(make_context, caplog):
    ctx = make_context(AzureWebJobsStorage=None, GRAPH_DRY_RUN=None)  # no storage at all: nothing may be needed
    with caplog.at_level(logging.ERROR):
        assert run_work(ctx, WorkMessage(b"not json", dequeue_count=2)) is None
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "keepalive work message dropped" in error and "dequeueCount=2" in error and "not JSON" in error


def test_the_last_try_is_warned_before_the_range_runs(make_context, caplog):
    ctx = make_context(AzureWebJobsStorage=None)  # storage missing: the run fails after the warning
    body = WorkRange(("05",), "tick-1").text().encode()
    with caplog.at_level(logging.INFO), pytest.raises(StorageMisconfigured):
        run_work(ctx, WorkMessage(body, dequeue_count=MAX_DEQUEUE_COUNT))
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "partitions=05" in warning and "tickId=tick-1" in warning and f"dequeueCount={MAX_DEQUEUE_COUNT}" in warning
    assert "last try" in warning and "poison" in warning
