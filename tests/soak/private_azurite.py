"""A private Azurite that can be stopped and started again on the same ports, keeping its data.

The session's Azurite (`tests/azurite.py`) keeps its data in memory and lives for the whole run; a
storage outage needs one of its own. This one persists to a folder, so a stop is an outage and a start
is the recovery: the same connection string, the same tables and queues.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests import azurite as azurite_module


class PrivateAzurite:
    """Azurite on fixed free ports with on-disk persistence; `stop()` is an outage, `start()` the recovery."""

    def __init__(self, location: Path) -> None:
        self.location = location
        location.mkdir(parents=True, exist_ok=True)
        blob, queue, table = azurite_module._free_ports(3)
        self.instance = azurite_module.Azurite(blob, queue, table)
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def connection_string(self) -> str:
        return self.instance.connection_string

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, deadline_seconds: float = 60.0) -> None:
        if self.running:
            return
        executable = azurite_module.ROOT / "node_modules" / ".bin" / "azurite"
        if not executable.exists():
            raise RuntimeError("Azurite is not installed: run `npm ci` (make test does it)")
        ports = (self.instance.blob_port, self.instance.queue_port, self.instance.table_port)
        self._starts += 1
        log_path = self.location / f"azurite-{self._starts}.log"
        with open(log_path, "wb") as log:
            self._process = subprocess.Popen(
                [
                    str(executable), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
                    "--location", str(self.location),
                    "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2]),
                ],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + deadline_seconds
        while not all(azurite_module._listening(port) for port in ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"private Azurite did not start; see {log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Azurite saves its data on the way out), then wait until the ports refuse connections."""
        if self._process is None:
            return
        azurite_module.stop(self._process)
        self._process = None
        ports = (self.instance.blob_port, self.instance.queue_port, self.instance.table_port)
        deadline = time.monotonic() + 10
        while any(azurite_module._listening(port) for port in ports) and time.monotonic() < deadline:
            time.sleep(0.05)
