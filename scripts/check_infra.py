"""Offline policy check of the Bicep templates under infra/ with checkov.

Run from the repository root with the interpreter of checkov's own virtual environment:

    .venv-checkov/bin/python scripts/check_infra.py

It runs ``checkov -d infra --framework bicep -o json`` (the checkov next to this interpreter, with nothing
downloaded) and fails unless every template parses, at least one check passed, none failed, and every
skipped check carries a justification on its resource (``// checkov:skip=CKV_...:reason``).
checkov itself exits 0 on parsing errors, so the counts are read from its JSON report.

One file is left out, with its reason in ``NOT_FOR_CHECKOV``: checkov's pinned Bicep parser cannot read it,
and it declares no resource (tests/infra/test_tooling.py holds both, so the list cannot hide a resource).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = "infra"
NO_REASON = "No comment provided"
# Templates checkov does not read, each with why. The guard calls Bicep's fail() (Bicep 0.33+), which the
# pycep-parser that checkov 3.3.30 pins (0.5.1) does not know; it has outputs only, nothing to check.
NOT_FOR_CHECKOV = {
    "infra/core/guard/hosting-region.bicep": "uses fail(), newer than checkov's pycep-parser 0.5.1; no resources",
}
# One check or a comma-separated list (checkov's own syntax), then ':' and the reason.
SKIP_COMMENT = re.compile(r"checkov:skip=([A-Za-z_\d-]+(?:,[A-Za-z_\d-]+)*)(:?)(.*)")


def checkov_executable() -> Path:
    """The checkov installed beside this interpreter (its own virtual environment)."""
    bin_dir = Path(sys.executable).parent
    for name in ("checkov", "checkov.cmd"):
        candidate = bin_dir / name
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"checkov is not installed next to {sys.executable}; "
        "run: python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r requirements-checkov.txt"
    )


def run_checkov() -> list[dict[str, Any]]:
    cmd = [
        str(checkov_executable()),
        "-d",
        INFRA_DIR,
        "--framework",
        "bicep",
        "-o",
        "json",
        "--skip-download",  # offline: no policy metadata from the vendor's API
    ]
    for path in NOT_FOR_CHECKOV:
        cmd += ["--skip-path", path]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", LOG_LEVEL="ERROR")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    # checkov exits 1 when a check failed; anything else, or output that is not JSON, means it did not run.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        detail = (proc.stdout[:2000] + proc.stderr[:2000]).strip()
        raise RuntimeError(f"checkov did not print a JSON report ({exc}):\n{detail}") from exc
    reports = report if isinstance(report, list) else [report]
    return [r for r in reports if isinstance(r, dict)]


def summarize(reports: list[dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """Adds up the counts of every report and lists what is wrong."""
    totals = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
    problems: list[str] = []
    for report in reports:
        # With nothing to scan checkov prints only a summary, without "results".
        summary = report.get("summary", report)
        for key in totals:
            totals[key] += int(summary.get(key, 0))
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            start, end = check.get("file_line_range", [0, 0])
            problems.append(
                f"FAILED {check.get('check_id')} {check.get('resource')} "
                f"({check.get('file_path')}:{start}-{end}): {check.get('check_name')}"
            )
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
            if not reason or reason == NO_REASON:
                problems.append(
                    f"SKIPPED WITHOUT A REASON {check.get('check_id')} {check.get('resource')} "
                    f"({check.get('file_path')}): write '// checkov:skip={check.get('check_id')}:<why>'"
                )
        for path in results.get("parsing_errors", []):
            problems.append(f"PARSING ERROR {path}")
    return totals, problems


def unjustified_skip_comments() -> list[str]:
    """Every skip comment in the templates names a check and gives a reason."""
    problems = []
    for path in sorted((ROOT / INFRA_DIR).rglob("*.bicep")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = SKIP_COMMENT.search(line)
            if match and (not match.group(2) or not match.group(3).strip()):
                rel = path.relative_to(ROOT)
                problems.append(f"SKIP WITHOUT A REASON {rel}:{number}: {line.strip()}")
    return problems


def main() -> int:
    if not any((ROOT / INFRA_DIR).rglob("*.bicep")):
        print(f"check_infra: no .bicep files under {INFRA_DIR}/", file=sys.stderr)
        return 1
    try:
        reports = run_checkov()
    except (OSError, RuntimeError) as exc:
        print(f"check_infra: could not run checkov: {exc}", file=sys.stderr)
        return 2
    totals, problems = summarize(reports)
    problems += unjustified_skip_comments()
    if totals["parsing_errors"]:
        problems.append(
            f"{totals['parsing_errors']} template(s) did not parse: checkov checked nothing in them "
            "(stay within the Bicep syntax of checkov's pinned pycep-parser)"
        )
    if totals["passed"] == 0:
        problems.append("no check passed: checkov found no resource to check")
    print(
        "checkov bicep: passed={passed} failed={failed} skipped={skipped} parsing_errors={parsing_errors}".format(
            **totals
        )
    )
    if problems:
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("check_infra: FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
