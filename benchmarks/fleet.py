"""callkeeper fleet simulation: fanned-out work items in processes of their own, against a throttling Graph.

    make fleet                                              # 5,200 calls, budget 200/s per tenant
    .venv/bin/python benchmarks/fleet.py --calls 240 --rate 60 --ranges 2     # a smoke run

What runs where (all on 127.0.0.1):
- Azurite (tests/azurite.py) holds the calls table and the work queue, in its own process.
- The Graph and identity stand-ins run in their own process (`python -m tests.standins --control
  --tenant-limit L`): Graph answers at most L keepAlives per tenant in any sliding second, and 429 with
  Retry-After above that. L = budget / 0.9: the headroom KEEPALIVE_TENANT_RATE's most (3,000) leaves
  under Graph's real 3,333/s.
- N calls over `--tenants` tenants, one of them holding `--largest` of the calls.
- This process runs the timer (`run_timer`): above KEEPALIVE_FANOUT_THRESHOLD it writes k work messages.
- k worker processes (`fleet.py --worker`), started and ready beforehand, are released at the same
  moment; each takes one message from the queue and runs the queue function's body (`run_work`) on it,
  as k instances would.

Then the same fleet again with the budget ignored (`--ignore-budget` on the workers): each work item
takes the whole KEEPALIVE_TENANT_RATE for itself instead of its message's share, as when every instance
paced only itself. Per tenant it prints the rate achieved against the budget, the most keepAlives Graph
saw in one second, the 429s, and the sweep time (release to the last work item done) against the least
the budget allows (the largest tenant's calls / rate). Targets (issue 12), budget run: 429s <= 1 % of
keepAlives, sweep <= 1.2 x the least. `--strict` exits 1 when one is missed; `--json PATH` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.storage.queue import QueueClient, TextBase64DecodePolicy  # noqa: E402

from benchmarks.bench import Standins, machine, register  # noqa: E402
from shared.context import Context  # noqa: E402
from shared.keepalive import run_timer, run_work  # noqa: E402
from shared.models import CallRecord, utc_now  # noqa: E402
from shared.settings import load_from_environment, load_settings  # noqa: E402
from tests import azurite as azurite_module  # noqa: E402

TARGET_THROTTLED = 0.01
TARGET_SWEEP_OVER_LEAST = 1.2
HEADROOM = 0.9  # budget / Graph's limit: 3,000 / 3,333
WORKER_DEADLINE = 600.0  # seconds a work item may take before the run is abandoned


# --- a work item, in its own process -------------------------------------------------------------------
class _Delivered:
    """A queue message as the trigger hands it over (`shared.fanout.WorkMessage`)."""

    def __init__(self, message_id: str, body: str) -> None:
        self.id, self.dequeue_count, self._body = message_id, 1, body

    def get_body(self) -> bytes:
        return self._body.encode("utf-8")


def worker(ignore_budget: bool) -> int:
    """Ready, wait for `go` on stdin, take one work message, sweep it, print one JSON line."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    ctx = Context(load_from_environment())
    settings = ctx.settings
    connection = settings.storage.connection_string if settings.storage else None
    assert connection is not None, "the fleet runs on Azurite"
    queue = QueueClient.from_connection_string(
        connection, settings.work_queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    ctx.storage.table(), ctx.graph()  # what an instance has built before its first message
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    message = queue.receive_message(visibility_timeout=int(WORKER_DEADLINE))
    if message is None:
        print(json.dumps({"error": "no work message"}), flush=True)
        return 1
    body = message.content
    if ignore_budget:  # as if each instance paced only itself: the whole rate for every work item
        body = json.dumps({**json.loads(body), "tenantRate": settings.tenant_rate})
    summary = run_work(ctx, _Delivered(message.id, body))
    ended = time.monotonic()
    queue.delete_message(message)
    work = json.loads(body)
    print(
        json.dumps(
            {
                "partitions": len(work["partitions"]),
                "tenantRate": work.get("tenantRate"),
                "calls": summary.calls if summary else 0,
                "succeeded": summary.succeeded if summary else 0,
                "failed": summary.failed if summary else 0,
                "retries": summary.retries if summary else 0,
                "ended": ended,
            }
        ),
        flush=True,
    )
    return 0


# --- the fleet --------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One sweep of the fleet: what the workers said and what Graph saw."""

    name: str
    seconds: float
    workers: list[dict[str, Any]]
    tenants: dict[str, dict[str, float]]
    statuses: dict[str, int] = field(default_factory=dict)


def tenant_ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=0xF1EE70000 + i)) for i in range(count)]


def make_calls(calls: int, tenants: Sequence[str], largest: float) -> list[CallRecord]:
    big = round(calls * largest)
    others = len(tenants) - 1
    owners = (
        [tenants[0]] * big + [tenants[1 + i % others] for i in range(calls - big)] if others else [tenants[0]] * calls
    )
    now = utc_now()
    return [
        CallRecord(
            call_id=f"fleet-{i:07d}-{uuid.uuid4().hex[:8]}",
            tenant_id=owner,
            registered_at=now,
            registration_id=str(uuid.uuid4()),
            metadata={"bot": "fleet"},
        )
        for i, owner in enumerate(owners)
    ]


def sweep(values: dict[str, str], standins: Standins, work: Path, name: str, *, ignore_budget: bool) -> Run:
    """The timer, then one process per work message, released together; waits for all of them."""
    time.sleep(1.1)  # Graph's sliding window forgets the previous run
    standins.command("reset")
    settings = load_settings(values)
    ctx = Context(settings)
    run_timer(ctx, past_due=False)
    queue = ctx.storage.queue(settings.work_queue_name)
    count = queue.get_queue_properties().approximate_message_count or 0
    if count == 0:
        raise RuntimeError("the timer wrote no work message: raise --calls or lower the threshold")
    environ = {**os.environ, **values, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        *(["--ignore-budget"] if ignore_budget else []),
    ]
    logs = [open(work / f"{name.replace(' ', '-')}-worker-{i}.log", "wb") for i in range(count)]  # noqa: SIM115 - closed below
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        for log in logs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker did not start; see {work}")
        released = time.monotonic()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, _ = process.communicate(timeout=WORKER_DEADLINE)
            if process.returncode != 0:
                raise RuntimeError(f"a worker failed ({process.returncode}); see {work}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    stats = standins.command("stats")
    ctx.session().close()
    seconds = max(result["ended"] for result in results) - released
    return Run(name, seconds, results, stats["tenants"], stats["statuses"])


# --- report -----------------------------------------------------------------------------------------------
def report(run: Run, calls_of: dict[str, int], rate: float, limit: float) -> dict[str, Any]:
    least = max(calls_of.values()) / rate
    keepalives = sum(calls_of.values())
    throttled = sum(int(t["throttled"]) for t in run.tenants.values())
    failed = sum(w["failed"] for w in run.workers)
    shares = [w["tenantRate"] for w in run.workers]
    print()
    print(
        f"{run.name}: {len(run.workers)} work items at once, shares per tenant {sorted(shares)} "
        f"(sum {sum(s or 0 for s in shares):g}/s)"
    )
    print("| tenant | calls | keepAlives 2xx | 429s | rate achieved /s | most in 1 s | budget /s | Graph's limit /s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    tenants = {}
    for index, (tenant, calls) in enumerate(sorted(calls_of.items(), key=lambda item: -item[1])):
        seen = run.tenants.get(tenant, {"ok": 0, "throttled": 0, "first": 0.0, "last": 0.0, "peakPerSecond": 0})
        span = seen["last"] - seen["first"]
        achieved = (seen["ok"] - 1) / span if span > 0 else 0.0
        label = f"{'largest' if index == 0 else 'tenant'} {tenant[-4:]}"
        print(
            f"| {label} | {calls:,} | {int(seen['ok']):,} | {int(seen['throttled']):,} | {achieved:.0f} | "
            f"{int(seen['peakPerSecond'])} | {rate:g} | {limit:g} |"
        )
        tenants[tenant] = {**seen, "calls": calls, "achieved": achieved}
    ratio = run.seconds / least
    print(
        f"sweep {run.seconds:.1f} s; least the budget allows {least:.1f} s ({max(calls_of.values()):,} calls / "
        f"{rate:g}/s): {ratio:.2f} x; 429s {throttled:,} of {keepalives:,} keepAlives "
        f"({100 * throttled / keepalives:.2f} %); retries {sum(w['retries'] for w in run.workers):,}; "
        f"calls not kept alive {failed:,}"
    )
    return {
        "seconds": run.seconds,
        "least": least,
        "sweepOverLeast": ratio,
        "throttled": throttled,
        "throttledShare": throttled / keepalives,
        "failed": failed,
        "workItems": len(run.workers),
        "shares": shares,
        "tenants": tenants,
        "statuses": run.statuses,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet.py", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5200, help="N, calls registered (default 5200)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants (default 4)")
    parser.add_argument("--largest", type=float, default=0.77, help="the largest tenant's part of the calls (0.77)")
    parser.add_argument("--rate", type=int, default=200, help="KEEPALIVE_TENANT_RATE, the budget (default 200)")
    parser.add_argument("--ranges", type=int, default=4, help="about how many work items (default 4)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds Graph takes per keepAlive (0.05)")
    parser.add_argument("--budget-only", action="store_true", help="skip the run with the budget ignored")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ignore-budget", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.ignore_budget)
    if args.calls < args.ranges * 2 or not 1 <= args.tenants <= 64 or not 0 < args.largest <= 1:
        parser.error("--calls must be at least twice --ranges, --tenants 1-64, --largest in (0, 1]")
    if not 1 <= args.rate <= 3000:
        parser.error("--rate is KEEPALIVE_TENANT_RATE: 1-3000")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")
    limit = math.floor(args.rate / HEADROOM)

    work = Path(tempfile.mkdtemp(prefix="callkeeper-fleet-"))
    print(f"callkeeper fleet: N={args.calls:,} (work files in {work})", file=sys.stderr)
    azurite, azurite_process = azurite_module.start(work)
    standins: Standins | None = None
    finished = False
    try:
        standins = Standins(args.latency, work / "standins.log", "--tenant-limit", str(limit))
        os.environ["REQUESTS_CA_BUNDLE"] = standins.values["REQUESTS_CA_BUNDLE"]
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
        suffix = uuid.uuid4().hex[:10]
        values = {
            **standins.values,
            "AzureWebJobsStorage": azurite.connection_string,
            "CALLS_TABLE_NAME": f"fleet{suffix}",
            "CLEANUP_QUEUE_NAME": f"fleet-cleanup-{suffix}",
            "KEEPALIVE_WORK_QUEUE_NAME": f"fleet-work-{suffix}",
            "GRAPH_DRY_RUN": "false",
            "KEEPALIVE_TENANT_RATE": str(args.rate),
            # about --ranges work items: the timer estimates N from one partition of 64, hence the margin
            "KEEPALIVE_FANOUT_THRESHOLD": str(math.ceil(args.calls / args.ranges * 1.15)),
        }
        tenants = tenant_ids(args.tenants)
        records = make_calls(args.calls, tenants, args.largest)
        calls_of = {tenant: sum(1 for r in records if r.tenant_id == tenant) for tenant in tenants}
        started = time.perf_counter()
        register(load_settings(values), records)
        print(f"  registered {args.calls:,} calls in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        del records

        runs: dict[str, Any] = {}
        modes = [("with the budget", False)] + ([] if args.budget_only else [("budget ignored", True)])
        print()
        print(
            f"callkeeper fleet: N={args.calls:,} calls, {args.tenants} tenants (largest {calls_of[tenants[0]]:,}), "
            f"KEEPALIVE_TENANT_RATE={args.rate}/s, Graph allows {limit}/s per tenant, "
            f"latency {args.latency * 1000:.0f} ms"
        )
        print(f"machine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        for name, ignore in modes:
            print(f"  sweeping {name} ...", file=sys.stderr, flush=True)
            run = sweep(values, standins, work, name, ignore_budget=ignore)
            runs[name] = report(run, calls_of, args.rate, limit)
        budgeted = runs["with the budget"]
        targets = {
            f"429s <= {TARGET_THROTTLED:.0%} of keepAlives": budgeted["throttledShare"] <= TARGET_THROTTLED,
            f"sweep <= {TARGET_SWEEP_OVER_LEAST} x the least the budget allows": budgeted["sweepOverLeast"]
            <= TARGET_SWEEP_OVER_LEAST,
        }
        print()
        print("targets (issue 12, the run with the budget):")
        for target, met in targets.items():
            print(f"  {'PASS' if met else 'MISS'}  {target}")
        if args.json is not None:
            numbers = {"calls": args.calls, "rate": args.rate, "limit": limit, "machine": machine(), "runs": runs}
            args.json.write_text(json.dumps({**numbers, "targets": targets}, indent=2) + "\n")
        finished = True
        return 1 if args.strict and not all(targets.values()) else 0
    finally:
        if standins is not None:
            standins.stop()
        azurite_module.stop(azurite_process)
        if finished:  # the logs stay for a run that failed
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
