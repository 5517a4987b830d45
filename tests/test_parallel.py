"""Folds trained in worker processes (lus.parallel): same results as one at a time, errors as in one process;
the per-epoch crop pictures of train_frame."""

from __future__ import annotations

import json

import cv2
import pandas as pd
import pytest
import torch

from lus.parallel import run_jobs, worker_count
from tests.test_frame_models import _params, _toy, _train_args


def _square(x: int) -> int:
    return x * x


def _fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"job {x} has bad input")
    return x


def _threads() -> int:
    return torch.get_num_threads()


def test_jobs_come_back_in_order_from_processes():
    assert run_jobs(_square, [(k,) for k in range(5)], workers=2, threads=1) == [0, 1, 4, 9, 16]
    assert run_jobs(_square, [(k,) for k in range(5)], workers=1, threads=1) == [0, 1, 4, 9, 16]
    assert run_jobs(_threads, [(), ()], workers=2, threads=1) == [1, 1]   # each worker at the given thread count


def test_a_failing_job_raises_its_own_error():
    with pytest.raises(ValueError, match="job 2 has bad input"):
        run_jobs(_fail_on, [(k, 2) for k in range(4)], workers=2, threads=1)
    with pytest.raises(ValueError, match="job 0 has bad input"):
        run_jobs(_fail_on, [(k, 0) for k in range(3)], workers=1, threads=1)


def test_worker_count(monkeypatch):
    monkeypatch.delenv("LUS_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert worker_count(0, 5, 1) == 4 and worker_count(0, 3, 1) == 3 and worker_count(0, 5, 2) == 2
    assert worker_count(0, 5, 8) == 1            # a job that wants every core runs alone
    assert worker_count(3, 5, 1) == 3 and worker_count(9, 2, 1) == 2
    monkeypatch.setenv("LUS_WORKERS", "1")
    assert worker_count(0, 5, 1) == 1 and worker_count(2, 5, 1) == 2   # the option beats the variable
    monkeypatch.setenv("LUS_WORKERS", "two")
    with pytest.raises(ValueError, match="LUS_WORKERS"):
        worker_count(0, 5, 1)
    with pytest.raises(ValueError, match="--workers"):
        worker_count(-1, 5, 1)


def test_train_frame_stage_gives_the_same_files_with_one_or_two_workers(tmp_path):
    """The promise of the parallel stages: fold results do not depend on how many run at once."""
    import stages.train_frame as stage

    paths = _toy(tmp_path)
    params = _params(tmp_path, arch="reg_stn", epochs=2, milestones=[1], batch_size=16, input_size=48, crop_size=32,
                     width=0.125, num_threads=1)
    (tmp_path / "one" / "fold_7").mkdir(parents=True)   # a fold that no longer exists: removed by a full run
    for name, workers in (("one", 1), ("two", 2)):   # one process and per-epoch pictures / two, no pictures
        stage.main(_train_args(paths, params, None, tmp_path / name, workers=workers, live=str(tmp_path / f"live_{name}"),
                               crops=str(tmp_path / "crops") if name == "one" else ""))
    n_folds = len(json.loads(paths["folds"].read_text())["folds"])
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [f"fold_{k}" for k in range(n_folds)]
    for k in range(n_folds):
        one, two = tmp_path / "one" / f"fold_{k}", tmp_path / "two" / f"fold_{k}"
        for name in ("meta.json", "curve.csv"):
            assert (one / name).read_text() == (two / name).read_text(), (k, name)
        a, b = (torch.load(d / "model.pt", weights_only=True) for d in (one, two))
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), k
    # METHODS §1.5 pictures: one per fold and epoch (drawing them changed no weight above)
    for k in range(n_folds):
        assert sorted(p.name for p in (tmp_path / "crops" / f"fold_{k}").iterdir()) == ["epoch_001.jpg", "epoch_002.jpg"]
    grid = cv2.imread(str(tmp_path / "crops" / "fold_0" / "epoch_002.jpg"))
    assert grid.shape[1] > 2 * 3 * 96 and grid.shape[0] >= 36 + 96   # two columns of [frame | crop 1 | crop 2]
    # one DVCLive log for every fold, written by the parent in fold order: identical too
    for rel in ("metrics.json", "plots/metrics/fold_0/train_loss.tsv", f"plots/metrics/fold_{n_folds - 1}/lr.tsv"):
        assert (tmp_path / "live_one" / rel).read_text() == (tmp_path / "live_two" / rel).read_text(), rel
    summary = json.loads((tmp_path / "live_two" / "metrics.json").read_text())
    assert set(summary) == {f"fold_{k}" for k in range(n_folds)} | {"step"}
    curve = pd.read_csv(tmp_path / "two" / "fold_0" / "curve.csv")
    assert summary["fold_0"]["train_loss"] == pytest.approx(curve["train_loss"].iloc[-1])


def test_train_frame_stage_error_in_a_worker_is_one_clear_error(tmp_path):
    import stages.train_frame as stage

    paths = _toy(tmp_path)
    params = _params(tmp_path, arch="cnn", epochs=1, batch_size=16, input_size=48, crop_size=32, width=0.125)
    with pytest.raises(ValueError, match="fold 9 is out of range"):
        stage.main(_train_args(paths, params, [0, 9], tmp_path / "m", workers=2))
    assert not (tmp_path / "m").exists()   # checked before any work


def test_train_frame_without_severity_labels_writes_its_declared_outputs(tmp_path):
    """A source without severity (POCUS): every fold says applicable 0, and the crop-sheet folder and the DVCLive
    log still exist (DVC fails a stage whose declared output is missing)."""
    import numpy as np

    import stages.train_frame as stage

    paths = _toy(tmp_path)
    manifest = pd.read_csv(paths["manifest"])
    manifest["video_score"] = np.nan
    manifest.to_csv(paths["manifest"], index=False)
    for shard in paths["frames"].glob("*.npz"):
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files if k != "labels"}
        np.savez(shard, **arrays)
    params = _params(tmp_path, arch="cnn", epochs=1, batch_size=16, input_size=48, crop_size=32, width=0.125)
    (tmp_path / "crops" / "fold_0").mkdir(parents=True)      # sheets of an earlier run on labelled data
    stage.main(_train_args(paths, params, None, tmp_path / "m", workers=2, live=str(tmp_path / "live"),
                           crops=str(tmp_path / "crops")))
    n_folds = len(json.loads(paths["folds"].read_text())["folds"])
    for k in range(n_folds):
        assert json.loads((tmp_path / "m" / f"fold_{k}" / "meta.json").read_text())["applicable"] == 0
    assert (tmp_path / "crops").is_dir() and list((tmp_path / "crops").iterdir()) == []
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == {}
