"""The fleet's tenant budget without services: shares of work messages, the schedule's interval, the WARNING."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from shared.budget import MIN_TENANT_SHARE, TenantCounts, tenant_share, warn_if_too_slow
from shared.errors import InvalidWorkMessage
from shared.fanout import ALL_PARTITIONS, WorkRange, parse_work, plan_ranges
from shared.models import CallRecord

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BIG = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SMALL = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"


# --- shares ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1, 7, 1000, 2999, 3000])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 10, 20, 33, 63, 64])
def test_the_shares_of_a_ticks_ranges_add_up_to_at_most_the_budget_and_follow_their_size(rate, count):
    ranges = plan_ranges(count * 100, 100, "tick", tenant_rate=rate)
    assert len(ranges) == count
    shares = [r.tenant_rate for r in ranges]
    assert all(share is not None and share > 0 for share in shares)
    milli = [round(share * 1000) for share in shares if share is not None]
    assert sum(milli) <= rate * 1000  # never over the budget, even with odd splits
    assert sum(milli) >= rate * 1000 - count  # and at most 1/1000 per second lost per range to rounding down
    for work in ranges:  # each range's share follows the part of every tenant's calls it covers
        assert work.tenant_rate == pytest.approx(rate * len(work.partitions) / 64, abs=0.001)


def test_an_odd_split_gives_bigger_ranges_a_bigger_share():
    ranges = plan_ranges(300, 100, "tick", tenant_rate=1000)
    assert [len(r.partitions) for r in ranges] == [21, 22, 21]
    assert [r.tenant_rate for r in ranges] == [328.125, 343.75, 328.125]


def test_every_tenant_of_a_range_takes_its_share_so_each_range_ends_with_the_largest_tenant():
    """Calls spread evenly over the partitions: a range holds p/64 of each tenant and takes p/64 of the rate."""
    big, small, rate = 64_000, 640, 1000
    for work in plan_ranges(big + small, 7_000, "tick", tenant_rate=rate):
        share = work.tenant_rate
        assert share is not None
        part = len(work.partitions) / 64
        assert big * part / share == pytest.approx(big / rate, rel=0.001)  # every range: about 64 s of the big one
        assert small * part / share == pytest.approx(small / rate, rel=0.001)


def test_a_share_is_rounded_down_to_a_thousandth():
    assert tenant_share(1, 1) == 0.015  # 1/64 = 0.015625
    assert tenant_share(1000, 64) == 1000
    with pytest.raises(ValueError):
        tenant_share(1000, 0)


def test_a_work_message_carries_its_share_and_reads_it_back():
    work = plan_ranges(20_000, 5_000, "6f1c", tenant_rate=1000)[0]
    body = json.loads(work.text())
    assert body["tenantRate"] == 250.0 and len(body["partitions"]) == 16
    assert parse_work(work.text()) == work
    assert parse_work(work.text()).share(3000) == 250.0  # the message's share, not the instance's budget


def test_a_message_without_a_share_takes_its_part_of_the_instances_budget():
    old = json.dumps(
        {"schemaVersion": 1, "type": "keepaliveRange", "partitions": list(ALL_PARTITIONS[:21]), "tickId": "t"}
    )
    work = parse_work(old)
    assert work.tenant_rate is None
    assert work.share(1000) == 328.125
    assert WorkRange(ALL_PARTITIONS, "t").share(1000) == 1000


@pytest.mark.parametrize(
    "rate",  # as JSON text: Python's json reads NaN, Infinity and 1e400 (as inf) too
    ["0", "-1", "3001", '"100"', "true", "null", "1e-300", "0.014", "1" + "0" * 400, "NaN", "Infinity", "-Infinity",
     "1e400"],
)  # fmt: skip
def test_a_message_with_a_bad_share_is_not_ours(rate):
    text = '{"schemaVersion": 1, "type": "keepaliveRange", "partitions": ["00"], "tickId": "t", "tenantRate": %s}'
    if rate == "null":  # an explicit null is the same as no share
        assert parse_work(text % rate).tenant_rate is None
        return
    with pytest.raises(InvalidWorkMessage, match="tenantRate"):
        parse_work(text % rate)


def test_the_least_share_the_app_writes_is_taken():
    assert MIN_TENANT_SHARE == tenant_share(1, 1) == 0.015  # KEEPALIVE_TENANT_RATE=1, a range of one partition
    work = plan_ranges(10**9, 1, "t", tenant_rate=1)[0]
    assert parse_work(work.text()).tenant_rate == MIN_TENANT_SHARE


# --- the WARNING -------------------------------------------------------------------------------------------
def record(call_id: str, tenant: str | None) -> CallRecord:
    return CallRecord(call_id, tenant, NOW, f"reg-{call_id}")


def test_calls_are_counted_per_tenant_on_the_way_and_a_call_without_one_counts_under_the_default():
    counts = TenantCounts(default_tenant=SMALL)
    pages = [[record("a", BIG), record("b", BIG), record("c", None)], [record("d", BIG)]]
    assert list(counts.pages(pages)) == pages
    assert counts.largest() == (BIG, 3) and counts.counts[SMALL] == 1
    assert TenantCounts().largest() is None
    nobody = TenantCounts()
    nobody.add([record("e", None)])
    assert nobody.largest() is None


def test_the_warning_fires_when_the_largest_tenant_cannot_be_swept_within_the_interval(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.budget"):
        assert warn_if_too_slow((BIG, 700_000), 1000, 600.0)
    [line] = [r.getMessage() for r in caplog.records]
    assert f"keepalive budget too small tenantId={BIG} calls=700000 estimated=false tenantRate=1000" in line
    assert "sweepSeconds=700 intervalSeconds=600" in line and "raise KEEPALIVE_TENANT_RATE" in line


def test_at_the_most_budget_the_warning_advises_the_schedule_instead(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.budget"):
        assert warn_if_too_slow((BIG, 2_000_000), 3000, 600.0, estimated=True)
    line = caplog.records[0].getMessage()
    assert "estimated=true" in line and "lengthen KEEPALIVE_SCHEDULE" in line and "raise" not in line


@pytest.mark.parametrize(
    ("largest", "rate", "interval"),
    [((BIG, 600_000), 1000, 600.0), ((BIG, 10), 1, 600.0), (None, 1000, 600.0), ((BIG, 10**9), 1000, None)],
)
def test_no_warning_when_it_fits_or_nothing_is_known(caplog, largest, rate, interval):
    with caplog.at_level(logging.WARNING, logger="shared.budget"):
        assert not warn_if_too_slow(largest, rate, interval)
    assert caplog.records == []
