"""Every DVC stage must depend on every project file its command runs.

`dvc status` only sees the files a stage lists in `deps`; a project module that a stage imports but
does not list can change without rerunning the stage, and the committed results silently go stale.
This test follows each stage's imports statically (ast, module level *and* inside functions, package
``__init__`` files included, since they run on import) from its ``python -m <module>`` entry point and
fails with the exact files that `dvc.yaml` misses. A folder in `deps` covers everything under it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

PROJECT_PACKAGES = ("lus", "stages")


def module_file(root: Path, dotted: str) -> Path | None:
    """The project file that `import dotted` executes last (module or package __init__), or None."""
    if dotted.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, root: Path) -> set[str]:
    """Dotted names of every import in a file, relative imports resolved; `from a import b` yields a and a.b
    (b may be a submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(entry: Path, root: Path) -> set[Path]:
    """All project files that running `entry` imports, directly or transitively."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, root):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(root, ".".join(parts[:depth]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def stage_definitions(dvc_yaml: dict) -> dict[str, dict]:
    """Stage name -> its definition (the `do` body of foreach stages)."""
    stages = {}
    for name, body in dvc_yaml["stages"].items():
        stages[name] = body["do"] if "foreach" in body else body
    return stages


def entry_module(cmd: str, root: Path) -> Path:
    match = re.search(r"python3?\s+-m\s+([\w.]+)", cmd)
    if not match:
        raise AssertionError(f"stage cmd '{cmd}' is not 'python -m <module>': the dependency check cannot follow it")
    found = module_file(root, match.group(1))
    if found is None:
        raise AssertionError(f"stage cmd '{cmd}': module {match.group(1)} not found in the project")
    return found


def is_empty_init(path: Path) -> bool:
    """An __init__.py with nothing but a docstring/comments: editing it cannot change results."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def missing_deps(root: Path) -> dict[str, list[str]]:
    """Stage name -> project files it imports but does not list (as paths relative to root)."""
    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    missing: dict[str, list[str]] = {}
    for name, stage in stage_definitions(doc).items():
        deps = [root / str(d).split("$")[0].rstrip("/") for d in stage.get("deps", []) if isinstance(d, str)]
        files = import_closure(entry_module(stage["cmd"], root), root)
        uncovered = sorted(
            str(f.relative_to(root)) for f in files
            if not is_empty_init(f) and not any(f == d or d in f.parents for d in deps)
        )
        if uncovered:
            missing[name] = uncovered
    return missing


def test_every_stage_lists_the_project_files_it_imports():
    missing = missing_deps(PROJECT_ROOT)
    report = "\n".join(f"  {stage}: add {', '.join(files)}" for stage, files in missing.items())
    assert not missing, f"dvc.yaml misses code dependencies (an edit there would leave stale results):\n{report}"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_check_follows_function_level_relative_and_package_imports(tmp_path):
    """The checker itself: an import hidden in a function, a relative import and a non-empty package
    __init__ are all found; a listed folder covers its files; an empty __init__ is ignored."""
    _write(tmp_path, "stages/__init__.py", "")
    _write(tmp_path, "stages/go.py", "def main():\n    from lus.a import f\n    return f()\n")
    _write(tmp_path, "lus/__init__.py", "__version__ = '1'\n")
    _write(tmp_path, "lus/a.py", "from .b import g\n\ndef f():\n    return g()\n")
    _write(tmp_path, "lus/b.py", "def g():\n    return 1\n")
    _write(tmp_path, "lus/sub/__init__.py", '"""docstring only."""\n')
    _write(tmp_path, "lus/sub/c.py", "X = 1\n")
    _write(tmp_path, "lus/other.py", "import lus.sub.c\n")
    stage = {"cmd": "python -m stages.go --x 1", "deps": ["stages/go.py", "lus/a.py"]}
    _write(tmp_path, "dvc.yaml", yaml.safe_dump({"stages": {"go": stage}}))
    assert missing_deps(tmp_path) == {"go": ["lus/__init__.py", "lus/b.py"]}

    stage["deps"] = ["stages/go.py", "lus"]
    _write(tmp_path, "dvc.yaml", yaml.safe_dump({"stages": {"go": stage}}))
    assert missing_deps(tmp_path) == {}

    stage["cmd"] = "python -m stages.other_go"
    _write(tmp_path, "stages/other_go.py", "import lus.other\n")
    stage["deps"] = ["stages/other_go.py", "lus/other.py"]
    _write(tmp_path, "dvc.yaml", yaml.safe_dump({"foreach": [0], "stages": {"go": {"foreach": [0], "do": stage}}}))
    assert missing_deps(tmp_path) == {"go": ["lus/__init__.py", "lus/sub/c.py"]}


def test_check_refuses_a_cmd_it_cannot_follow(tmp_path):
    _write(tmp_path, "dvc.yaml", yaml.safe_dump({"stages": {"s": {"cmd": "bash run.sh", "deps": []}}}))
    with pytest.raises(AssertionError, match="not 'python -m"):
        missing_deps(tmp_path)


def test_dvc_reads_its_files_with_the_c_yaml_parser():
    """DVC parses dvc.yaml and dvc.lock (4,000+ lines) with ruamel.yaml on every command; without the C
    parser (ruamel.yaml.clib, a declared dependency) a no-op `dvc repro` takes twice as long."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None, "ruamel.yaml.clib is not installed (pip install ruamel.yaml.clib)"
    assert YAML(typ="safe").Parser is CParser
