"""The operator command line as a person runs it: a folder with a local.settings.json, and `python -m shared`
run there as a real subprocess against the session's Azurite, this test's own table and queues, and the
Graph and identity stand-ins. The `make_cli` fixture (tests/integration/conftest.py) builds one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.context import Context
from tests.conftest import ContextFactory

ROOT = Path(__file__).resolve().parents[2]
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
RECORD_FIELDS = {
    "callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "lastError", "consecutiveFailures",
    "metadata",
}  # fmt: skip


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class App:
    """A folder like the app's: a local.settings.json, and the command line run from there."""

    folder: Path
    values: dict[str, str]
    make_context: ContextFactory | None = None  # the test's context factory, for `context()`

    def write_settings(self, **changes: str | None) -> None:
        values = {**self.values, **changes}
        document = {"IsEncrypted": False, "Values": {k: v for k, v in values.items() if v is not None}}
        (self.folder / "local.settings.json").write_text(json.dumps(document, indent=2), encoding="utf-8")

    def environ(self, env: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # coverage of the subprocess, when the test run measures subprocesses
            **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")},
            **(env or {}),
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        process = subprocess.run(
            [sys.executable, "-m", "shared", *args],
            cwd=self.folder,
            env=self.environ(env),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
        return Run(process.returncode, process.stdout, process.stderr)

    def context(self) -> Context:
        """The same settings, in this process, to arrange and inspect what the command line sees."""
        assert self.make_context is not None, "App(..., make_context) to build its context in the test"
        return self.make_context(**self.values)
