"""scripts/azurite.sh as `make prepare`/`make start`/`make stop` run it, on free ports (AZURITE_PORTS)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.azurite import ROOT

pytestmark = pytest.mark.integration
SCRIPT = ROOT / "scripts" / "azurite.sh"


def _free_ports() -> list[int]:
    sockets = [socket.socket() for _ in range(3)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _script(cwd: Path, *args: str, ports: list[int]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AZURITE_PORTS": " ".join(map(str, ports))}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False
    )


def test_start_checks_azurite_answers_then_stop_and_stale_pid_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "azurite.pid").write_text("999999\n")  # a stale pid file, left by a crash
    ports = _free_ports()
    try:
        started = _script(ROOT, "start", str(data), ports=ports)
        assert started.returncode == 0, started.stderr
        assert "Removed a stale pid file" in started.stderr
        assert started.stdout.startswith("Azurite started (pid ") and str(ports[2]) in started.stdout
        pid = int((data / "azurite.pid").read_text())
        again = _script(ROOT, "start", str(data), ports=ports)
        assert again.returncode == 0 and f"already running (pid {pid}" in again.stdout
        assert not (data / "debug.log").exists()  # no --debug log
        # what `make prepare` says: the ports in force, whatever AZURITE_PORTS says now, and what reaches them
        where = _script(ROOT, "where", str(data), ports=_free_ports())
        listed = " ".join(map(str, ports))
        assert f"running on 127.0.0.1 ports {listed} (blob, queue, table)" in where.stdout, where.stdout
        assert "UseDevelopmentStorage=true does not reach this Azurite" in where.stdout
        connection = _script(ROOT, "connection", str(data), ports=_free_ports()).stdout.strip()
        assert (
            connection in where.stdout and f"TableEndpoint=http://127.0.0.1:{ports[2]}/devstoreaccount1" in connection
        )
        from azure.data.tables import TableServiceClient  # the string reaches this Azurite

        assert list(TableServiceClient.from_connection_string(connection).list_tables()) is not None
    finally:
        stopped = _script(ROOT, "stop", str(data), ports=ports)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"Azurite stopped (pid {pid})"
    assert not (data / "azurite.pid").exists()
    again = _script(ROOT, "stop", str(data), ports=ports)
    assert again.returncode == 0 and "not running" in again.stdout and "stopped" not in again.stdout


def test_a_taken_port_is_named_with_its_holder_and_nothing_is_started(tmp_path):
    ports = _free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[1]))
        holder.listen()
        run = _script(ROOT, "start", str(tmp_path), ports=ports)
    assert run.returncode == 1
    assert f"Port {ports[1]} is already in use" in run.stderr
    assert 'AZURITE_PORTS="20000 20001 20002" make prepare' in run.stderr  # how to use other ports
    assert "UseDevelopmentStorage=true reaches it" not in run.stderr  # not on these ports
    assert f'AZURITE_PORTS="{" ".join(map(str, ports))}" bash' in run.stderr and "connection" in run.stderr
    if shutil.which("ss") or shutil.which("lsof"):
        assert f"pid {os.getpid()}" in run.stderr  # this test process holds it
    assert "started" not in run.stdout and not (tmp_path / "azurite.pid").exists()


def test_without_node_modules_it_says_how_to_install_and_leaves_no_pid_file(tmp_path):
    run = _script(tmp_path, "start", str(tmp_path / "data"), ports=_free_ports())  # a folder with no node_modules
    assert run.returncode == 1
    assert "Azurite is not installed" in run.stderr and "make prepare" in run.stderr
    assert not (tmp_path / "data" / "azurite.pid").exists()


def test_make_prepare_says_the_ports_in_force_not_the_default_ones():
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\nprepare:", 1)[1].split("\n\n", 1)[0]
    assert "10000" not in recipe and "scripts/azurite.sh where" in recipe
