"""The package's import graph: no circle (lazy imports inside functions count), no private
name imported across packages, and integrations built on public names only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent / "python" / "retrysafe"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, names imported from it) for every retrysafe import in ``path``,
    those inside functions and ``TYPE_CHECKING`` blocks included."""
    module = _module_name(path)
    package = _package_of(module, path)
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("retrysafe")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("retrysafe"):
                continue
            names = [a.name for a in node.names]
            if node.module is None:  # from . import x: x is a module
                found += [(f"{target}.{name}", []) for name in names]
            else:
                found.append((target, names))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        edges = graph.setdefault(module, set())
        for target, _ in _imports(path):
            # Importing a.b.c runs a and a.b first: the parents are edges too.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                parent = ".".join(parts[:i])
                if parent != module and not module.startswith(parent + "."):
                    edges.add(parent)
    return graph


def test_no_import_circle() -> None:
    """No module reaches itself through the modules it imports (the circle _cache -> _retry
    -> stores -> stores._postgres -> _idempotent -> _cache is gone)."""
    graph = _graph()
    known = set(graph)
    circles: list[list[str]] = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        if node in on_path:
            circles.append([*path[path.index(node) :], node])
            return
        if node in done or node not in known:
            return
        on_path.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node], on_path, done)
        on_path.discard(node)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        visit(start, [], set(), done)
    assert [] == circles


def test_no_private_name_crosses_a_package() -> None:
    """A private name (``_is_async``, ``_STATE``) is imported only within its own package."""
    crossing = []
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        package = _package_of(module, path)
        for target, names in _imports(path):
            target_package = target.rpartition(".")[0] if names else target
            for name in names:
                if name.startswith("_") and not _same_package(package, target, target_package):
                    crossing.append(f"{module}: {name} from {target}")
    assert [] == crossing


def _same_package(package: str, target: str, target_package: str) -> bool:
    owner = target if (ROOT.parent / target.replace(".", "/")).is_dir() else target_package
    return owner == package


def test_integrations_use_public_names_only() -> None:
    """Integration modules import retrysafe's public modules only (``retrysafe``,
    ``retrysafe.framework``, public submodules), never a private one."""
    private = []
    for path in (ROOT / "integrations").glob("*.py"):
        for target, _ in _imports(path):
            if any(part.startswith("_") for part in target.split(".")):
                private.append(f"{path.name}: {target}")
    assert [] == private
