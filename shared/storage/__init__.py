"""Storage: the app's tables and queues behind one face (the private modules beside this one hold the code)."""

from shared.storage._calls import CallStore, NotSaved
from shared.storage._clients import RequestHook, Storage, storage_errors
from shared.storage._ends import RecentEnds, ended_entity, purge_budget, purge_quietly
from shared.storage._faults import redact_sas_text
from shared.storage._queues import CallEventsQueue, CleanupQueue
from shared.storage._rows import SkippedRows
from shared.storage._tablewire import MAX_OPERATIONS

__all__ = [
    "MAX_OPERATIONS",
    "CallEventsQueue",
    "CallStore",
    "CleanupQueue",
    "NotSaved",
    "RecentEnds",
    "RequestHook",
    "SkippedRows",
    "Storage",
    "ended_entity",
    "purge_budget",
    "purge_quietly",
    "redact_sas_text",
    "storage_errors",
]
