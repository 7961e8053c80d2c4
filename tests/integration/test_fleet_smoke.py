"""The fleet simulation runs end to end at a small N (the full run is `make fleet`): a smoke test, not a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_runs_with_and_without_the_budget_and_prints_its_tables(tmp_path: Path) -> None:
    results = tmp_path / "fleet.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fleet.py"),
            *("--calls", "240", "--rate", "60", "--ranges", "2", "--latency", "0.01", "--json", str(results)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "| tenant | calls | keepAlives 2xx | 429s | rate achieved /s | most in 1 s | budget /s |" in out
    assert "with the budget:" in out and "budget ignored:" in out and "targets (issue 12" in out
    numbers = json.loads(results.read_text())
    budgeted, ignored = numbers["runs"]["with the budget"], numbers["runs"]["budget ignored"]
    assert budgeted["workItems"] >= 2 and budgeted["workItems"] == ignored["workItems"]
    assert sum(budgeted["shares"]) <= 60  # the work items share the budget...
    assert ignored["shares"] == [60] * ignored["workItems"]  # ...unless it is ignored: each takes all of it
    for run in (budgeted, ignored):  # every call was swept: Graph saw each tenant's calls answered
        assert sum(int(t["ok"]) for t in run["tenants"].values()) == 240
    assert budgeted["failed"] == 0
