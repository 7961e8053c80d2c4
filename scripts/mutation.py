"""`make mutation`: mutation testing of the app's pure rules against the unit suite (docs/mutation.md).

What is mutated and which tests judge a mutant live in pyproject.toml, nowhere else:

    [tool.mutmut]                only_mutate: the files; pytest_add_cli_args_test_selection: the tests (tests/unit)
    [tool.callkeeper.mutation]   threshold: the least killed share (%); functions: a file narrowed to some of its
                                 functions ("name" or "Class.method"); a file not named there counts whole

This script checks that configuration against the code (a target that was moved or renamed stops the run),
runs mutmut on a fresh copy (`mutants/`, git-ignored), then prints the killed share per file and overall and
every surviving mutant (file:line, function, the line before and after), and exits 1 when the overall share
is below the threshold. `--report-only` prints the report of the last run without running mutmut again.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
LOG = MUTANTS / "make-mutation.log"
SEPARATOR = "ǁ"  # mutmut's mangled names: x_<function> and xǁ<Class>ǁ<method>

# mutmut's exit codes per mutant (mutmut/stats.py): a mutant is killed when a test failed on it, or the test
# process hung (mutmut's CPU-time limit) or crashed. Any other code (not run, interrupted) leaves no verdict.
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
KILLED |= {-11: "crashed", -9: "crashed"}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}


@dataclass(frozen=True)
class Target:
    path: str  # "shared/store.py"
    functions: tuple[str, ...]  # "decode_token", "CallStore.update"; empty: the whole file

    @property
    def module(self) -> str:
        dotted = self.path.removesuffix(".py").replace("/", ".")
        return dotted.removesuffix(".__init__")

    def mangled(self, function: str) -> str:
        cls, _, name = function.rpartition(".")
        return f"x{SEPARATOR}{cls}{SEPARATOR}{name}" if cls else f"x_{name}"

    def patterns(self) -> list[str]:
        """mutmut's mutant-name globs for this target."""
        if not self.functions:
            return [f"{self.module}.*"]
        return [f"{self.module}.{self.mangled(f)}__mutmut_*" for f in self.functions]

    def counts(self, mutant: str) -> bool:
        if not self.functions:
            return True
        local = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
        return any(local == self.mangled(f) for f in self.functions)


@dataclass(frozen=True)
class Config:
    targets: tuple[Target, ...]
    threshold: float


def load_config() -> Config:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    files: list[str] = tool["mutmut"]["only_mutate"]
    ours = tool["callkeeper"]["mutation"]
    narrowed: dict[str, list[str]] = ours.get("functions", {})
    problems = [
        f"{path} is narrowed in [tool.callkeeper.mutation] but not in only_mutate"
        for path in narrowed
        if path not in files
    ]
    targets = []
    for path in files:
        if not (ROOT / path).is_file():
            problems.append(f"{path} (only_mutate) does not exist")
            continue
        functions = tuple(narrowed.get(path, ()))
        defined = _functions_of(ROOT / path)
        problems += [f"{path} has no function {f}" for f in functions if f not in defined]
        targets.append(Target(path, functions))
    if problems:
        sys.exit("mutation targets out of date (pyproject.toml):\n  " + "\n  ".join(problems))
    return Config(tuple(targets), float(ours["threshold"]))


def _functions_of(path: Path) -> dict[str, int]:
    """Every function and method of a module ("name", "Class.method") and the line of its `def`."""
    found: dict[str, int] = {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[f"{node.name}.{item.name}"] = item.lineno
    return found


def run_mutmut(config: Config, max_children: int) -> None:
    shutil.rmtree(MUTANTS, ignore_errors=True)  # a fresh run: no result is carried over from other code or tests
    MUTANTS.mkdir()
    patterns = [p for target in config.targets for p in target.patterns()]
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children), *patterns]
    print(f"mutmut run on {len(config.targets)} files, {max_children} at a time (output: {LOG.relative_to(ROOT)})")
    started = time.monotonic()
    with LOG.open("w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    print(f"mutmut finished in {time.monotonic() - started:.0f} s (exit {done.returncode})")
    if done.returncode != 0:
        tail = LOG.read_text(encoding="utf-8", errors="replace")[-4000:]
        sys.exit(f"mutmut failed; the end of {LOG.relative_to(ROOT)}:\n{tail}")


@dataclass(frozen=True)
class Survivor:
    path: str
    line: int
    function: str
    status: str
    before: str
    after: str
    mutant: str


def report(config: Config) -> int:
    rows: list[tuple[str, Counter[str]]] = []
    survivors: list[Survivor] = []
    unchecked: list[str] = []
    for target in config.targets:
        meta = MUTANTS / f"{target.path}.meta"
        if not meta.is_file():
            sys.exit(f"no results for {target.path} in {MUTANTS.relative_to(ROOT)}/: run `make mutation` first")
        results: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        tally: Counter[str] = Counter()
        for mutant, code in sorted(results.items(), key=lambda item: _natural(item[0])):
            if not target.counts(mutant):
                continue
            if code in KILLED:
                tally["killed"] += 1
            elif code in SURVIVED:
                tally[SURVIVED[code]] += 1
                survivors.append(_survivor(target, mutant, SURVIVED[code]))
            else:  # not run, interrupted, or a crash mutmut calls suspicious: the run is not complete
                unchecked.append(f"{mutant} (exit code {code})")
            tally["mutants"] += 1
        rows.append((target.path, tally))
    if unchecked:
        sys.exit("mutants without a verdict (rerun `make mutation`):\n  " + "\n  ".join(unchecked))

    total: Counter[str] = sum((tally for _, tally in rows), Counter())
    width = max(len(path) for path, _ in rows)
    print(f"\n{'file':<{width}}  mutants  killed  survived  no tests  killed %")
    for path, tally in [*rows, ("overall", total)]:
        share = 100.0 * tally["killed"] / tally["mutants"] if tally["mutants"] else 100.0
        print(
            f"{path:<{width}}  {tally['mutants']:>7}  {tally['killed']:>6}  {tally['survived']:>8}"
            f"  {tally['no tests']:>8}  {share:>7.1f}"
        )
    overall = 100.0 * total["killed"] / total["mutants"] if total["mutants"] else 100.0
    print(f"\nsurviving mutants ({len(survivors)}; `.venv/bin/mutmut show <mutant>` prints one as a diff):")
    for s in survivors:
        print(f"{s.path}:{s.line}  {s.function}  [{s.status}]  {s.mutant}\n    - {s.before}\n    + {s.after}")
    verdict = "passes" if overall >= config.threshold else "FAILS"
    floor = f"{config.threshold:g} %"
    print(f"\nkilled {total['killed']} of {total['mutants']} mutants: {overall:.1f} % ({verdict} the {floor} floor)")
    return 0 if overall >= config.threshold else 1


def _natural(mutant: str) -> tuple[str, int]:
    stem, _, number = mutant.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def _survivor(target: Target, mutant: str, status: str) -> Survivor:
    """Where a mutant changed the original file, read from mutmut's copy (its `.spans` index of each function)."""
    local = mutant.rpartition(".")[2]
    mangled = local.rpartition("__mutmut_")[0]
    function = mangled[2:] if mangled.startswith("x_") else ".".join(mangled[2:].split(SEPARATOR))
    spans = json.loads((MUTANTS / f"{target.path}.spans").read_text(encoding="utf-8"))["spans"]
    lines = (MUTANTS / target.path).read_text(encoding="utf-8").splitlines()

    def body(name: str) -> list[str]:
        start, end = spans[name]
        text = lines[start - 1 : end]
        first = next(i for i, line in enumerate(text) if line.lstrip().startswith(("def ", "async def ")))
        return [text[first].replace(name, function.rpartition(".")[2], 1), *text[first + 1 :]]

    original, mutated = body(f"{mangled}__mutmut_orig"), body(local)
    changes = [
        op for op in difflib.SequenceMatcher(a=original, b=mutated, autojunk=False).get_opcodes() if op[0] != "equal"
    ]
    _, i1, i2, j1, j2 = changes[0] if changes else ("equal", 0, 0, 0, 0)
    line = _functions_of(ROOT / target.path)[function] + i1

    def shown(part: list[str]) -> str:
        text = " / ".join(piece.strip() for piece in part) or "(nothing)"
        return text if len(text) <= 200 else text[:197] + "..."

    return Survivor(target.path, line, function, status, shown(original[i1:i2]), shown(mutated[j1:j2]), mutant)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report-only", action="store_true", help="print the last run's report; run nothing")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = parser.parse_args()
    config = load_config()
    if not args.report_only:
        run_mutmut(config, args.max_children)
    return report(config)


if __name__ == "__main__":
    sys.exit(main())
