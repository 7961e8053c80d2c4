"""callkeeper benchmark: one tick of the app side by side with the floor and a naive sequential sweep.

    make bench                                                   # N = 10,000 calls, 3 paired runs
    .venv/bin/python benchmarks/bench.py --calls 300 --runs 1 --latency 0.01 --sample 20   # a smoke run

What runs where:
- Azurite (tests/azurite.py) holds the calls table, in its own process.
- The Graph and identity stand-ins run in their own process (`python -m tests.standins --control`),
  answering every keepAlive after `--latency` seconds (50 ms by default), so this process's CPU is the
  app's alone. The stand-in reports the most requests it had in flight at once.
- This process registers N calls (entity group transactions), spread over `--tenants` tenants.

What is measured, in each of `--runs` paired runs (the order within a pair alternates):
- floor: a bare client keeping KEEPALIVE_CONCURRENCY (64) keepAlives in flight over one pooled session,
  with tokens fetched beforehand: only the keepAlives, no table, no retries, no bookkeeping.
- tick: `shared.keepalive.run_tick` on a fresh context (cold token cache), fan-out off (threshold above N),
  KEEPALIVE_CONCURRENCY 64, KEEPALIVE_TENANT_RATE at its most (3,000 per tenant: the pacing is in the
  path but, over 4 tenants, not binding), reading the table page by page and writing results back.
- sequential: the app's own GraphClient and CallStore.update, one call after the other, on `--sample`
  calls, extrapolated to N.
Once: a raw client with twice the concurrency (does the stand-in have headroom at 64?) and the tick's
peak traced memory (tracemalloc) at N/4 and at N.

Prints a table, the ratios and the targets (set for N = 10,000: a MISS at a smaller N is expected there);
`--strict` exits 1 when a target is missed, `--json PATH` writes the numbers. The work folder (a temporary
folder: Azurite's log, the stand-ins' CA and log) is removed after a run that finished; a failed run keeps it.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from shared.context import Context  # noqa: E402
from shared.keepalive import run_tick  # noqa: E402
from shared.models import CallRecord, utc_now  # noqa: E402
from shared.settings import Settings, load_settings  # noqa: E402
from tests import azurite as azurite_module  # noqa: E402
from tests.fakes import RequestCounter  # noqa: E402

DEFAULT_CALLS = 10_000  # N the targets are set for
TARGET_TICK_OVER_FLOOR = 1.3
TARGET_SEQUENTIAL_OVER_TICK = 30.0
TARGET_MEMORY_GROWTH_MB = 25.0
TENANT_RATE = "3000"  # KEEPALIVE_TENANT_RATE at its most: the per-tenant pacing is in the path


# --- the stand-ins, in a process of their own ---------------------------------------------------
class Standins:
    """`python -m tests.standins --control`: its app settings, and `stats`/`reset` over its stdin."""

    def __init__(self, latency: float, log: Path, *options: str) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.standins", "--latency", str(latency), "--control", "--dir", str(log.parent)]
            + list(options),  # the CA files go in the benchmark's own folder, removed with it
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("}"):
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the stand-ins did not start; see {log}")
            lines.append(line)
        self.values: dict[str, str] = json.loads("".join(lines))
        self.process.stdout.readline()  # "serving; Ctrl-C stops"

    def command(self, name: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def cpu_seconds(self) -> float:
        """CPU time the stand-ins' process has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # end of input: the stand-ins stop
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# --- setup ----------------------------------------------------------------------------------------
@dataclass
class Bench:
    calls: int
    tenants: list[str]
    latency: float
    concurrency: int
    azurite: azurite_module.Azurite
    standins: Standins
    call_ids: list[tuple[str, str]] = field(default_factory=list)  # (callId, tenant)

    def settings(self, table: str, **overrides: str) -> Settings:
        values = {
            **self.standins.values,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "CALLS_TABLE_NAME": table,
            "CLEANUP_QUEUE_NAME": f"bench-cleanup-{table.lower()}",
            "GRAPH_DRY_RUN": "false",
            "KEEPALIVE_CONCURRENCY": str(self.concurrency),
            "KEEPALIVE_FANOUT_THRESHOLD": str(10 * self.calls + 1),  # fan-out off
            "KEEPALIVE_TENANT_RATE": TENANT_RATE,
            "KEEPALIVE_REQUEST_TIMEOUT": "30",
            **overrides,
        }
        return load_settings(values)


def register(settings: Settings, records: Sequence[CallRecord]) -> float:
    """Store `records` with entity group transactions of 100 per partition, 8 at a time; returns seconds."""
    started = time.perf_counter()
    table = Context(settings).storage.table()
    by_partition: dict[str, list[CallRecord]] = {}
    for record in records:
        by_partition.setdefault(record.keys[0], []).append(record)
    batches = [rs[i : i + 100] for rs in by_partition.values() for i in range(0, len(rs), 100)]

    def create(batch: list[CallRecord]) -> None:
        table.submit_transaction([("create", record.to_entity()) for record in batch])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, batches))
    return time.perf_counter() - started


def make_records(count: int, tenants: Sequence[str], prefix: str) -> list[CallRecord]:
    now = utc_now()
    return [
        CallRecord(
            call_id=f"{prefix}-{i:07d}-{uuid.uuid4().hex[:8]}",
            tenant_id=tenants[i % len(tenants)],
            registered_at=now,
            registration_id=str(uuid.uuid4()),
            metadata={"bot": "bench"},
        )
        for i in range(count)
    ]


# --- the three ways to sweep ----------------------------------------------------------------------
@dataclass
class Measure:
    seconds: float
    max_in_flight: int = 0
    graph_requests: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    cpu: float = 0.0  # this process's CPU seconds
    standin_cpu: float = 0.0  # the stand-ins' CPU seconds


@contextmanager
def cpu_of(bench: Bench, measure: list[Measure]) -> Iterator[None]:
    """Adds this process's and the stand-ins' CPU seconds to the Measure appended inside the block."""
    own, theirs = time.process_time(), bench.standins.cpu_seconds()
    yield
    measure[-1].cpu = time.process_time() - own
    measure[-1].standin_cpu = bench.standins.cpu_seconds() - theirs


def fetch_tokens(values: dict[str, str], tenants: Sequence[str], session: requests.Session) -> dict[str, str]:
    tokens = {}
    for tenant in tenants:
        answer = session.post(
            f"{values['GRAPH_AUTHORITY_HOST']}/{tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": values["GRAPH_CLIENT_ID"],
                "client_secret": values["GRAPH_CLIENT_SECRET"],
                "scope": f"{values['GRAPH_BASE_URL']}/.default",
            },
            timeout=30,
        )
        answer.raise_for_status()
        tokens[tenant] = answer.json()["access_token"]
    return tokens


def raw_client(bench: Bench, concurrency: int) -> Measure:
    """The floor: `concurrency` threads over one pooled session, sending only the keepAlives."""
    bench.standins.command("reset")
    session = requests.Session()
    session.mount("https://", HTTPAdapter(pool_maxsize=concurrency, max_retries=0))
    tokens = fetch_tokens(bench.standins.values, bench.tenants, session)
    root = bench.standins.values["GRAPH_BASE_URL"]
    work = iter(bench.call_ids)
    lock = threading.Lock()
    failures = 0

    def worker() -> None:
        nonlocal failures
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            call_id, tenant = item
            headers = {"Authorization": f"Bearer {tokens[tenant]}", "client-request-id": str(uuid.uuid4())}
            url = f"{root}/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"
            with session.post(url, headers=headers, data=b"", timeout=30) as answer:
                answer.content  # noqa: B018 - read the body, as the app does
                if answer.status_code >= 300:
                    with lock:
                        failures += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    session.close()
    stats = bench.standins.command("stats")
    if failures:
        raise RuntimeError(f"the raw client saw {failures} failures")
    return Measure(seconds, stats["maxInFlight"], stats["graphRequests"])


def app_tick(bench: Bench, settings: Settings) -> Measure:
    """One real tick of the app on a fresh context: cold token cache, table and queue already there."""
    bench.standins.command("reset")
    counter = RequestCounter()
    ctx = Context(settings, on_storage_request=counter)
    ctx.storage.table()
    ctx.storage.queue(settings.cleanup_queue_name)
    before = counter.snapshot()
    started = time.perf_counter()
    summary = run_tick(ctx)
    seconds = time.perf_counter() - started
    storage = RequestCounter.since(before, counter.snapshot())
    stats = bench.standins.command("stats")
    if summary.succeeded != bench.calls or not summary.complete:
        raise RuntimeError(f"the tick did not keep every call alive: {summary.log_text()}")
    tokens = stats.get("tokenRequests", {})
    ctx.session().close()
    return Measure(seconds, stats["maxInFlight"], stats["graphRequests"], {"storage": storage, "tokens": tokens})


def sequential(bench: Bench, settings: Settings, sample: int) -> Measure:
    """The naive sweep: keepAlive, then a conditional update, one call after the other; extrapolated to N."""
    bench.standins.command("reset")
    ctx = Context(settings)
    graph, store = ctx.graph(), ctx.calls
    records: list[CallRecord] = []
    for page in store.pages(page_size=min(1000, sample)):
        records.extend(page)
        if len(records) >= sample:
            break
    records = records[:sample]
    for record in records[:1]:  # the token first: the sample measures the sweep, not the identity provider
        assert record.tenant_id is not None
        ctx.tokens().token(record.tenant_id)
    started = time.perf_counter()
    for record in records:
        assert record.tenant_id is not None
        result = graph.keep_alive(record.call_id, record.tenant_id)
        now = ctx.now()
        store.update(
            record,
            lambda r, result=result, now=now: r.with_result(now=now, status=result.status, error=None, ok=result.ok),
        )
    seconds = time.perf_counter() - started
    ctx.session().close()
    return Measure(seconds * bench.calls / len(records), extra={"sample": len(records), "sampleSeconds": seconds})


def traced_peak(settings: Settings) -> float:
    """Peak traced memory of one tick above what was allocated before it, in MB."""
    ctx = Context(settings)
    ctx.storage.table()
    ctx.storage.queue(settings.cleanup_queue_name)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        summary = run_tick(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        ctx.session().close()
    if not summary.complete:
        raise RuntimeError(f"the memory tick did not complete: {summary.log_text()}")
    return (peak - base) / 1e6


# --- report ---------------------------------------------------------------------------------------
@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"  {name} ...", end="", flush=True, file=sys.stderr)
    yield
    print(f" {time.perf_counter() - started:.1f} s", flush=True, file=sys.stderr)


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="N, calls registered (default 10000)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs; medians are reported (default 3)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds Graph takes per keepAlive (0.05)")
    parser.add_argument("--concurrency", type=int, default=64, help="KEEPALIVE_CONCURRENCY (default 64)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the calls belong to (default 4)")
    parser.add_argument("--sample", type=int, default=200, help="calls of the sequential sweep (default 200)")
    parser.add_argument("--no-memory", action="store_true", help="skip the traced-memory ticks")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.calls < 4 or args.runs < 1 or args.sample < 1:
        parser.error("--calls must be at least 4, --runs and --sample at least 1")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")

    work = Path(tempfile.mkdtemp(prefix="callkeeper-bench-"))
    print(f"callkeeper benchmark: N={args.calls:,} (work files in {work})", file=sys.stderr)
    azurite, azurite_process = azurite_module.start(work)
    standins: Standins | None = None
    finished = False
    try:
        standins = Standins(args.latency, work / "standins.log")
        os.environ["REQUESTS_CA_BUNDLE"] = standins.values["REQUESTS_CA_BUNDLE"]  # this process trusts the stand-in CA
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
        tenants = [str(uuid.UUID(int=0xA11C0000 + i)) for i in range(args.tenants)]
        bench = Bench(args.calls, tenants, args.latency, args.concurrency, azurite, standins)
        suffix = uuid.uuid4().hex[:12]
        full, quarter = bench.settings(f"bench{suffix}"), bench.settings(f"benchq{suffix}")
        with step(f"registering {args.calls:,} calls"):
            records = make_records(args.calls, tenants, "call")
            register(full, records)
            bench.call_ids = [(r.call_id, r.tenant_id or tenants[0]) for r in records]
            del records
        if not args.no_memory:
            with step(f"registering {args.calls // 4:,} calls (memory at N/4)"):
                register(quarter, make_records(args.calls // 4, tenants, "quarter"))

        floors: list[Measure] = []
        ticks: list[Measure] = []
        sequentials: list[Measure] = []
        for run in range(args.runs):
            order = ("floor", "tick") if run % 2 == 0 else ("tick", "floor")
            for what in order:
                with step(f"run {run + 1}: {what}"):
                    if what == "floor":
                        with cpu_of(bench, floors):
                            floors.append(raw_client(bench, args.concurrency))
                    else:
                        with cpu_of(bench, ticks):
                            ticks.append(app_tick(bench, full))
            with step(f"run {run + 1}: sequential on {args.sample} calls"):
                sequentials.append(sequential(bench, full, args.sample))
        with step(f"raw client at {2 * args.concurrency} in flight"):
            double = raw_client(bench, 2 * args.concurrency)
        memory: tuple[float, float] | None = None
        if not args.no_memory:
            with step("tick at N/4 under tracemalloc"):
                low = traced_peak(quarter)
            with step("tick at N under tracemalloc"):
                high = traced_peak(full)
            memory = (low, high)
        results = report(args, bench, floors, ticks, sequentials, double, memory)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        finished = True
        return 1 if args.strict and not all(results["targets"].values()) else 0
    finally:
        if standins is not None:
            standins.stop()
        azurite_module.stop(azurite_process)
        if finished:  # the logs stay for a run that failed
            shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    bench: Bench,
    floors: list[Measure],
    ticks: list[Measure],
    sequentials: list[Measure],
    double: Measure,
    memory: tuple[float, float] | None,
) -> dict[str, Any]:
    n = bench.calls
    ideal = -(-n // args.concurrency) * args.latency
    tick_over_floor = [t.seconds / f.seconds for t, f in zip(ticks, floors, strict=True)]
    sequential_over_tick = [s.seconds / t.seconds for s, t in zip(sequentials, ticks, strict=True)]
    median = statistics.median
    storage = ticks[-1].extra["storage"]
    reads = sum(v for k, v in storage.items() if k.endswith(" read"))
    batches = storage.get("table batch", 0)
    writes = RequestCounter.writes(storage)
    write_budget = n / 50 + reads
    tokens = ticks[-1].extra["tokens"]

    print()
    print(
        f"callkeeper benchmark: N={n:,} calls, {len(bench.tenants)} tenants, KEEPALIVE_CONCURRENCY={args.concurrency}, "
        f"Graph latency {args.latency * 1000:.0f} ms, {args.runs} paired run(s)"
    )
    print(f"machine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print()
    print("| run | floor s | tick s | sequential s (extrapolated) | tick/floor | sequential/tick |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, (f, t, s) in enumerate(zip(floors, ticks, sequentials, strict=True)):
        print(
            f"| {i + 1} | {f.seconds:.2f} | {t.seconds:.2f} | {s.seconds:.1f} | "
            f"{tick_over_floor[i]:.2f} | {sequential_over_tick[i]:.1f} |"
        )
    print(
        f"| median | {median(f.seconds for f in floors):.2f} | {median(t.seconds for t in ticks):.2f} | "
        f"{median(s.seconds for s in sequentials):.1f} | {median(tick_over_floor):.2f} | "
        f"{median(sequential_over_tick):.1f} |"
    )
    print()
    print(f"ideal (ceil(N/{args.concurrency}) x latency): {ideal:.2f} s")
    print(
        f"stand-in: most in flight {max(f.max_in_flight for f in floors)} (floor), "
        f"{max(t.max_in_flight for t in ticks)} (tick); raw client at {2 * args.concurrency} in flight: "
        f"{double.seconds:.2f} s, most in flight {double.max_in_flight}"
    )
    print(
        f"CPU seconds (median): floor {median(f.cpu for f in floors):.2f} here + "
        f"{median(f.standin_cpu for f in floors):.2f} in the stand-in; tick {median(t.cpu for t in ticks):.2f} here + "
        f"{median(t.standin_cpu for t in ticks):.2f} in the stand-in (the stand-in is busy "
        f"{100 * median(f.standin_cpu / f.seconds for f in floors):.0f}% of one core during the floor)"
    )
    print(
        f"sequential sample: {sequentials[-1].extra['sample']} calls in {sequentials[-1].extra['sampleSeconds']:.2f} s"
    )
    print(f"token requests per tick (per tenant): {json.dumps(tokens, sort_keys=True)}")
    print(
        f"storage requests per tick: {json.dumps(storage, sort_keys=True)}; writes {writes} "
        f"({batches} transactions), pages read {reads}; budget N/50 + pages = {write_budget:.0f}"
    )
    if memory is not None:
        print(
            f"peak traced memory of a tick: N/4 {memory[0]:.1f} MB, N {memory[1]:.1f} MB, "
            f"growth {memory[1] - memory[0]:.1f} MB; process max RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
    targets = {
        f"tick <= {TARGET_TICK_OVER_FLOOR} x floor": median(tick_over_floor) <= TARGET_TICK_OVER_FLOOR,
        f"sequential >= {TARGET_SEQUENTIAL_OVER_TICK:.0f} x tick": median(sequential_over_tick)
        >= TARGET_SEQUENTIAL_OVER_TICK,
        "one token request per tenant": len(tokens) == len(bench.tenants) and set(tokens.values()) == {1},
        "storage writes <= N/50 + pages read": writes <= write_budget,
    }
    if memory is not None:
        targets[f"memory growth N/4 -> N <= {TARGET_MEMORY_GROWTH_MB:.0f} MB"] = (
            memory[1] - memory[0] <= TARGET_MEMORY_GROWTH_MB
        )
    print()
    print(f"targets (set for N = {DEFAULT_CALLS:,} calls; see docs/performance.md):")
    for name, met in targets.items():
        print(f"  {'PASS' if met else 'MISS'}  {name}")
    if n < DEFAULT_CALLS:
        print(
            f"  (N = {n:,} is below {DEFAULT_CALLS:,}: fixed costs such as thread start-up, the first token and the "
            "first page weigh more in a short run, so a MISS here is expected and says nothing about the targets)"
        )
    return {
        "calls": n,
        "tenants": len(bench.tenants),
        "concurrency": args.concurrency,
        "latency": args.latency,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(),
        "floor": [f.seconds for f in floors],
        "floorCpu": [f.cpu for f in floors],
        "tickCpu": [t.cpu for t in ticks],
        "standinCpu": [f.standin_cpu for f in floors],
        "tick": [t.seconds for t in ticks],
        "sequential": [s.seconds for s in sequentials],
        "tickOverFloor": median(tick_over_floor),
        "sequentialOverTick": median(sequential_over_tick),
        "ideal": ideal,
        "doubleConcurrency": double.seconds,
        "maxInFlight": max(t.max_in_flight for t in ticks),
        "tokenRequests": tokens,
        "storage": storage,
        "memoryMB": list(memory) if memory else None,
        "targets": targets,
    }


if __name__ == "__main__":
    sys.exit(main())
