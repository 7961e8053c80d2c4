"""The KQL of callkeeper: one home (infra/queries/*.kql), three users.

The alert rules and the workbook (infra/core/monitor/operations.bicep) load the files with
loadTextContent; docs/queries.kql is built from the same files by this module:

    .venv/bin/python -m tests.infra.kql      # rewrites docs/queries.kql

and tests/infra/test_kql.py fails when docs/queries.kql is not what this builds.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "infra" / "queries"
DOCS_KQL = ROOT / "docs" / "queries.kql"

# The order and headings of docs/queries.kql; every file of infra/queries appears once.
SECTIONS = [  # numbers 1-7 as docs/observability.md cites them
    ("Ticks over time (host copy, parsed from the text)", "tick-summary.kql"),
    ("No tick lately (alert: the timer has gone silent)", "tick-silence.kql"),
    ("Failures per tenant (host copy)", "failures-by-tenant.kql"),
    ("Calls failing tick after tick", "consecutive-failures.kql"),
    ("Calls at risk now (alert: any row)", "at-risk.kql"),
    ("callEnded events per hour", "ended-calls.kql"),
    ("One call's story", "call-story.kql"),
    ("Ticks over time (the distro's custom dimensions)", "tick-summary-distro.kql"),
    ("Failures per tenant (the distro's custom dimensions)", "failures-by-tenant-distro.kql"),
    ("Calls at risk now (the distro's custom dimensions)", "at-risk-distro.kql"),
    ("Ticks with failures above 5 % of their calls (alert)", "failure-rate.kql"),
    ("429s per tenant", "throttling-by-tenant.kql"),
    ("Messages in a poison queue (alert; Log Analytics workspace, StorageQueueLogs)", "poison-messages.kql"),
]

HEADER = """\
// callkeeper: Application Insights (Log Analytics) queries. See docs/observability.md.
//
// GENERATED from infra/queries/*.kql, the one home of the KQL, which the alert rules and the workbook
// (infra/core/monitor/operations.bicep) load too. Edit those files, then run
// `.venv/bin/python -m tests.infra.kql` to rebuild this one (tests/infra/test_kql.py checks it).
//
// Run the queries on the Application Insights resource (the poison-queue query on the Log Analytics
// workspace) and pick the time range in the portal. Paste one query at a time.
// Two copies of each record reach `traces`: the host's (text only, customDimensions.Category set) and the
// distro's (custom dimensions: event, callId, tenantId, ...). The text queries keep the host's copy where
// a sum would otherwise count a record twice.
"""


def query_files() -> list[Path]:
    return sorted(QUERIES.glob("*.kql"))


def build_docs() -> str:
    parts = [HEADER]
    for number, (title, name) in enumerate(SECTIONS, start=1):
        text = (QUERIES / name).read_text(encoding="utf-8").rstrip("\n")
        parts.append(f"\n// --- {number}. {title} (infra/queries/{name}) ---\n{text}\n")
    return "".join(parts)


def main() -> int:
    DOCS_KQL.write_text(build_docs(), encoding="utf-8")
    print(f"wrote {DOCS_KQL.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
