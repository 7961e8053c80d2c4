"""The summary of one sweep, logged as one `keepalive tick` record (contract: "The keep-alive tick").

The contract's keys come first, in its order (`calls= succeeded= ended= failed= retries= seconds=`);
the others follow. `skipped` counts the rows the app could not read (`shared.rows`), which were left
in place; `not_sent` counts the calls a dry run did not send a keepAlive to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TickSummary:
    calls: int = 0
    succeeded: int = 0
    ended: int = 0
    failed: int = 0
    retries: int = 0
    skipped: int = 0  # rows the app cannot read: left in place (shared.rows)
    at_risk: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    complete: bool = True  # False when reading the table failed part way: the rest waits for the next tick
    unsaved: int = 0  # outcomes storage did not take (counted among the failures); a work message is retried
    not_sent: int = 0  # dry run: calls whose keepAlive was not sent

    def log_text(self) -> str:
        return (
            f"keepalive tick calls={self.calls} succeeded={self.succeeded} ended={self.ended} failed={self.failed} "
            f"retries={self.retries} seconds={self.seconds:.1f} atRisk={self.at_risk} skipped={self.skipped} "
            f"dryRun={str(self.dry_run).lower()} complete={str(self.complete).lower()} unsaved={self.unsaved} "
            f"notSent={self.not_sent}"
        )
