"""End to end: copy the project into a temporary git repo, run `dvc repro` on the tiny preset,
check the stage contracts, and check that a second `dvc repro` does nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lus.data.folds import load_folds
from tests.helpers import run_cmd

pytestmark = pytest.mark.slow

# tiny_repo (tests/conftest.py): the project in a temporary git repo after `dvc repro` on presets/tiny.yaml,
# built once per session and shared with other modules, so tests here must leave it as they found it.


def _run(cmd: list[str], cwd: Path) -> str:
    proc = run_cmd(cmd, cwd)
    return proc.stdout + proc.stderr


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


def test_tnorm_change_reruns_only_the_aggregator_and_what_follows(tiny_repo):
    """`dvc exp run -S aggregator.tnorm=min` must not redo extraction, splits or the frame model."""
    params = tiny_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("tnorm: product", "tnorm: min", 1))
        assert params.read_text() != original
        out = _run(["dvc", "repro", "--dry"], tiny_repo)
    finally:
        params.write_text(original)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    aggregators = {"train_aggregator"}
    assert aggregators <= ran, ran
    assert ran - aggregators <= {"evaluate", "export"}, f"unexpected stages rerun: {sorted(ran - aggregators)}"
