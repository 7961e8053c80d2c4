"""Storage: the app's tables and queues on Azure, behind small Protocols (the engine's side of the seam).

    _base.py       the seam: Calls, EventQueue, EndMemory, WorkQueue (and Stores, which bundles them);
                   PAGE_SIZE and BATCH_SIZE, the sizes Table Storage sets
    _calls.py      CallsTable: the calls table's decisions (conditional writes, pages, counts, the API's pages)
                   over its rows (`Rows`, the seam under it)
    _table.py      AzureRows: those rows on Azure (the SDK and the wire path, behind the error boundary)
    _rows.py       rows read tolerantly: one the app cannot read is skipped, logged and counted
    _tablewire.py  the sweep's page reads and transactions on the table client's pipeline; the write check
    _ends.py       RecentEnds: the 24-hour memory of ended calls, and its purge
    _queues.py     CleanupQueue, CallEventsQueue, KeepaliveWorkQueue, PoisonQueue
    _clients.py    Storage: the table and queue clients from AzureWebJobsStorage; storage_errors, the boundary
    _faults.py     a storage fault sorted: outage, refused identity (role named), TLS, bad setting

Nothing outside this package imports its private modules (tests/unit/test_layers.py holds that); tests/fakes.py
implements the same Protocols in memory, and tests/contract/ runs one suite against both.
"""

from shared.storage._base import (
    BATCH_SIZE,
    PAGE_SIZE,
    Calls,
    Change,
    EndMemory,
    EventQueue,
    NotSaved,
    Purged,
    Stores,
    WorkQueue,
)
from shared.storage._calls import CallsTable, Rows
from shared.storage._clients import RequestHook, Storage
from shared.storage._ends import ENDED_MEMORY, RecentEnds, ended_entity
from shared.storage._faults import redact_sas_text
from shared.storage._queues import CallEventsQueue, CleanupQueue, KeepaliveWorkQueue, PoisonQueue
from shared.storage._rows import SkippedRows
from shared.storage._table import AzureRows

__all__ = [
    "AzureRows",
    "BATCH_SIZE",
    "ENDED_MEMORY",
    "PAGE_SIZE",
    "CallEventsQueue",
    "Calls",
    "CallsTable",
    "Change",
    "CleanupQueue",
    "EndMemory",
    "EventQueue",
    "KeepaliveWorkQueue",
    "NotSaved",
    "PoisonQueue",
    "Purged",
    "RecentEnds",
    "Rows",
    "RequestHook",
    "SkippedRows",
    "Storage",
    "Stores",
    "WorkQueue",
    "ended_entity",
    "redact_sas_text",
]
