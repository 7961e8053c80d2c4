"""Hand-written fakes and recorders shared by the tests and the benchmarks (nothing here mocks an SDK)."""

from __future__ import annotations

import threading
from collections import Counter


class RequestCounter:
    """Storage requests sent, by `"<service> <kind>"` (`table read`, `table write`, `table batch`, `queue write`).

    Pass it as `Context(settings, on_storage_request=counter)`: the storage clients tell it of every attempt.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __call__(self, service: str, kind: str) -> None:
        with self._lock:
            self._counts[f"{service} {kind}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @staticmethod
    def writes(counts: dict[str, int]) -> int:
        """Requests of a snapshot (or a difference of two) that change something: writes and transactions."""
        return sum(n for kind, n in counts.items() if not kind.endswith(" read"))

    @staticmethod
    def since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {kind: n - before.get(kind, 0) for kind, n in after.items() if n - before.get(kind, 0)}
