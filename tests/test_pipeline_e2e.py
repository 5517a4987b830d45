"""End to end: copy the project into a temporary git repo, run `dvc repro` on the tiny preset,
check the stage contracts, and check that a second `dvc repro` does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lus.config.presets import apply_preset
from lus.data.folds import load_folds
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = ""
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def copy_project(dest: Path) -> Path:
    """Copy the files git knows about (tracked + untracked-not-ignored) into a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    skip = ("data/", "models/", "metrics/", "plots/", "dvc.lock")
    for rel in files:
        if rel.startswith(skip) or not (PROJECT_ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, dest / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("proj"))
    apply_preset(repo / "params.yaml", repo / "presets" / "tiny.yaml")
    _run(["dvc", "repro"], repo)
    return repo


def test_repro_writes_the_contracts(tiny_repo):
    manifest = pd.read_csv(tiny_repo / "data/raw/manifest.csv")
    index = pd.read_csv(tiny_repo / "data/frames/index.csv")
    assert set(index["video_id"]) == set(manifest["video_id"])
    folds = load_folds(tiny_repo / "data/splits/folds.json")
    assert sorted(p for f in folds for p in f["test"]) == sorted(manifest["patient_id"].unique())
    assert (tiny_repo / "dvc.lock").is_file()


def test_second_repro_is_a_noop(tiny_repo):
    out = _run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in out, out
    status = _run(["dvc", "status"], tiny_repo)
    assert "changed" not in status, status
