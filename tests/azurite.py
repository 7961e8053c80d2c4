"""Real Azurite for the tests: the session's (started once on free ports, stopped at the end), a private one a
test may stop and start (`PrivateAzurite`), and what the app wrote read back with the SDK (`drain_events`, ...)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.reference import validate_event

if TYPE_CHECKING:
    from shared.context import Context

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's public key


@dataclass(frozen=True)
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1:{}/" + ACCOUNT
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={base.format(self.blob_port)};QueueEndpoint={base.format(self.queue_port)};"
            f"TableEndpoint={base.format(self.table_port)};"
        )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(location: Path, deadline_seconds: float = 60.0) -> tuple[Azurite, subprocess.Popen[bytes]]:
    executable = ROOT / "node_modules" / ".bin" / "azurite"
    if not executable.exists():
        raise RuntimeError("Azurite is not installed: run `npm ci` (make test does it)")
    blob, queue, table = _free_ports(3)
    with open(location / "azurite.log", "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                str(executable), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--inMemoryPersistence",
                "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table),
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    azurite = Azurite(blob, queue, table)
    deadline = time.monotonic() + deadline_seconds
    while not all(_listening(port) for port in (blob, queue, table)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"Azurite did not start; see {location / 'azurite.log'}")
        time.sleep(0.05)
    return azurite, process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def node_available() -> bool:
    return shutil.which("node") is not None


# --- a private Azurite ------------------------------------------------------------------------------
# The session's Azurite keeps its data in memory and lives for the whole run; a storage outage needs one of
# its own. This one persists to a folder, so a stop is an outage and a start is the recovery: the same
# connection string, the same tables and queues.
class PrivateAzurite:
    """Azurite on fixed free ports with on-disk persistence; `stop()` is an outage, `start()` the recovery."""

    def __init__(self, location: Path) -> None:
        self.location = location
        location.mkdir(parents=True, exist_ok=True)
        blob, queue, table = _free_ports(3)
        self.instance = Azurite(blob, queue, table)
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
        executable = ROOT / "node_modules" / ".bin" / "azurite"
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
        while not all(_listening(port) for port in ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"private Azurite did not start; see {log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Azurite saves its data on the way out), then wait until the ports refuse connections."""
        if self._process is None:
            return
        stop(self._process)
        self._process = None
        ports = (self.instance.blob_port, self.instance.queue_port, self.instance.table_port)
        deadline = time.monotonic() + 10
        while any(_listening(port) for port in ports) and time.monotonic() < deadline:
            time.sleep(0.05)


# --- what the app wrote, read back ------------------------------------------------------------------
def decode_event(content: str) -> dict[str, Any]:
    """A cleanup message as the app wrote it: base64 text holding the JSON event, which must match the published
    schema (docs/schemas/callEnded.schema.json). Every test that reads the cleanup queue decodes here."""
    event = json.loads(base64.b64decode(content).decode("utf-8"))
    assert isinstance(event, dict)
    validate_event(event)
    return event


def drain_events(ctx: Context, *, delete: bool = True, hide_for: int = 60) -> list[dict[str, Any]]:
    """Receive every visible message of the cleanup queue, returning the decoded events.

    Each is deleted, or (`delete=False`, fewer requests) left hidden for `hide_for` seconds.
    """
    queue = ctx.storage.queue_client(ctx.settings.cleanup_queue_name)
    events: list[dict[str, Any]] = []
    while True:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=hide_for))
        if not batch:
            return events
        for message in batch:
            events.append(decode_event(message.content))
            if delete:
                queue.delete_message(message)


def stored_call_ids(ctx: Context) -> list[str]:
    """The callIds in the calls table, read with the SDK (duplicates would show twice)."""
    table = ctx.storage.table_client()
    return [entity["CallId"] for entity in table.list_entities(select=["CallId"])]
