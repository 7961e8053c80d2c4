"""The soak, small enough for every test run: a simulated 4 hours (24 ticks) over ~100 calls.

`make soak` runs the full day (144 ticks over ~1,000 calls) through `scripts/soak.py`; see
`tests/soak/simulation.py` for what a tick does and what is checked.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from tests.host import FunctionHost
from tests.soak.simulation import LIMIT, Soak, SoakConfig, private_storage
from tests.standins.fixtures import Standins

pytestmark = pytest.mark.integration

SMALL = SoakConfig(ticks=24, calls=60, seed=8, end_rate=1 / 10, outage_start=8, outage_ticks=3, concurrency=16)


def test_a_simulated_day_loses_nothing_resurrects_nothing_and_keeps_every_call_alive(
    standins: Standins, host: FunctionHost, tmp_path: Path
) -> None:
    with private_storage(tmp_path / "azurite") as storage:
        soak = Soak(
            SMALL,
            graph=standins.graph,
            environ=standins.environ(),
            storage=storage,
            host=host,
            table_suffix=uuid.uuid4().hex,
        )
        report = soak.run()
    print(report.text())

    assert report.violations == []
    assert timedelta(0) < report.longest_gap < LIMIT
    assert report.longest_gap >= timedelta(minutes=10 * (SMALL.outage_ticks + 1))  # the outage was felt
    assert report.ended >= 10 and report.bot_removed >= 3 and report.registered >= SMALL.calls + 20
    assert report.events >= report.ended
    assert sum(report.faults.values()) >= 50 and len(report.faults) == 5 and report.storms >= 1
    assert report.api_answers["POST 503"] + report.api_answers["DELETE 503"] >= 1  # the bot felt the outage too
    assert report.memory_flat
    assert max(report.tick_seconds) < 10
