"""What untrusted input costs in storage: a 100-item notification request, and the purge of remembered ends.

    .venv/bin/python benchmarks/untrusted.py [--ends 10000] [--runs 3] [--expired 100000] [--expired-days 10]
                                          [--budget 120] [--interval 600] [--purge-only]

Starts its own Azurite and an HTTPS OpenID stand-in (in this process), then measures with the real
clients (storage requests counted by the SDK pipeline's request hook, `Context(on_storage_request=...)`):

- `POST /api/notifications` with 100 items, signed like Graph's: 100 distinct new calls `established`;
  100 distinct known calls `terminated`; 100 items about one call (folded into one); 1 item, for scale.
- the timer's purge at `--ends` remembered ends spread evenly over the last 24 hours and one 10-minute tick
  (the steady state: a tick's worth has expired), median of `--runs`;
- the worst case, `--expired` ends all older than 24 hours (after an outage, or an inflow above what the
  purge keeps up with), spread over `--expired-days` day partitions (Azurite finds a row by scanning its
  partition, so one partition of 100,000 would measure that scan, not the purge): timer invocations of
  `--budget` seconds each until none is left, each one's removed rows, storage requests and seconds, the
  totals, and the inflow that budget keeps up with at one invocation every `--interval` seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import azure.functions as func  # noqa: E402

from shared import notifications  # noqa: E402
from shared.context import Context  # noqa: E402
from shared.keepalive import PURGE_BUDGET_SECONDS, purge_quietly  # noqa: E402
from shared.models import utc_now  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from shared.storage import ended_entity  # noqa: E402
from tests import azurite  # noqa: E402
from tests.fakes import RequestCounter  # noqa: E402
from tests.standins.openid import OpenIdStandin  # noqa: E402
from tests.standins.server import StandinServer  # noqa: E402
from tests.standins.tls import make_tls  # noqa: E402

CLIENT_ID = "6a1c2b3d-0000-4000-8000-00000000b07a"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def item(call_id: str, state: str) -> dict[str, Any]:
    return {
        "changeType": "updated",
        "resourceUrl": f"/communications/calls/{call_id}",
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state},
    }


def measure(ctx: Context, fn: Callable[[], Any]) -> tuple[dict[str, int], float]:
    before = ctx.on_storage_request.snapshot()
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    return ctx.on_storage_request.since(before, ctx.on_storage_request.snapshot()), seconds * 1000


def notification_runs(ctx: Context, openid: OpenIdStandin, runs: int) -> None:
    import json

    token = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))

    def post(items: list[dict[str, Any]]) -> Callable[[], Any]:
        body = json.dumps({"value": items}).encode()
        request = func.HttpRequest(
            "POST", "/api/notifications", headers={"Authorization": "Bearer " + token}, body=body
        )

        def send() -> None:
            response = notifications.receive(ctx, request)
            assert response.status_code == 202, response.get_body()

        return send

    post([item("warm", "established"), item("warm", "terminated")])()  # tables, queue, keys
    cases: dict[str, Callable[[int], list[dict[str, Any]]]] = {
        "100 new calls established": lambda run: [item(f"e{run}-{i}", "established") for i in range(100)],
        "100 known calls terminated": lambda run: [item(f"e{run}-{i}", "terminated") for i in range(100)],
        "100 items about one call": lambda run: (
            [item(f"one{run}", "established")] * 99 + [item(f"one{run}", "terminated")]
        ),
        "1 new call established": lambda run: [item(f"single{run}", "established")],
    }
    print("notifications (one request of N items)")
    print(f"  {'case':<30} {'storage requests':>34} {'ms (median)':>12}")
    for name, build in cases.items():
        counts: dict[str, int] = {}
        times = []
        for run in range(runs):
            counts, ms = measure(ctx, post(build(run)))
            times.append(ms)
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  {name:<30} {sum(counts.values()):>4} ({shown:<27}) {statistics.median(times):>10.1f}")


def seed_ends(ctx: Context, count: int, oldest: timedelta, now: Any) -> None:
    """`count` remembered ends spread evenly from `now - oldest` to `now`, written in transactions."""
    table = ctx.storage.table(ctx.settings.ended_table_name)
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for i in range(count):
        at = now - oldest + oldest * (i / count)
        entity = ended_entity(f"ended-{i}", tenant_id=TENANT, reason="keepAliveNotFound", now=at)
        by_partition.setdefault(entity["PartitionKey"], []).append(entity)
    for rows in by_partition.values():
        for start in range(0, len(rows), 100):
            table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])


def steady_purge(make: Callable[[], Context], ends: int, runs: int) -> None:
    """One timer invocation's purge when a day of ends is remembered and one tick's worth has expired."""
    times, counts, removed = [], {}, 0
    for _ in range(runs):
        ctx = make()
        now = utc_now()
        seed_ends(ctx, ends, timedelta(hours=24, minutes=10), now)
        result: list[int] = []
        counts, ms = measure(
            ctx, lambda ctx=ctx, now=now, result=result: result.append(ctx.recent_ends.purge(now).removed)
        )
        removed = result[0]
        times.append(ms)
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"purge, steady: {ends:,} remembered over the last 24 h + one 10-minute tick")
    print(
        f"  removed {removed:,}; {sum(counts.values())} storage requests ({shown}); "
        f"{statistics.median(times):.0f} ms (median)"
    )


def expired_purge(make: Callable[[], Context], expired: int, days: int, budget: float, interval: float) -> None:
    """`expired` ends all older than 24 hours, purged by timer invocations of `budget` seconds until none is left.

    They are spread over `days` day partitions: Azurite finds a row by scanning its partition (the real
    service by its index), so 100,000 rows in one partition would measure Azurite's scan, not the purge.
    """
    ctx = make()
    now = utc_now()
    started = time.perf_counter()
    seed_ends(ctx, expired, timedelta(days=days), now - timedelta(hours=25))
    print(
        f"purge, worst: {expired:,} expired ends over {days} day partitions "
        f"(seeded in {time.perf_counter() - started:.0f} s)"
    )
    print(f"  {'invocation':>10} {'removed':>9} {'left':>5} {'storage requests':>34} {'seconds':>8}")
    total_counts: dict[str, int] = {}
    total_seconds, total_removed, invocation = 0.0, 0, 0
    while True:
        invocation += 1
        result: list[Any] = []
        counts, ms = measure(
            ctx, lambda result=result: result.append(purge_quietly(ctx.recent_ends, lambda: now, budget=budget))
        )
        purged = result[0]
        assert purged is not None
        total_seconds += ms / 1000
        total_removed += purged.removed
        for kind, n in counts.items():
            total_counts[kind] = total_counts.get(kind, 0) + n
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(
            f"  {invocation:>10} {purged.removed:>9,} {str(purged.left).lower():>5} "
            f"{sum(counts.values()):>5} ({shown:<26}) {ms / 1000:>8.1f}"
        )
        if not purged.left:
            break
    rate = total_removed / total_seconds
    shown = ", ".join(f"{k} {v}" for k, v in sorted(total_counts.items()))
    print(
        f"  all {total_removed:,} removed in {invocation} invocation(s): {sum(total_counts.values())} storage "
        f"requests ({shown}), {total_seconds:.1f} s, {rate:,.0f} ends/s"
    )
    kept = rate * budget
    print(
        f"  a budget of {budget:g} s removes about {kept:,.0f} ends per invocation: at one invocation every "
        f"{interval:g} s it keeps up with an inflow of about {kept / interval:,.0f} ends/s "
        f"({kept / interval * 86400:,.0f} a day)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ends", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--expired", type=int, default=100_000, help="expired ends for the worst case")
    parser.add_argument("--expired-days", type=int, default=10, help="day partitions they are spread over")
    parser.add_argument("--budget", type=float, default=PURGE_BUDGET_SECONDS, help="each invocation's purge budget, s")
    parser.add_argument("--interval", type=float, default=600.0, help="seconds between timer invocations")
    parser.add_argument("--purge-only", action="store_true", help="skip the notification cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        instance, process = azurite.start(Path(folder))
        tls = make_tls(Path(folder) / "tls")
        openid = OpenIdStandin()
        server = StandinServer(openid, tls.server_context).serve_in_thread()
        openid.base_url = server.url
        os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca_bundle)
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        try:
            suffix = [0]

            def make() -> Context:
                suffix[0] += 1
                return Context(
                    load_settings(
                        {
                            "AzureWebJobsStorage": instance.connection_string,
                            "CALLS_TABLE_NAME": f"bench{suffix[0]}",
                            "CLEANUP_QUEUE_NAME": f"bench-cleanup-{suffix[0]}",
                            "GRAPH_CLIENT_ID": CLIENT_ID,
                            "GRAPH_NOTIFICATION_OPENID_URL": openid.config_url,
                            "GRAPH_DRY_RUN": "true",
                        }
                    ),
                    on_storage_request=RequestCounter(),
                )

            if not args.purge_only:
                notification_runs(make(), openid, args.runs)
            steady_purge(make, args.ends, args.runs)
            expired_purge(make, args.expired, args.expired_days, args.budget, args.interval)
        finally:
            server.stop()
            azurite.stop(process)


if __name__ == "__main__":
    main()
