"""The package's layers (docs/architecture.md): each module of shared/ sits on one layer and imports only
from its own layer or the ones below, type-only imports included, and no modules import each other in a circle.
The storage package is one module here, and its private modules stay private: nothing outside it imports one,
except the test file that mirrors it (`tests/.../test_tablewire.py` for `shared/storage/_tablewire.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
STORAGE = SHARED / "storage"

# From the top down; a module may import from its own layer and every layer below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("command line, HTTP API, notifications", {"cli", "http_api", "notifications", "__main__"}),
    ("engine", {"keepalive", "sweep", "writers", "ending", "registry", "fanout", "budget", "context", "call_events"}),
    (
        "storage and Graph",
        {"storage", "graph", "retry", "ratelimit", "tokens", "signing_keys", "telemetry", "topic"},
    ),
    ("settings, models, errors", {"settings", "connection_string", "models", "errors", "summary", "logsafe", "jsonsafe",
                                  "loglimit", "events", "paging", "schedule", "__init__"}),
]  # fmt: skip


def module_of(path: Path) -> str:
    """`shared/cli/main.py` -> `cli`; `shared/store.py` -> `store` (a package is one module here)."""
    return path.relative_to(SHARED).parts[0].removesuffix(".py")


def imports_of(path: Path) -> set[str]:
    """The shared/ modules `path` imports, at run time or for type checking alone."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "shared":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # `from shared import registry` names a module; `from shared import __version__` does not
                found.update(
                    a.name for a in node.names if (SHARED / f"{a.name}.py").exists() or (SHARED / a.name).is_dir()
                )
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("shared."))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SHARED.rglob("*.py"):
        module = module_of(path)
        edges.setdefault(module, set()).update(imports_of(path) - {module})
    return edges


def layer(module: str) -> int:
    return next(i for i, (_, members) in enumerate(LAYERS) if module in members)


def test_every_module_has_a_layer():
    placed = set().union(*(members for _, members in LAYERS))
    assert set(graph()) - placed == set(), "add the new module to LAYERS and docs/architecture.md"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in graph().items()
        for target in targets
        if layer(target) < layer(module)
    ]
    assert upward == []


def test_no_import_circle():
    edges = graph()
    seen: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in seen:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, [*path, module])
        seen.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_checks_see_type_only_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared.context import Context\n")
    assert imports_of(source) == {"context"}


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(SHARED)): n for p in SHARED.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def private_storage_imports(path: Path) -> set[str]:
    """The private modules of shared/storage/ that `path` imports (`_calls`, `_tablewire`, ...)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[:2] == ["shared", "storage"] and len(parts) > 2 and parts[2].startswith("_"):
                found.add(parts[2])
            elif parts == ["shared", "storage"]:
                found.update(a.name for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["shared", "storage"] and len(parts) > 2 and parts[2].startswith("_"):
                    found.add(parts[2])
    return found


def mirrored(path: Path) -> set[str]:
    """The private module a test file mirrors (`test_rows.py`: `_rows`), which it alone may import."""
    return {"_" + path.stem.removeprefix("test_")} if path.stem.startswith("test_") else set()


def test_nothing_outside_the_storage_package_imports_its_private_modules():
    """The app (shared/, function_app.py, benchmarks/, scripts/) and the tests' helpers and fakes go through
    `shared.storage`; a test file may import only the private module it mirrors."""
    sources = [*SHARED.rglob("*.py"), ROOT / "function_app.py", *(ROOT / "benchmarks").rglob("*.py"),
               *(ROOT / "scripts").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]  # fmt: skip
    reached = {
        str(path.relative_to(ROOT)): sorted(imported)
        for path in sources
        if STORAGE not in path.parents and (imported := private_storage_imports(path) - mirrored(path))
    }
    assert reached == {}


def test_the_private_import_check_sees_every_form(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import shared.storage._calls\nfrom shared.storage._rows import read_rows\nfrom shared.storage import _ends\n"
        "from shared.storage import Calls\n"
    )
    assert private_storage_imports(source) == {"_calls", "_rows", "_ends"}
