"""The per-instance rate limiter: a fake clock whose sleep advances it, and threads for the 429 pause."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests

from shared.graph import GraphClient
from shared.ratelimit import BURST_SECONDS, RateLimiter, burst
from shared.retry import BRAKE_INTERVAL, MIN_FACTOR, RECOVERY_SECONDS
from shared.settings import load_settings
from tests.fakes import FakeTime

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"


def limiter(rate: float, time: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=time.clock, sleep=time.sleep)


def test_a_tenant_may_start_with_10_ms_of_its_rate_at_once_then_waits():
    time = FakeTime(1000.0)
    gate = limiter(500, time)
    assert burst(500) == 5 and burst(50) == 1  # at least one request
    assert [gate.acquire(TENANT) for _ in range(5)] == [0.0] * 5
    assert gate.acquire(TENANT) == pytest.approx(0.002)


def test_each_tenant_is_paced_at_the_rate_on_its_own():
    time = FakeTime(1000.0)
    gate = limiter(20, time)
    started = time.clock()
    for _ in range(101):
        gate.acquire(TENANT)
    assert time.clock() - started == pytest.approx(5.0)  # one at once, then 100 at 20 per second
    assert all(wait == pytest.approx(0.05) for wait in time.slept)
    other_started = time.clock()
    gate.acquire(OTHER)
    assert time.clock() == other_started  # another tenant has a bucket of its own


def test_idle_time_refills_the_bucket_up_to_its_burst_only():
    time = FakeTime(1000.0)
    gate = limiter(10, time)
    gate.acquire(TENANT)
    time.advance(60)
    assert gate.acquire(TENANT) == 0.0
    assert gate.acquire(TENANT) == pytest.approx(0.1)


def test_a_sweep_paces_each_tenant_at_its_share_and_sweeps_at_once_add_theirs():
    time = FakeTime(1000.0)
    gate = limiter(40, time)  # the whole KEEPALIVE_TENANT_RATE outside a sweep
    assert gate.rate == 40
    with gate.pacing(10):
        assert gate.rate == 10
        gate.acquire(TENANT)
        assert gate.acquire(TENANT) == pytest.approx(1 / 10)
        with gate.pacing(5.5):
            assert gate.rate == pytest.approx(15.5)
            time.advance(1.0)
            gate.acquire(TENANT)
            assert gate.acquire(TENANT) == pytest.approx(1 / 15.5)
        assert gate.rate == 10
    assert gate.rate == 40


def test_the_tenants_of_a_finished_sweep_are_forgotten_unless_braked():
    time = FakeTime(1000.0)
    gate = limiter(100, time)
    with gate.pacing(100):
        gate.acquire(TENANT)
        gate.acquire(OTHER)
        with gate.pause(OTHER, 0.0):
            pass
    assert set(gate._tenants) == {OTHER}
    time.advance(10 * RECOVERY_SECONDS)
    with gate.pacing(100):
        pass
    assert gate._tenants == {}


def test_a_429_halves_the_tenant_rate_once_per_episode_and_leaves_others_alone():
    time = FakeTime(1000.0)
    gate = limiter(100, time)
    for _ in range(5):  # five calls in flight answer 429 at once: one halving
        with gate.pause(TENANT, 2.0):
            pass
    assert gate.factor(TENANT) == 0.5
    assert gate.factor(OTHER) == 1.0
    time.advance(BRAKE_INTERVAL)
    with gate.pause(TENANT, 2.0):
        pass
    assert gate.factor(TENANT) == 0.25


def test_a_braked_tenant_goes_at_half_its_share():
    time = FakeTime(1000.0)
    gate = limiter(1000, time)
    with gate.pacing(20):
        with gate.pause(TENANT, 0.0):
            pass
        started = time.clock()
        for _ in range(11):
            gate.acquire(TENANT)
        assert time.clock() - started == pytest.approx(10 / 10)  # half of 20 per second
        other_started = time.clock()
        gate.acquire(OTHER)
        assert time.clock() == other_started


def test_the_rate_recovers_step_by_step_without_429():
    time = FakeTime(1000.0)
    gate = limiter(100, time)
    for _ in range(3):
        with gate.pause(TENANT, 0.0):
            pass
        time.advance(BRAKE_INTERVAL)
    assert gate.factor(TENANT) == 0.125
    time.advance(RECOVERY_SECONDS)
    assert gate.factor(TENANT) == 0.25
    time.advance(2 * RECOVERY_SECONDS)
    assert gate.factor(TENANT) == 1.0


def test_the_rate_never_drops_below_the_floor():
    time = FakeTime(1000.0)
    gate = limiter(64, time)
    for _ in range(20):
        with gate.pause(TENANT, 0.0):
            pass
        time.advance(BRAKE_INTERVAL)
    assert gate.factor(TENANT) == MIN_FACTOR


def most_in_any_second(times: list[float]) -> int:
    """The most requests in any one-second window (a sliding window, as Graph counts)."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_the_budget_holds_under_a_429_with_several_instances():
    """Four instances at a quarter of 400/s each, one of them throttled part way: in any second, never more than
    400 x (1 + 0.01) (a bucket holds 10 ms) + 4 (one request each)."""
    time = FakeTime(1000.0)
    instances = [limiter(400, time) for _ in range(4)]
    shares = [instance.pacing(100) for instance in instances]
    for share in shares:
        share.__enter__()
    sent: list[list[float]] = [[] for _ in instances]
    next_at = [time.clock()] * len(instances)  # each instance's next free moment
    for _ in range(2000):  # the instance that is due goes next: all four run "at once" on one clock
        index = min(range(len(instances)), key=lambda i: next_at[i])
        time.now = max(time.now, next_at[index])
        before = time.clock()
        time.slept.clear()
        instances[index].acquire(TENANT)
        sent[index].append(time.clock())
        next_at[index] = time.clock()
        time.now = before  # the other instances' clocks did not move while this one slept
        if index == 0 and len(sent[0]) == 200:  # Graph throttles instance 0: a 429 with Retry-After 2
            with instances[0].pause(TENANT, 2.0):
                next_at[0] = time.clock() + 2.0
    for share in shares:
        share.__exit__(None, None, None)
    everything = [at for times in sent for at in times]
    assert most_in_any_second(everything) <= 400 * (1 + BURST_SECONDS) + 4
    after = sent[0][200:]  # what the throttled instance sent once its Retry-After was over
    span = after[-1] - after[0]
    assert (len(after) - 1) / span == pytest.approx(50, rel=0.05)  # and the throttled instance goes at half its share
    assert instances[1].factor(TENANT) == 1.0  # the others are not slowed: they did not get the 429


def test_a_slot_booked_before_a_429_is_booked_again_after_the_pause():
    time = FakeTime(1000.0)
    gate = limiter(10, time)
    with gate.pacing(10):
        gate.acquire(TENANT)  # the bucket is empty now: the next slot is 0.1 s away
        original_sleep = gate._sleep
        paused = threading.Event()

        def sleep_through_a_429(seconds: float) -> None:  # while this worker waits for its slot, a 429 arrives
            gate._sleep = original_sleep
            original_sleep(seconds)
            if not paused.is_set():
                paused.set()
                with gate.pause(TENANT, 3.0):
                    time.advance(3.0)

        gate._sleep = sleep_through_a_429
        started = time.clock()
        gate.acquire(TENANT)
        # 0.1 s for the first booking, 3 s of pause, then a fresh slot at half the rate: the bucket's debt
        # was forgiven by the pause, so the slot is the next one free, not one after the old debt
        assert time.clock() - started == pytest.approx(3.1)


def test_new_requests_of_the_tenant_wait_while_a_throttled_call_waits_out_its_retry_after():
    gate = RateLimiter(1000)
    pausing, release, acquired = threading.Event(), threading.Event(), threading.Event()

    def throttled_call() -> None:
        with gate.pause(TENANT, 30.0):
            pausing.set()
            release.wait(5)

    def other_call(tenant: str, done: threading.Event) -> None:
        gate.acquire(tenant)
        done.set()

    throttled = threading.Thread(target=throttled_call)
    throttled.start()
    assert pausing.wait(5)
    assert gate.paused(TENANT) and not gate.paused(OTHER)
    other_tenant = threading.Event()
    threading.Thread(target=other_call, args=(OTHER, other_tenant)).start()
    assert other_tenant.wait(5)  # another tenant is not held back
    waiter = threading.Thread(target=other_call, args=(TENANT, acquired))
    waiter.start()
    assert not acquired.wait(0.3)  # held while the throttled call waits
    release.set()
    assert acquired.wait(5)  # and let go as soon as it is done
    throttled.join(5)
    waiter.join(5)
    assert not gate.paused(TENANT)


def test_a_pause_never_holds_requests_past_its_seconds():
    gate = RateLimiter(1000)
    release = threading.Event()

    def stuck() -> None:
        with gate.pause(TENANT, 0.2):
            release.wait(5)

    thread = threading.Thread(target=stuck)
    thread.start()
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (gate.acquire(TENANT), done.set())).start()
        assert done.wait(3)  # the safety deadline: 0.2 s of real time
    finally:
        release.set()
        thread.join(5)


def test_the_rate_must_be_positive():
    with pytest.raises(ValueError):
        RateLimiter(0)


# --- GraphClient with a gate ----------------------------------------------------------------------
class RecordingGate:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float | None]] = []

    def acquire(self, tenant_id: str) -> float:
        self.events.append(("acquire", tenant_id, None))
        return 0.0

    def pause(self, tenant_id: str, seconds: float):
        gate = self

        class Block:
            def __enter__(self) -> None:
                gate.events.append(("pause", tenant_id, seconds))

            def __exit__(self, *exc: object) -> None:
                gate.events.append(("resume", tenant_id, seconds))

        return Block()


class ScriptedSession(requests.Session):
    """Answers each POST from a script of (status, headers)."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__()
        self.answers = answers

    def post(self, url, **kwargs):  # type: ignore[override]
        status, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = b""
        return response


class StaticTokens:
    def token(self, tenant_id: str) -> str:
        return "token"

    def invalidate(self, tenant_id: str, token: str | None = None) -> None:
        pass


def test_graph_client_asks_the_gate_before_each_request_and_pauses_the_tenant_on_429():
    gate = RecordingGate()
    order: list[tuple[str, float]] = []
    session = ScriptedSession([(429, {"Retry-After": "7"}), (503, {"Retry-After": "2"}), (200, {})])

    def sleep(seconds: float) -> None:
        order.append(("sleep", seconds))
        gate.events.append(("sleep", TENANT, seconds))

    client = GraphClient(
        load_settings({"GRAPH_BASE_URL": "https://graph.example"}),
        session,
        StaticTokens(),
        sleep=sleep,
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        gate=gate,
    )
    result = client.keep_alive("call", TENANT)
    assert result.ok and result.retries == 2
    assert gate.events == [
        ("acquire", TENANT, None),
        ("pause", TENANT, 7.0),  # 429: the tenant waits with this call
        ("sleep", TENANT, 7.0),
        ("resume", TENANT, 7.0),
        ("acquire", TENANT, None),
        ("sleep", TENANT, 2.0),  # 503: only this call waits
        ("acquire", TENANT, None),
    ]
