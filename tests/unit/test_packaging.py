"""What the Functions package leaves out (.funcignore) and what the project installs (pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = {".python_packages"}  # what `func` builds into the package
SECRETS_BY_NAME = {"*.pem"}  # a certificate is placed on purpose; .gitignore keeps it out of the repo


def _patterns(name: str) -> set[str]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")}


def test_every_local_only_path_git_ignores_is_kept_out_of_the_package():
    funcignore = _patterns(".funcignore")
    local_only = _patterns(".gitignore") - DEPLOYED - SECRETS_BY_NAME
    missing = {p for p in local_only if p not in funcignore and p.split("/")[0] not in funcignore}
    assert missing == set()
    for folder in (".standins", ".hypothesis", ".venv", ".venv-checkov", ".azurite", "local.settings.json"):
        assert folder in funcignore


def test_the_project_installs_the_callkeeper_command_from_the_shared_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"] == {"callkeeper": "shared.cli:main"}
    packages = project["tool"]["setuptools"]["packages"]
    found = sorted(str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "shared").rglob("__init__.py"))
    assert packages == found  # every package of shared/, so a non-editable install works too
