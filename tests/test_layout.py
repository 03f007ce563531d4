"""The package layout follows the pipeline: each folder imports only folders below it in LAYERS,
no module imports its own package's modules in a cycle (not even lazily or for type checking), no
file is much over 300 lines and no class is defined inside a function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "saliency_distill"
# Bottom to top. The base modules are importable from anywhere.
BASE = {"_version", "errors", "config", "io", "distributed", "run_dir", "rowstore", "allocator"}
LAYERS = ["data", "models", "attribution", "training", "teacher", "rationale", "evaluation", "student",
          "analysis", "reporting", "experiment", "study", "cli", "__main__", "__init__"]


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    """Dotted package-relative names that module ``name`` imports (lazy imports included unless
    ``top_level_only``)."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                out.add(".".join([*base, *node.module.split(".")]))
            else:
                out.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("saliency_distill."):
            out.add(node.module.removeprefix("saliency_distill."))
    return {o for o in out if o}


def _unit(dotted: str) -> str:
    return dotted.split(".")[0]


def test_each_folder_imports_only_folders_below_it():
    upward = []
    for name, path in _modules().items():
        here = _unit(name)
        if here in BASE:
            continue
        for target in _imports(name, path):
            there = _unit(target)
            if there in BASE or there == here:
                continue
            if LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def _graph(modules: dict[str, Path], top_level_only: bool = False) -> dict[str, set[str]]:
    """Each module's imports of the package's own modules (lazy and ``TYPE_CHECKING`` ones included
    unless ``top_level_only``)."""
    return {name: {t for t in _imports(name, path, top_level_only) if t in modules and t != name}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """For each module that can reach itself through modules of its own folder (``__init__`` aside),
    one such circle, starting with it."""

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return trail
                if nxt not in seen and not nxt.endswith("__init__") and _unit(nxt) == _unit(start):
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    return [c for c in (cycle_from(m) for m in sorted(graph) if not m.endswith("__init__")) if c]


def test_no_import_cycle_inside_a_package():
    """No circle inside a folder, counting every import: top-level, function-level (lazy) and
    ``if TYPE_CHECKING:`` ones. A lazy import only hides a circle from the interpreter; the
    modules still need each other."""
    cycles = _cycles(_graph(_modules()))
    assert not cycles, cycles


def test_the_cycle_check_counts_lazy_and_type_checking_imports(tmp_path):
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .b import B\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import A\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    modules = {f"pkg.{n}": tmp_path / f"{n}.py" for n in "abc"}
    assert _cycles(_graph(modules)) == [["pkg.a", "pkg.b"], ["pkg.b", "pkg.a"]]
    assert _cycles(_graph(modules, top_level_only=True)) == []


def test_files_stay_small_and_classes_are_not_defined_in_functions():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 330}
    assert not long, long
    nested = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested += [f"{name}.{node.name}: {c.name}" for c in ast.walk(node) if isinstance(c, ast.ClassDef)]
    assert not nested, nested


def test_the_documented_layout_is_the_checked_one():
    """docs/pipeline.md lists the layers in the order this test enforces, and the base modules."""
    docs = (PACKAGE.parents[1] / "docs" / "pipeline.md").read_text()
    section = docs[docs.index("## Code layout"):]
    named = [m.group(1) for m in re.finditer(r"`([a-z_]+)(?:/|\.py)`", section)]
    assert [n for n in named if n not in BASE] == [n for n in LAYERS if not n.startswith("__")]
    assert set(named) & BASE == BASE
