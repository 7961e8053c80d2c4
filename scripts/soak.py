"""callkeeper soak (`make soak`): a simulated day of keep-alive ticks over ~1,000 calls, on an injected clock.

    make soak                                          # 144 ticks (a day of 10-minute ticks) over ~1,000 calls
    make soak ARGS="--ticks 24 --calls 100"            # a shorter run
    .venv/bin/python scripts/soak.py --seed 7 --json soak.json

It starts its own Azurite (on disk, so it can be stopped for the storage outage and started again) and the
Graph and identity stand-ins (in this process, so each call's answers can be scripted), then runs
`tests/soak/simulation.py`: calls join and end at random, ~5 % transient faults (429 with Retry-After, 503,
connection resets, answers slower than KEEPALIVE_REQUEST_TIMEOUT), a few storms and a storage outage of three
ticks. It prints what happened and whether every guarantee held (see docs/reliability.md), and exits 1 when
one did not. The small version runs in the test suite: tests/soak/test_soak.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.host import FunctionHost  # noqa: E402
from tests.soak.simulation import Soak, SoakConfig, private_storage, summarize  # noqa: E402
from tests.standins.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT  # noqa: E402
from tests.standins.graph import GraphStandin  # noqa: E402
from tests.standins.identity import IdentityStandin  # noqa: E402
from tests.standins.server import StandinServer  # noqa: E402
from tests.standins.tls import make_tls  # noqa: E402
from tests.standins.tokens import TokenRegistry  # noqa: E402


@contextmanager
def standins(location: Path) -> Iterator[tuple[GraphStandin, dict[str, str]]]:
    """The Graph and identity stand-ins on local HTTPS, with `requests` trusting their CA."""
    tls = make_tls(location)
    os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca_bundle)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    tokens = TokenRegistry()
    identity = IdentityStandin(tokens=tokens, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    graph = GraphStandin(tokens=tokens)
    identity_server = StandinServer(identity, tls.server_context).serve_in_thread()
    try:
        graph_server = StandinServer(graph, tls.server_context).serve_in_thread()
        try:
            identity.configure(resource=graph_server.url)
            yield (
                graph,
                {
                    "GRAPH_TENANT_ID": TENANT,
                    "GRAPH_CLIENT_ID": CLIENT_ID,
                    "GRAPH_CLIENT_SECRET": CLIENT_SECRET,
                    "GRAPH_BASE_URL": graph_server.url,
                    "GRAPH_AUTHORITY_HOST": identity_server.url,
                },
            )
        finally:
            graph_server.stop()
    finally:
        identity_server.stop()


def main(argv: list[str] | None = None) -> int:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=defaults.ticks, help="ticks of 10 simulated minutes (144)")
    parser.add_argument("--calls", type=int, default=defaults.calls, help="calls kept registered (1000)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate, help="transient faults (0.05)")
    parser.add_argument("--outage-ticks", type=int, default=defaults.outage_ticks, help="storage outage (3)")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="KEEPALIVE_CONCURRENCY")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--log-level", default="CRITICAL", help="the app's log level on stderr (CRITICAL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    config = SoakConfig(
        ticks=args.ticks,
        calls=args.calls,
        seed=args.seed,
        fault_rate=args.fault_rate,
        outage_ticks=args.outage_ticks,
        concurrency=args.concurrency,
    )
    import function_app

    with tempfile.TemporaryDirectory(prefix="callkeeper-soak-") as folder:
        with standins(Path(folder) / "tls") as (graph, environ), private_storage(Path(folder) / "azurite") as storage:
            soak = Soak(
                config,
                graph=graph,
                environ=environ,
                storage=storage,
                host=FunctionHost(function_app.app),
                table_suffix=uuid.uuid4().hex,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
            report = soak.run()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(summarize(report), indent=2) + "\n", encoding="utf-8")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
