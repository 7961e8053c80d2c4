"""A time-compressed soak: a simulated day of ticks on an injected clock, against Azurite and the stand-ins.

Each simulated tick (10 minutes apart on a `FakeClock`):

1. the bot registers new calls (`POST /api/calls`) and removes some (`DELETE`), some before the sweep and
   some while it runs (the API keeps serving during a tick);
2. Graph ends some calls (the stand-in answers 404 for them from then on);
3. transient faults are scripted on the Graph stand-in for ~`fault_rate` of the calls (429 with
   Retry-After in seconds or as an HTTP date, 503, a connection reset, an answer slower than
   KEEPALIVE_REQUEST_TIMEOUT), each followed by success, and a few calls get a storm that outlasts the
   retries (Graph unreachable for that call in that tick);
4. `run_tick(ctx)` sweeps, unless storage is down: for `outage_ticks` ticks the private Azurite is stopped;
5. the stand-in's requests, the cleanup queue and the table are read back and checked.

What is checked, all the time and at the end:

- no live call goes 45 simulated minutes without a successful keepAlive while Graph is reachable for it
  (measured from the stand-in's 2xx answers; a storm, Graph unreachable for the call, restarts its clock);
- every call Graph ended produced events, all with one eventId; no other call produced an event;
- no call is lost (a registered call missing from the table) and none is resurrected (a removed call back);
- memory stays flat: the tracemalloc peak of each tick stays near that of the first ticks.

Every decision comes from one seeded `random.Random`, so a run can be repeated.
"""

from __future__ import annotations

import gc
import json
import statistics
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import quote

from shared import context as context_module
from shared.context import Context
from shared.keepalive import run_tick
from shared.settings import load_settings
from tests.azurite import PrivateAzurite, drain_events, stored_call_ids
from tests.fakes import START, FakeClock, RecordingSleep
from tests.host import FunctionHost
from tests.standins.graph import GraphStandin
from tests.standins.server import RESET, Reply

TICK = timedelta(minutes=10)
LIMIT = timedelta(minutes=45)
MiB = 1024 * 1024
BOT_THREADS = 8


@dataclass(frozen=True)
class SoakConfig:
    ticks: int = 144
    calls: int = 1000  # the population the bot keeps registered (ends are replaced by new calls)
    seed: int = 20261127
    end_rate: float = 1 / 40  # per live call per tick: the call ends (Graph 404, or the bot removes it)
    bot_share: float = 0.2  # of the ends: removed by the bot (DELETE) rather than ended by Graph
    fault_rate: float = 0.05  # per call per tick: one transient fault before success
    storm_rate: float = 0.004  # per call per tick: faults on every attempt (Graph unreachable for it)
    outage_start: int | None = None  # first tick with storage down (default: a third into the day)
    outage_ticks: int = 3
    request_timeout: float = 0.3
    concurrency: int = 64
    memory_tolerance: float = 1.25  # a later tick's peak (and what stays after it) may be this many times
    memory_slack: int = 2 * MiB  # that of the early ticks, plus this much

    @property
    def outage(self) -> range:
        start = self.ticks // 3 if self.outage_start is None else self.outage_start
        return range(start, start + self.outage_ticks)


@dataclass
class Call:
    call_id: str
    joined_tick: int
    registered_at: datetime | None = None  # when POST answered 201
    last_ok: datetime | None = None  # last 2xx from the stand-in (or registration, or the end of a storm)
    ends_at: int | None = None  # the tick at which it ends
    bot_removes: bool = False  # ends by the bot's DELETE (else Graph answers 404)
    ended: bool = False  # Graph answers 404 from now on
    removed: bool = False  # the bot's DELETE answered 204
    event_ids: set[str] = field(default_factory=set)
    events: int = 0

    @property
    def registered(self) -> bool:
        return self.registered_at is not None

    @property
    def live(self) -> bool:
        """Registered, not ended by Graph, not removed by the bot: must be kept alive and kept in the table."""
        return self.registered and not self.ended and not self.removed


@dataclass
class SoakReport:
    config: SoakConfig
    registered: int = 0
    ended: int = 0
    bot_removed: int = 0
    keepalives: int = 0
    successes: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    storms: int = 0
    events: int = 0
    settled: int = 0  # calls ended or removed, seen gone from the table, and dropped from the model
    longest_gap: timedelta = timedelta(0)
    longest_gap_call: str = ""
    api_answers: Counter[str] = field(default_factory=Counter)
    tick_seconds: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)  # tracemalloc peak of each tick, bytes
    currents: list[int] = field(default_factory=list)  # tracemalloc current after each tick, bytes
    population: list[int] = field(default_factory=list)  # calls in the table after each tick
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def violate(self, text: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(text)

    def _early(self, values: list[int]) -> float:
        """The median of the first ticks after the first two (which fill caches, pools and the token cache)."""
        early = values[2 : 2 + max(3, len(values) // 6)] or values
        return statistics.median(early) if early else 0.0

    @property
    def memory_flat(self) -> bool:
        """No tick's tracemalloc peak, nor the memory left after it, grew much past that of the early ticks."""
        config = self.config
        for values in (self.peaks, self.currents):
            limit = self._early(values) * config.memory_tolerance + config.memory_slack
            if any(value > limit for value in values[2:]):
                return False
        return True

    def text(self) -> str:
        c = self.config
        quarter = max(1, len(self.peaks) // 4)
        first, last = self.peaks[2 : 2 + quarter] or [0], self.peaks[-quarter:] or [0]
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items()))
        outage = f"ticks {c.outage.start}-{c.outage.stop - 1}" if c.outage_ticks else "none"
        population = f"min {min(self.population, default=0)}, max {max(self.population, default=0)}"
        first_current = self.currents[2] / MiB if len(self.currents) > 2 else 0.0
        last_current = self.currents[-1] / MiB if self.currents else 0.0
        median_tick = statistics.median(self.tick_seconds) if self.tick_seconds else 0.0
        lines = [
            f"soak: {c.ticks} ticks of 10 simulated minutes, ~{c.calls} calls live (seed {c.seed})",
            f"  calls: {self.registered} registered, {self.ended} ended by Graph, {self.bot_removed} removed by the"
            f" bot, {self.settled} settled (seen gone); in the table per tick: {population}",
            f"  keepAlives: {self.keepalives} requests, {self.successes} succeeded; transient faults"
            f" {sum(self.faults.values())} ({faults}); storms {self.storms}; storage outage: {outage}",
            f"  API: {', '.join(f'{k} {v}' for k, v in sorted(self.api_answers.items()))}",
            f"  longest gap between successful keepAlives of a live call: {self.longest_gap.total_seconds() / 60:.1f}"
            f" simulated minutes ({self.longest_gap_call}; limit 45)",
            f"  events: {self.events} messages for {self.ended} ended calls",
            f"  memory (tracemalloc): peak per tick first quarter {max(first) / MiB:.1f} MiB, last quarter"
            f" {max(last) / MiB:.1f} MiB, all {max(self.peaks, default=0) / MiB:.1f} MiB; current after tick"
            f" {first_current:.1f} -> {last_current:.1f} MiB; flat: {'yes' if self.memory_flat else 'NO'}",
            f"  time: {self.seconds:.1f} s; a tick (sweep and the bot's requests meanwhile): max"
            f" {max(self.tick_seconds, default=0):.2f} s, median {median_tick:.2f} s",
            f"  violations: {len(self.violations)}",
            *(f"    {violation}" for violation in self.violations[:30]),
        ]
        return "\n".join(lines)


class Soak:
    """One simulated day. `graph` is the Graph stand-in, `environ` the stand-ins' app settings."""

    def __init__(
        self,
        config: SoakConfig,
        *,
        graph: GraphStandin,
        environ: dict[str, str],
        storage: PrivateAzurite,
        host: FunctionHost,
        table_suffix: str,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.graph = graph
        self.storage = storage
        self.host = host
        self.rng = Random(config.seed)
        self.clock = FakeClock()
        self.sleep = RecordingSleep(keep=False)  # counts, not a list: memory stays flat
        self.progress = progress
        settings = load_settings(
            {
                **environ,  # the stand-ins' Graph settings; real (not dry-run) ticks on the private Azurite
                "GRAPH_DRY_RUN": "false",
                "AzureWebJobsStorage": storage.connection_string,
                "CALLS_TABLE_NAME": f"soak{table_suffix}",
                "CLEANUP_QUEUE_NAME": f"soak-cleanup-{table_suffix}",
                "KEEPALIVE_WORK_QUEUE_NAME": f"soak-work-{table_suffix}",
                "KEEPALIVE_REQUEST_TIMEOUT": str(config.request_timeout),
                "KEEPALIVE_CONCURRENCY": str(config.concurrency),
                "KEEPALIVE_FANOUT_THRESHOLD": str(10 * config.calls),
            }
        )
        problems = settings.tick_problems + settings.storage_problems
        if problems:
            raise ValueError(f"soak settings: {problems}")
        # The instance's RateLimiter (shared/ratelimit.py) brakes a tenant on 429 and lets it recover over
        # real seconds. Here a day is simulated: the limiter gets the simulated clock and sleep, so ticks are
        # 10 minutes apart for it too (a brake has long recovered by the next tick, as in production) and a
        # tick itself takes no simulated time.
        self.ctx = Context(
            settings,
            now=self.clock,
            sleep=self.sleep,
            pace_clock=lambda: (self.clock() - START).total_seconds(),
            pace_sleep=self.sleep,
        )
        self.calls: dict[str, Call] = {}
        self.report = SoakReport(config)
        self._lock = threading.Lock()
        self._next_id = 0

    # --- the day ---------------------------------------------------------------------------------
    def run(self) -> SoakReport:
        started = time.monotonic()
        previous = context_module.install(self.ctx)
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        try:
            for _ in range(self.config.calls):
                self._new_call(0)
            for tick in range(self.config.ticks):
                self._tick(tick)
                if self.progress is not None and (tick % 12 == 11 or tick == self.config.ticks - 1):
                    self.progress(
                        f"tick {tick + 1}/{self.config.ticks}: {self.report.population[-1]} calls,"
                        f" {len(self.report.violations)} violations, {time.monotonic() - started:.0f} s"
                    )
            self._final_checks()
        finally:
            if not tracing:
                tracemalloc.stop()
            context_module.install(previous)
            self.ctx.session().close()
            if not self.storage.running:
                self.storage.start()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _tick(self, tick: int) -> None:
        config = self.config
        now = self.clock.advance(minutes=10) if tick else self.clock()
        down = tick in config.outage
        if down and self.storage.running:
            self.storage.stop()
        elif not down and not self.storage.running:
            self.storage.start()
        self.graph.reset()

        before, during = self._plan_bot(tick)
        self._run_bot(before, tick)
        if tick < config.ticks - 3:  # the last ticks end nothing new, so every end is settled by the end of the day
            self._end_calls(tick)
        storms = self._script_graph(now)

        tracemalloc.reset_peak()
        tick_started = time.monotonic()
        bot = threading.Thread(target=self._run_bot, args=(during, tick), name="soak-bot")
        bot.start()
        summary = run_tick(self.ctx)
        bot.join()
        self.report.tick_seconds.append(time.monotonic() - tick_started)
        _, peak = tracemalloc.get_traced_memory()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        self.report.peaks.append(peak)
        self.report.currents.append(current)

        if down and (summary.complete or summary.calls):
            self.report.violate(f"tick {tick}: storage was down but the sweep read {summary.calls} calls")
        self._read_graph(now, storms)
        if not down:
            self._read_events()
            self._read_table(tick)
        self._check_gaps(tick, now)

    # --- the bot ---------------------------------------------------------------------------------
    def _new_call(self, tick: int) -> Call:
        self._next_id += 1
        call_id = (
            f"soak-{self._next_id:05d}-{self.rng.choice(['a', 'b', 'c'])}:{self.rng.randrange(1 << 30):x}@thread.v2"
        )
        call = Call(call_id, tick)
        self.calls[call_id] = call
        return call

    def _plan_bot(self, tick: int) -> tuple[list[tuple[str, Call]], list[tuple[str, Call]]]:
        """This tick's POSTs and DELETEs, split into those before the sweep and those during it."""
        operations: list[tuple[str, Call]] = []
        for call in list(self.calls.values()):
            if not call.registered and not call.removed and call.ends_at is None:
                operations.append(("POST", call))  # new, or its registration answered 503: try again
            elif call.bot_removes and call.ends_at is not None and call.ends_at <= tick and not call.removed:
                operations.append(("DELETE", call))  # due, or its removal answered 503: try again
        self.rng.shuffle(operations)
        half = len(operations) // 2
        return operations[:half], operations[half:]

    def _run_bot(self, operations: list[tuple[str, Call]], tick: int) -> None:
        """The bot's requests, a few at a time (a bot serves many calls at once)."""
        with ThreadPoolExecutor(BOT_THREADS, thread_name_prefix="soak-bot") as pool:
            for future in [pool.submit(self._bot_request, method, call, tick) for method, call in operations]:
                future.result()

    def _bot_request(self, method: str, call: Call, tick: int) -> None:
        if method == "POST":
            response = self.host.request("POST", "/api/calls", body={"callId": call.call_id, "metadata": {"soak": "1"}})
        else:
            response = self.host.request("DELETE", "/api/calls/" + quote(call.call_id, safe=""))
        status = response.status_code
        with self._lock:
            self.report.api_answers[f"{method} {status}"] += 1
            if status == 503:  # storage down: the bot tries again next tick
                return
            if (method, status) == ("POST", 201):
                call.registered_at = call.last_ok = self.clock()
                self.report.registered += 1
            elif (method, status) == ("DELETE", 204):
                call.removed = True
                self.report.bot_removed += 1
            else:
                self.report.violate(f"tick {tick}: {method} {call.call_id} answered {status}")

    def _end_calls(self, tick: int) -> None:
        """Some live calls end now: by Graph (404 from now on) or, next tick, by the bot; new calls replace them."""
        for call in [c for c in self.calls.values() if c.live and c.ends_at is None]:
            if self.rng.random() < self.config.end_rate:
                call.ends_at = tick if not (bot := self.rng.random() < self.config.bot_share) else tick + 1
                call.bot_removes = bot
                call.ended = not bot
                if not bot:
                    self.report.ended += 1
                self._new_call(tick + 1)

    # --- Graph -----------------------------------------------------------------------------------
    def _fault(self, now: datetime) -> tuple[str, Reply]:
        kind = self.rng.choice(["429", "429-date", "503", "reset", "timeout"])
        if kind == "429":
            return kind, Reply(429, {"Retry-After": str(self.rng.randint(1, 120))})
        if kind == "429-date":
            return kind, Reply(429, {"Retry-After": format_datetime(now + timedelta(seconds=30), usegmt=True)})
        if kind == "503":
            return kind, Reply(503)
        if kind == "reset":
            return kind, RESET
        # Slower than KEEPALIVE_REQUEST_TIMEOUT: the client gives up first. (Not a 2xx, so the stand-in's record of
        # what it answered, too late, is never taken for a success.)
        return kind, Reply(503, delay=self.config.request_timeout + 0.3)

    def _script_graph(self, now: datetime) -> set[str]:
        """Script this tick's answers; returns the calls Graph is unreachable for (a storm on every attempt)."""
        storms: set[str] = set()
        for call in self.calls.values():
            if not call.registered or call.removed:
                continue
            roll = self.rng.random()
            replies: list[Reply] = []
            if call.ended:
                if roll < self.config.fault_rate:
                    kind, reply = self._fault(now)
                    self.report.faults[kind] += 1
                    replies.append(reply)
                replies.append(Reply(404))
            elif roll < self.config.storm_rate:
                for _ in range(4):  # the first request and all three retries
                    kind, reply = self._fault(now)
                    replies.append(reply)
                storms.add(call.call_id)
                self.report.storms += 1
            elif roll < self.config.storm_rate + self.config.fault_rate:
                kind, reply = self._fault(now)
                self.report.faults[kind] += 1
                replies.append(reply)
            if replies:
                self.graph.script(call.call_id, *replies)
        return storms

    def _read_graph(self, now: datetime, storms: set[str]) -> None:
        requests = list(self.graph.requests)
        self.report.keepalives += len(requests)
        ok = {r.call_id for r in requests if r.status is not None and 200 <= r.status < 300}
        self.report.successes += sum(1 for r in requests if r.status is not None and 200 <= r.status < 300)
        for call_id in ok:
            call = self.calls.get(call_id or "")
            if call is None:
                self.report.violate(f"keepAlive for a call not registered (or removed before this tick): {call_id}")
                continue
            if call.last_ok is not None and call.live:
                gap = now - call.last_ok
                if gap > self.report.longest_gap:
                    self.report.longest_gap, self.report.longest_gap_call = gap, call_id or ""
            call.last_ok = now
        for call_id in storms:  # Graph was unreachable for it: its 45 minutes start again from now
            call = self.calls[call_id]
            if call.call_id in ok:
                self.report.violate(f"{call_id}: a storm on every attempt still succeeded")
            call.last_ok = now

    # --- storage ---------------------------------------------------------------------------------
    def _read_events(self) -> None:
        for event in drain_events(self.ctx, delete=False, hide_for=7 * 24 * 3600):  # read once, hidden for good
            self.report.events += 1
            call = self.calls.get(event.get("callId", ""))
            if call is None or not call.ended:  # a settled call is gone from the table: nothing can report it again
                self.report.violate(f"event for a call that did not end (or ended before): {json.dumps(event)[:200]}")
                continue
            call.events += 1
            call.event_ids.add(event["eventId"])
            if len(call.event_ids) > 1:
                self.report.violate(f"{call.call_id}: events under {len(call.event_ids)} eventIds")

    def _read_table(self, tick: int) -> None:
        """Check the table against the model, then settle the calls whose removal it shows.

        A settled call (ended with its event and gone from the table, or removed by the bot) leaves the
        model, so the soak's own memory stays flat; seen in the table again, it is a resurrection.
        """
        ids = stored_call_ids(self.ctx)
        self.report.population.append(len(ids))
        stored = set(ids)
        if len(stored) != len(ids):
            self.report.violate(f"tick {tick}: a callId is stored twice")
        for call_id in stored:
            call = self.calls.get(call_id)
            if call is None:
                known = call_id.startswith("soak-") and int(call_id[5:10]) <= self._next_id
                self.report.violate(f"tick {tick}: {'resurrected' if known else 'unknown call'}: {call_id}")
            elif not call.registered:
                self.report.violate(f"tick {tick}: stored before its registration answered 201: {call_id}")
        for call in list(self.calls.values()):
            if call.call_id in stored:
                continue
            if call.live:
                self.report.violate(f"tick {tick}: lost: {call.call_id}")
            elif call.ended:
                if not call.events:
                    self.report.violate(f"tick {tick}: {call.call_id} removed without an event")
                self._settle(call)
            elif call.removed:
                self._settle(call)

    def _settle(self, call: Call) -> None:
        if call.ended and len(call.event_ids) != 1:
            self.report.violate(f"{call.call_id}: events under {len(call.event_ids)} eventIds")
        del self.calls[call.call_id]
        self.report.settled += 1

    def _check_gaps(self, tick: int, now: datetime) -> None:
        for call in self.calls.values():
            if call.live and call.last_ok is not None and now - call.last_ok >= LIMIT:
                self.report.violate(
                    f"tick {tick}: {call.call_id} went {(now - call.last_ok).total_seconds() / 60:.0f} minutes"
                    " without a successful keepAlive"
                )

    def _final_checks(self) -> None:
        for call in self.calls.values():
            if call.ended:
                self.report.violate(f"{call.call_id} ended but was not removed with an event by the end of the day")
            elif call.events:
                self.report.violate(f"{call.call_id}: an event for a call Graph did not end")
        if not self.report.memory_flat:
            self.report.violate("memory grew: a tick's tracemalloc peak went past the early ticks' by too much")


@contextmanager
def private_storage(location: Path) -> Iterator[PrivateAzurite]:
    storage = PrivateAzurite(location)
    storage.start()
    try:
        yield storage
    finally:
        storage.stop()


def summarize(report: SoakReport) -> dict[str, Any]:
    """The report's numbers, for a machine (scripts/soak.py --json)."""
    return {
        "ticks": report.config.ticks,
        "calls": report.config.calls,
        "seed": report.config.seed,
        "registered": report.registered,
        "ended": report.ended,
        "botRemoved": report.bot_removed,
        "keepAlives": report.keepalives,
        "faults": dict(report.faults),
        "storms": report.storms,
        "events": report.events,
        "longestGapMinutes": report.longest_gap.total_seconds() / 60,
        "peakMiB": [round(peak / MiB, 2) for peak in report.peaks],
        "violations": report.violations,
        "seconds": round(report.seconds, 1),
    }
