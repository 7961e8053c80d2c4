"""The benchmark script runs end to end at a small N (the full run is `make bench`): a smoke test, not a timing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    results = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            *("--calls", "300", "--runs", "1", "--latency", "0.01", "--sample", "20", "--json", str(results)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "| run | floor s | tick s | sequential s (extrapolated) | tick/floor | sequential/tick |" in out
    assert "| median |" in out and "targets (set for N = 10,000 calls" in out
    assert "a MISS here is expected" in out  # at N = 300 fixed costs weigh more: the label says so
    [work] = re.findall(r"work files in (\S+)\)", completed.stderr)
    assert not Path(work).exists()  # removed after a run that finished
    assert "token requests per tick" in out and "storage requests per tick" in out and "peak traced memory" in out
    numbers = json.loads(results.read_text())
    assert numbers["calls"] == 300 and len(numbers["tick"]) == 1
    assert set(numbers["tokenRequests"].values()) == {1}  # one token request per tenant, even at this size
    assert numbers["storage"]["table read"] == 1 and numbers["maxInFlight"] >= 1


def test_the_call_events_benchmark_runs_and_prints_its_numbers() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "events.py"), "--ends", "5", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert re.search(r"without a topic +3 \(queue write 1, table write 2", out)
    assert re.search(r"with a topic +4 \(queue write 2, table write 2", out)  # one queue write more per end
    assert "topic requests per event 1, app storage requests per event 0" in out
    assert "fast failures:  5 x 0 s + 4 x (30 + 2) s = 128 s" in out
