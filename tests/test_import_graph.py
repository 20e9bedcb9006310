"""The import graph of kdlab runs one way: no cycle, and no module imports from a layer above its own.

The graph comes from an AST walk over ``src/kdlab`` (no import is executed, no dependency needed). Every import
counts, at module level or inside a function: a lazy import hides an edge, it does not remove it. An import of
``kdlab.a.b`` also executes ``kdlab/a/__init__.py``, so it is an edge to ``kdlab.a`` too, unless ``kdlab.a`` is a
package the importing module lives in (its enclosing packages are already initialising when it runs). ``from . import
NAME`` reads NAME from the package's ``__init__``: an edge to the package, even the enclosing one (or to the submodule
NAME, when there is one).

The declared order, lowest first (docs/architecture.md, "Layers", explains it). A module may import from its own
layer or any layer below; modules of one layer may import each other as long as no cycle forms.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, ...]] = [  # "kdlab" is the root package (its version only)
    ("kdlab", "kdlab.errors", "kdlab.io", "kdlab.registry", "kdlab.layout", "kdlab.runlock", "kdlab.space",
     "kdlab.batch", "kdlab.extras"),
    ("kdlab.config",),
    ("kdlab.data", "kdlab.models", "kdlab.losses"),
    ("kdlab.distill",),
    ("kdlab.validate",),
    ("kdlab.train",),
    ("kdlab.compress",),
    ("kdlab.recipe", "kdlab.store", "kdlab.executor"),
    ("kdlab.analysis",),
    ("kdlab.protect",),
    ("kdlab.report",),
    ("kdlab.tuning",),
    ("kdlab.studies", "kdlab.advise"),
    ("kdlab.cli", "kdlab.__main__"),
]

# ------------------------------------------------------------------------------------------------ the checker


def module_names(src: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``src/kdlab`` (a package is named by its ``__init__.py``)."""
    names = {}
    for path in sorted((src / "kdlab").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_edges(src: Path) -> dict[str, set[str]]:
    """Module -> the kdlab modules whose execution importing it triggers (see the module docstring)."""
    modules = module_names(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if path.name == "__init__.py":
            ancestors.add(name)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        edges = set()
        for target in targets:
            if target in modules and target != name:
                edges.add(target)  # what the import names, even an enclosing package (a name from its __init__)
            parts = target.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])  # packages executed on the way to it, unless already initialising
                if prefix in modules and prefix not in ancestors:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def layer_of(module: str, layers: list[tuple[str, ...]]) -> int | None:
    """Index of the layer whose longest prefix matches ``module``; None when no layer declares it. The root package
    ``kdlab`` matches only itself, so a new top-level module must be declared."""
    best, best_len = None, -1
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "kdlab"
            if (module == prefix or inside) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def upward_edges(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """Edges from a module to a module of a higher layer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if layer_of(b, layers) > layer_of(a, layers))  # type: ignore[operator]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


# ------------------------------------------------------------------------------------------------ the tests


def undeclared(src: Path) -> list[str]:
    return [m for m in module_names(src) if layer_of(m, LAYERS) is None]


def test_every_module_has_a_layer() -> None:
    missing = undeclared(SRC)
    assert not missing, f"declare these modules' layer in LAYERS (and docs/architecture.md): {missing}"


def test_no_import_goes_up_a_layer() -> None:
    bad = upward_edges(import_edges(SRC), LAYERS)
    assert not bad, "imports against the layer order (importer -> imported):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in bad)


def test_no_import_cycle() -> None:
    found = cycles(import_edges(SRC))
    assert not found, "import cycles:\n" + "\n".join("  " + " <-> ".join(group) for group in found)


# ------------------------------------------------------------------------------------------------ the test's test


@pytest.fixture
def src_copy(tmp_path: Path) -> Path:
    """A copy of the real source tree, to plant faults in."""
    shutil.copytree(SRC / "kdlab", tmp_path / "kdlab", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(src: Path, module_file: str, line: str, inside_function: bool = False) -> None:
    path = src / "kdlab" / module_file
    text = f"\n\ndef _planted():\n    {line}\n" if inside_function else f"\n{line}\n"
    path.write_text(path.read_text() + text)


def test_checker_finds_a_planted_upward_import(src_copy: Path) -> None:
    assert upward_edges(import_edges(src_copy), LAYERS) == []
    _plant(src_copy, "losses/kd.py", "from ..train.loop import fit", inside_function=True)
    assert upward_edges(import_edges(src_copy), LAYERS) == [
        ("kdlab.losses.kd", "kdlab.train"), ("kdlab.losses.kd", "kdlab.train.loop")]


def test_checker_finds_a_planted_cycle(src_copy: Path) -> None:
    assert cycles(import_edges(src_copy)) == []
    # two modules of one layer importing each other: legal by layer, caught as a cycle
    _plant(src_copy, "models/mlp.py", "from . import cnn")
    _plant(src_copy, "models/cnn.py", "from .mlp import MLP", inside_function=True)
    assert cycles(import_edges(src_copy)) == [["kdlab.models.cnn", "kdlab.models.mlp"]]


def test_checker_finds_an_undeclared_module(src_copy: Path) -> None:
    assert undeclared(src_copy) == []
    (src_copy / "kdlab" / "helpers.py").write_text("")
    (src_copy / "kdlab" / "plugins").mkdir()
    (src_copy / "kdlab" / "plugins" / "__init__.py").write_text("")
    assert undeclared(src_copy) == ["kdlab.helpers", "kdlab.plugins"]


def test_checker_counts_package_init_as_an_edge(src_copy: Path) -> None:
    # a registry read from a package __init__ by a module that __init__ imports: the shape of the old schemes cycle
    (src_copy / "kdlab" / "models" / "extra.py").write_text("from . import MODELS\n")
    _plant(src_copy, "models/__init__.py", "from . import extra")
    assert ["kdlab.models", "kdlab.models.extra"] in cycles(import_edges(src_copy))
