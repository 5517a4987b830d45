"""Kill and resume through DVC: `dvc repro train_frame` (every fold, in worker processes) is SIGKILLed after
fold 0's first epoch checkpoint, the next `dvc repro` continues from `models/frame/fold_0/checkpoint.pt`
(`models/frame` is a `persist: true` out) and ends with the same model, bit for bit, as an uninterrupted run
on CPU."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from lus.io import read_json
from tests.helpers import copy_repo, pipeline_env, run_cmd, set_params

pytestmark = pytest.mark.slow

EPOCHS = 8   # tiny epochs take ~0.5 s: enough left after the first checkpoint for the kill to land mid-run


def _training_processes(dvc: subprocess.Popen) -> list[psutil.Process]:
    """Every process under `dvc repro`: the shell DVC runs the command through (a shell that does not exec
    its last command, e.g. dash, stays between DVC and Python), the stage's Python process and its fold
    workers (spawned by multiprocessing). Killing only the shell would orphan the trainers, which then
    finish on their own; so all of them are returned, parents first."""
    try:
        return psutil.Process(dvc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_after_first_epoch(repo: Path, log: Path, timeout: float = 300) -> None:
    """Start `dvc repro train_frame`; SIGKILL its processes once fold 0's curve.csv exists again (it is
    written right after each epoch's checkpoint; the old one is removed first)."""
    curve = repo / "models/frame/fold_0/curve.csv"
    curve.unlink()
    with open(log, "w") as fh:
        dvc = subprocess.Popen(["dvc", "repro", "train_frame"], cwd=repo, env=pipeline_env(), stdout=fh,
                               stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not curve.is_file():
                assert dvc.poll() is None, f"dvc repro ended before the first epoch:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no epoch finished in time"
                time.sleep(0.02)
            procs = _training_processes(dvc)
            assert any("stages.train_frame" in " ".join(p.cmdline()) for p in procs), \
                f"training process not found among {[p.cmdline() for p in procs]}"
            for proc in reversed(procs):   # deepest first: the workers, the trainer, then its shell
                proc.send_signal(signal.SIGKILL)
            _, alive = psutil.wait_procs(procs, timeout=30)
            assert not alive, f"still running after SIGKILL: {alive}"
            assert dvc.wait(timeout=120) != 0, "dvc repro should fail when its stage is killed"
        finally:
            if dvc.poll() is None:
                dvc.kill()
                dvc.wait()


def test_killed_training_resumes_to_the_uninterrupted_model(tiny_repo, tmp_path):
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    set_params(repo / "params.yaml", {"frame_model": {"epochs": EPOCHS}})
    out = repo / "models/frame/fold_0"

    _kill_after_first_epoch(repo, tmp_path / "killed.log")
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    killed_at = int(ckpt["epoch"])
    assert f'"epochs": {EPOCHS},' in ckpt["identity"], "checkpoint is not the one of the killed run"
    assert 1 <= killed_at < EPOCHS, f"the kill did not land mid-run (checkpoint at epoch {killed_at}/{EPOCHS})"
    assert not (out / "model.pt").exists() and not (out / "meta.json").exists()   # nothing half-written

    log = run_cmd(["dvc", "repro", "train_frame"], repo)       # resumes
    assert "Running stage 'train_frame'" in log.stdout, log.stdout
    meta = read_json(out / "meta.json")
    assert meta["resumed_from_epoch"] == killed_at and meta["last_epoch"] == EPOCHS
    resumed = {"model": (out / "model.pt").read_bytes(), "meta": meta,
               "curve": pd.read_csv(out / "curve.csv")}
    assert run_cmd(["dvc", "status", "train_frame"], repo).stdout.strip().endswith("up to date.")

    # uninterrupted reference: DVC reruns the stage from scratch (a finished checkpoint is not resumed)
    run_cmd(["dvc", "repro", "--force", "--single-item", "train_frame"], repo)
    fresh = read_json(out / "meta.json")
    assert fresh["resumed_from_epoch"] == 0 and fresh["last_epoch"] == EPOCHS
    assert (out / "model.pt").read_bytes() == resumed["model"], "resumed model differs from the uninterrupted one"
    pd.testing.assert_frame_equal(pd.read_csv(out / "curve.csv"), resumed["curve"])
    for key in ("selected_epoch", "selected_val_accuracy", "last_val_accuracy", "train_class_counts"):
        assert fresh[key] == resumed["meta"][key], key
