"""The package's layer order (docs/ARCHITECTURE.md, "Layers"), checked statically on every import.

Every ``import``/``from ... import`` anywhere in a file counts: at module level, inside functions, under
``if TYPE_CHECKING``. A module may import from its own layer or a lower one, never from a higher one,
and nothing outside ``stages/`` and ``tests/`` may import ``stages`` (stages are entry points, not a
library). The layer table below is the single source of truth; ARCHITECTURE.md draws it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lus", "lus.io", "lus.runtime", "lus.parallel", "lus.config"),   # core: no lus imports but each other
    ("lus.synth",),                                    # synthetic-video generator (a data source)
    ("lus.data",),                                     # files -> arrays/containers; folds; checks
    ("lus.models",),                                   # operators and networks (forward only)
    ("lus.metrics",),                                  # scores of labels vs predictions
    ("lus.train",),                                    # fitting: loops, optimisers, fold protocols
    ("lus.report",),                                   # markdown / plots of results
    ("lus.evaluation", "lus.export"),                  # end-to-end runs that fit, score and write reports
    ("lus.predict",),                                  # `lus predict` on an exported bundle
    ("lus.cli",),                                      # the console entry point
)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best < 0:
        raise AssertionError(f"module {module} is in no layer of tests/test_layers.py; add it to LAYERS")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; ``from pkg import name`` yields
    ``pkg.name`` when that is a module of the tree, else ``pkg``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (ROOT / Path(*sub.split(".")) / "__init__.py").is_file()
                out.append((node.lineno, sub if is_module else base))
    return sorted(set(out))


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def layer_violations() -> list[str]:
    bad = []
    for path in _files("lus"):
        own = layer_of(module_name(path))
        for line, mod in imported_modules(path):
            if mod == "stages" or mod.startswith("stages."):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (lus never imports stages)")
            elif mod == "lus" or mod.startswith("lus."):
                if layer_of(mod) > own:
                    bad.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[own][0]}) imports {mod} "
                               f"({LAYERS[layer_of(mod)][0]}, a higher layer)")
    return bad


def stage_import_violations() -> list[str]:
    bad = []
    for folder in ("lus", "scripts", "benchmarks"):
        for path in _files(folder):
            for line, mod in imported_modules(path):
                if mod == "stages" or mod.startswith("stages."):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    return bad


def test_no_module_imports_a_higher_layer():
    assert layer_violations() == []


def test_only_stages_and_tests_import_stages():
    assert stage_import_violations() == []


def import_cycles() -> list[list[str]]:
    """Strongly connected groups (> 1 module) of the import graph of lus/ (all imports, incl. type-only)."""
    graph = {module_name(p): {m for _, m in imported_modules(p) if m.startswith("lus")} for p in _files("lus")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    """Within a layer too: modules that import each other (even under TYPE_CHECKING) are one idea in two files."""
    assert import_cycles() == []


def test_every_lus_module_has_a_layer():
    for path in _files("lus"):
        layer_of(module_name(path))


def test_check_sees_imports_inside_functions_and_relative_imports(tmp_path):
    """The checker itself: a function-level upward import and a relative one are both found."""
    pkg = tmp_path / "lus" / "models"
    pkg.mkdir(parents=True)
    (tmp_path / "lus" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (tmp_path / "lus" / "train").mkdir()
    (tmp_path / "lus" / "train" / "__init__.py").write_text("")
    (tmp_path / "lus" / "train" / "fit.py").write_text("")
    (pkg / "net.py").write_text("def f():\n    from lus.train.fit import x\n\nfrom ..train import fit\n")
    globals()["ROOT"], old = tmp_path, ROOT
    try:
        found = [m for _, m in imported_modules(pkg / "net.py")]
        assert found == ["lus.train.fit", "lus.train.fit"]
        assert any("net.py:2" in v for v in layer_violations())
        assert any("net.py:4" in v for v in layer_violations())
    finally:
        globals()["ROOT"] = old


@pytest.mark.parametrize("doc", ["docs/ARCHITECTURE.md"])
def test_architecture_doc_names_every_layer(doc):
    text = (ROOT / doc).read_text()
    for prefixes in LAYERS:
        for p in prefixes:
            if p != "lus":
                assert f"`{p.replace('.', '/')}" in text, f"{doc} does not name layer {p}"
