"""Inner cross-fitting (aggregator.cross_fit: inner, stage train_frame_inner): every training video of fold k
gets frame probabilities from a model that saw neither the video's patient nor fold k's test patients."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lus.data.aggregator_inputs import load_fold_data
from lus.data import folds as folds_api
from tests.test_frame_models import _toy

FRAME = {"arch": "cnn", "epochs": 1, "batch_size": 16, "input_size": 48, "crop_size": 32, "width": 0.125,
         "num_threads": 1}


def _params(tmp_path: Path, cross_fit: str) -> str:
    path = tmp_path / f"params_{cross_fit}.yaml"
    path.write_text(yaml.safe_dump({"base": {"seed": 0}, "frame_model": FRAME, "aggregator": {"cross_fit": cross_fit}}))
    return str(path)


def _args(paths: dict, params: str, out: Path, workers: int = 2) -> argparse.Namespace:
    return argparse.Namespace(params=params, frames=str(paths["frames"]), folds=str(paths["folds"]),
                              manifest=str(paths["manifest"]), out=str(out / "models"),
                              predictions=str(out / "inner.parquet"), workers=workers, no_resume=False,
                              no_progress=True, cache=str(out / "cache"))


def test_pair_patients_hold_out_both_test_sets():
    from stages.train_frame_inner import pair_patients

    folds = [{"train": ["b", "c", "d"], "val": ["e"], "test": ["a"]},
             {"train": ["a", "c", "d"], "val": ["e"], "test": ["b"]},
             {"train": ["a", "b", "e"], "val": ["d"], "test": ["c"]},
             {"train": ["a", "b", "c"], "val": ["e"], "test": ["d"]},
             {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]}]
    spec = pair_patients(folds, 0, 2, "folds")
    assert spec["test_a"] == ["a"] and spec["test_b"] == ["c"]
    assert spec["val"] == ["e"] and spec["train"] == ["b", "d"]        # val(0) inside the pool
    spec = pair_patients(folds, 3, 4, "folds")                          # val(3) = e is held out: val(4) = d is too
    assert spec["val"] == [] and spec["train"] == ["a", "b", "c"]


def test_inner_stage_predicts_every_training_video_from_a_model_blind_to_it(tmp_path):
    import stages.train_frame_inner as stage

    paths = _toy(tmp_path)
    out = tmp_path / "run"
    stage.main(_args(paths, _params(tmp_path, "inner"), out))
    folds = folds_api.load_folds(paths["folds"])
    k_folds = len(folds)
    pairs = sorted(p.name for p in (out / "models").iterdir())
    assert pairs == [f"pair_{a}_{b}" for a in range(k_folds) for b in range(a + 1, k_folds)]
    table = pd.read_parquet(out / "inner.parquet")
    manifest = pd.read_csv(paths["manifest"], dtype={"video_id": str, "patient_id": str})
    test_fold = folds_api.test_fold_of(folds)
    for k in range(k_folds):
        rows = table[table["fold"] == k]
        training = set(folds[k]["train"]) | set(folds[k]["val"])
        assert set(rows["patient_id"]) == training                     # every training patient, nobody else
        assert set(rows["video_id"]) == set(manifest.loc[manifest["patient_id"].isin(training), "video_id"])
        for patient in training:                                       # its model never saw it nor test(k)
            a, b = sorted((k, test_fold[patient]))
            ckpt = torch.load(out / "models" / f"pair_{a}_{b}" / "checkpoint.pt", weights_only=True)
            seen = json.loads(ckpt["identity"])["fingerprint"]
            assert patient not in seen["train_patients"] + seen["val_patients"]
            assert not set(folds[k]["test"]) & set(seen["train_patients"] + seen["val_patients"])
    assert np.allclose(table[["p0", "p1", "p2", "p3"]].sum(1), 1.0, atol=1e-5)

    # the aggregator's inputs: same videos as out-of-fold, other probabilities for training, test untouched
    oof = table.drop(columns="fold").assign(fold=table["patient_id"].map(test_fold))
    oof = oof.drop_duplicates(["video_id", "frame_index"])
    oof.loc[:, ["p0", "p1", "p2", "p3"]] = np.full((len(oof), 4), 0.25)
    oof.to_parquet(tmp_path / "oof.parquet", index=False)
    plain = load_fold_data(tmp_path / "oof.parquet", paths["folds"], paths["manifest"], 0)
    inner = load_fold_data(tmp_path / "oof.parquet", paths["folds"], paths["manifest"], 0,
                           train_frames_path=out / "inner.parquet")
    assert inner[0].video_ids == plain[0].video_ids and not np.allclose(inner[0].probs, plain[0].probs)
    assert inner[1].video_ids == plain[1].video_ids and np.array_equal(inner[1].probs, plain[1].probs)
    assert inner[2]["train_probabilities"] == "inner cross-fitting"
    assert plain[2]["train_probabilities"] == "out-of-fold"


def test_outer_cross_fit_trains_nothing_and_inner_rows_must_cover_training(tmp_path):
    import stages.train_frame_inner as stage

    paths = _toy(tmp_path)
    out = tmp_path / "run"
    (out / "models" / "pair_0_1").mkdir(parents=True)                 # a stale inner model: removed
    stage.main(_args(paths, _params(tmp_path, "outer"), out))
    assert list((out / "models").iterdir()) == []
    empty = pd.read_parquet(out / "inner.parquet")
    assert len(empty) == 0 and {"video_id", "fold", "p0"} <= set(empty.columns)
    # cross_fit inner with an empty table names the missing videos instead of training on nothing
    manifest = pd.read_csv(paths["manifest"], dtype={"video_id": str, "patient_id": str})
    test_fold = folds_api.test_fold_of(folds_api.load_folds(paths["folds"]))
    frames = pd.DataFrame({"video_id": manifest["video_id"], "patient_id": manifest["patient_id"],
                           "fold": manifest["patient_id"].map(test_fold), "frame_index": 0,
                           "p0": 1.0, "p1": 0.0, "p2": 0.0, "p3": 0.0})
    frames.to_parquet(tmp_path / "f.parquet", index=False)
    with pytest.raises(ValueError, match="no inner cross-fitting rows"):
        load_fold_data(tmp_path / "f.parquet", paths["folds"], paths["manifest"], 1,
                       train_frames_path=out / "inner.parquet")
