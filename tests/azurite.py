"""Real Azurite for the tests: started once per session on free ports, stopped at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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
