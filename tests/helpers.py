"""Helpers shared by the tests that run stages or whole DVC pipelines (imported as ``tests.helpers``)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ subprocesses
def pipeline_env(**extra: str) -> dict[str, str]:
    """Environment for ``dvc``/stage subprocesses: this venv first on PATH, offline, CPU only."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["HF_HUB_OFFLINE"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = ""
    env.update(extra)
    return env


def run_cmd(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; with ``check`` fail the test with the tail of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=pipeline_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


# ------------------------------------------------------------------------------------ project copies
def copy_project(dest: Path) -> Path:
    """Copy the files git knows about (tracked + untracked-not-ignored) into a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    skip = ("data/", "models/", "metrics/", "plots/", "dvc.lock")
    keep = ("data/splits/user/",)  # a dependency of the split stage (user folds files), not an output
    for rel in files:
        if (rel.startswith(skip) and not rel.startswith(keep)) or not (PROJECT_ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, dest / rel)
    git_commit(dest, "init", init=True)
    return dest


def git_commit(repo: Path, message: str, init: bool = False) -> None:
    cmds = [["git", "init", "-q"]] if init else []
    cmds += [["git", "add", "-A"], ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message]]
    for cmd in cmds:
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


def set_params(params_file: Path, overrides: dict[str, dict[str, Any]]) -> None:
    """Merge ``{section: {key: value}}`` into a params file (like a preset)."""
    data = yaml.safe_load(params_file.read_text()) or {}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    params_file.write_text(yaml.safe_dump(data, sort_keys=False))


def make_tiny_repo(dest: Path) -> Path:
    """A git copy of the project whose params.yaml is the default merged with presets/tiny.yaml."""
    from lus.config.presets import apply_preset

    copy_project(dest)
    apply_preset(dest / "params.yaml", dest / "presets" / "tiny.yaml")
    return dest


def copy_repo(src: Path, dest: Path) -> Path:
    """Copy a built repo (workspace, git and DVC cache; not DVC's temporary state) to ``dest``."""
    shutil.copytree(src, dest, symlinks=True, ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    return dest


# ------------------------------------------------------------------------------------ stages in-process
def run_stage(module: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run ``python -m stages.<module> argv`` in this process through ``stages/_cli.run``.

    Returns (exit code, stderr). In-process saves the seconds of imports a subprocess costs; the
    error path is the same entry point (``run`` turns user errors into ``error: ...`` and exit 1).
    """
    from stages._cli import run

    mod = importlib.import_module(f"stages.{module}")
    monkeypatch.setattr(sys, "argv", [f"stages.{module}", *argv])
    capsys.readouterr()
    try:
        run(mod.main, mod.build_parser())
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err
