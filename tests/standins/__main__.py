"""Run the stand-ins by hand, to watch the app work end to end without Azure.

    python -m tests.standins [--graph-port 8443] [--identity-port 8444] [--ended CALL_ID ...] [--latency S]
                             [--tenant-limit N] [--topic [--topic-port 8445]] [--control]

Prints the app settings that point the app at them (for `local.settings.json` `Values`, or the
environment of `python -m shared tick`), then serves until Ctrl-C. Every keepAlive is answered 200,
except the calls named with `--ended`, which answer 404 (so the tick emits `callEnded` for them), and
those over `--tenant-limit` keepAlives per tenant in a sliding second, which answer 429 with Retry-After.
`--topic` also serves an Event Grid topic stand-in (key auth, CloudEvents batches) and prints the
CALL_EVENTS_TOPIC_ENDPOINT and CALL_EVENTS_TOPIC_KEY that point the app at it; each event that arrives is
logged, so with `func start` the call events can be watched without Azure.

`--control` (for a parent process, e.g. benchmarks/bench.py): commands on stdin, one a line, answered
with one JSON line on stdout: `stats` (keepAlive requests, most in flight at once, token requests per
tenant, and per tenant the keepAlives answered, the 429s and the most in one second) and `reset` (forget
those, keep the latency and the limit); end of input stops the stand-ins.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from .graph import GraphStandin
from .identity import IdentityStandin
from .server import Reply, StandinServer
from .tls import make_tls
from .tokens import TokenRegistry
from .topic import TopicStandin

HELP = """Local HTTPS stand-ins for Microsoft Graph and Entra ID, to watch the app work end to end without Azure.

It prints the settings that point the app at them (for the Values of local.settings.json, or the environment of
`callkeeper tick`), then serves until Ctrl-C. Every keepAlive is answered 200, except those of the calls named
with --ended (404: the tick emits a callEnded event for them) and those over --tenant-limit per tenant in a
sliding second (429 with Retry-After). The stand-ins' certificates are signed by a CA of their own, written to
--dir as standin-ca.pem: REQUESTS_CA_BUNDLE must name it."""
CLIENT_ID = "00000000-0000-0000-0000-0000000c0de1"
TENANT = "00000000-0000-0000-0000-00000000a11c"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.standins",
        description=HELP,
        epilog="README.md, section 'Local walkthrough', uses them step by step.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--graph-port", type=int, default=0, help="port of the Graph stand-in (default: any free)")
    parser.add_argument("--identity-port", type=int, default=0, help="port of the Entra ID stand-in")
    parser.add_argument(
        "--ended", action="append", default=[], metavar="CALL_ID", help="answer 404 for this call (repeatable)"
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="S", help="seconds every keepAlive takes")
    parser.add_argument(
        "--tenant-limit", type=float, default=None, metavar="N", help="keepAlives per tenant per second, then 429"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the CA bundle (default: a temporary folder, removed at exit)",
    )
    parser.add_argument("--topic", action="store_true", help="also serve an Event Grid topic stand-in")
    parser.add_argument("--topic-port", type=int, default=0, help="port of the topic stand-in (default: any free)")
    parser.add_argument(
        "--control",
        action="store_true",
        help="for a parent process: take commands on stdin, one a line, each answered with one JSON line on stdout: "
        "stats (requests, the most in flight, token requests and 429s per tenant) or reset (forget them); the end "
        "of stdin stops the stand-ins",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    temporary = None if args.dir else Path(tempfile.mkdtemp(prefix="callkeeper-standins-"))
    directory = args.dir or temporary
    tls = make_tls(directory)
    tokens = TokenRegistry()
    secret = "local-standin-secret"
    identity = IdentityStandin(tokens=tokens, client_id=CLIENT_ID, client_secret=secret)
    graph = GraphStandin(tokens=tokens)
    graph_server = StandinServer(graph, tls.server_context, port=args.graph_port).serve_in_thread()
    identity_server = StandinServer(identity, tls.server_context, port=args.identity_port).serve_in_thread()
    identity.configure(resource=graph_server.url)
    topic_server = None
    if args.topic:
        topic = TopicStandin(key="local-standin-topic-key")
        topic.on_event = lambda event: logging.info(
            "topic received %s id=%s subject=%s callId=%s",
            event.get_type(),
            event.get_id(),
            event.get_subject(),
            (event.get_data() or {}).get("callId"),
        )
        topic_server = StandinServer(topic, tls.server_context, port=args.topic_port).serve_in_thread()

    def prepare() -> None:
        graph.latency = args.latency
        graph.tenant_limit = args.tenant_limit
        for call_id in args.ended:
            graph.script(call_id, *[Reply(404)] * 1000)

    prepare()

    values = {
        "GRAPH_BASE_URL": graph_server.url,
        "GRAPH_AUTHORITY_HOST": identity_server.url,
        "GRAPH_TENANT_ID": TENANT,
        "GRAPH_CLIENT_ID": CLIENT_ID,
        "GRAPH_CLIENT_SECRET": secret,
        "REQUESTS_CA_BUNDLE": str(tls.ca_bundle),
    }
    if topic_server is not None:
        values["CALL_EVENTS_TOPIC_ENDPOINT"] = f"{topic_server.url}/api/events"
        values["CALL_EVENTS_TOPIC_KEY"] = "local-standin-topic-key"
    print(json.dumps(values, indent=2), flush=True)
    print("serving; Ctrl-C stops", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def control() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                graph.reset()
                identity.reset()
                identity.configure(resource=graph_server.url)
                prepare()
                print(json.dumps({"reset": True}), flush=True)
            elif command == "stats":
                statuses = Counter(request.status for request in list(graph.requests))
                stats = {
                    "graphRequests": len(graph.requests),
                    "maxInFlight": graph.max_in_flight,
                    "statuses": {str(status): count for status, count in statuses.items()},
                    "tokenRequests": dict(identity.token_requests),
                    "tenants": graph.tenant_stats(),
                }
                print(json.dumps(stats), flush=True)
            elif command:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
        done.set()

    if args.control:
        threading.Thread(target=control, name="standins-control", daemon=True).start()
    last = 0
    while not done.wait(1.0):
        count = len(graph.requests)
        if count != last:
            logging.info("graph keepAlive requests=%d token requests=%s", count, dict(identity.token_requests))
            last = count
    graph_server.stop()
    identity_server.stop()
    if topic_server is not None:
        topic_server.stop()
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
