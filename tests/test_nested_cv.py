"""Nested patient-wise cross-validation (lus.evaluation.nested_cv) and the CNN-LSTM selection script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lus.config.cnn_lstm import CnnLstmSection
from lus.data.folds import make_folds
from lus.evaluation.nested_cv import load_grid, nested_cv
from tests.test_cnn_lstm import write_video_dataset

ROOT = Path(__file__).resolve().parents[1]


def videos_table(n_patients: int = 15) -> pd.DataFrame:
    return pd.DataFrame([{"video_id": f"v{p:02d}_{v}", "patient_id": f"P{p:02d}", "video_score": p % 4,
                          "diagnosis": ""} for p in range(n_patients) for v in range(2)])


def test_selection_sees_only_training_patients_and_picks_the_best_inner_mean():
    videos = videos_table()
    calls = []

    def score(c, parts, seed):
        calls.append((c, {k: set(v) for k, v in parts.items()}))
        return {"accuracy": [0.2, 0.6, 0.4][c] + 0.01 * len(parts["test"]), "n": len(parts["test"])}

    report = nested_cv(videos, 3, score, "accuracy", seeds=[0, 1], folds=5, inner=3, names=["a", "b", "c"],
                       log=lambda m: None)
    assert report["most_chosen"] == "b" and report["chosen_counts"] == {"b": 10}
    per_outer = 3 * 3 + 1                       # every candidate on every inner fold, then one outer test
    assert len(calls) == 2 * 5 * per_outer
    for s, seed in enumerate((0, 1)):
        outer = make_folds(videos, 5, 0.2, seed)["folds"]    # the pipeline's folds
        for k, fold in enumerate(outer):
            block = calls[(s * 5 + k) * per_outer:(s * 5 + k + 1) * per_outer]
            test = set(fold["test"])
            for _, parts in block[:-1]:          # the choice never touches the outer test patients
                assert not (test & (parts["train"] | parts["val"] | parts["test"]))
                assert parts["test"] and parts["train"]
            chosen, final = block[-1]
            assert chosen == 1 and final["test"] == test and final["train"] == set(fold["train"])
    seed0 = report["seeds"]["0"]
    assert seed0["chosen"] == [1] * 5 and len(seed0["folds"][0]["inner_accuracy"]) == 3
    assert seed0["n_mean"] == pytest.approx(sum(len(f["test"]) for f in make_folds(videos, 5, 0.2, 0)["folds"]) / 5)


def test_ties_go_to_the_first_candidate_and_bad_grids_fail_early(tmp_path):
    report = nested_cv(videos_table(), 2, lambda c, parts, seed: {"accuracy": 0.5}, "accuracy", folds=5,
                       log=lambda m: None)
    assert report["seeds"]["0"]["chosen"] == [0] * 5
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"cnn_lstm": {"hidden": 16}}))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump([{"lr": 0.01}, {"hiden": 8}]))
    with pytest.raises(SystemExit, match=r"candidate 1 \{'hiden': 8\}.*unknown key"):
        load_grid(grid, CnnLstmSection, params)
    grid.write_text(yaml.safe_dump({"lr": 0.01}))
    with pytest.raises(SystemExit, match="expected a non-empty YAML list"):
        load_grid(grid, CnnLstmSection, params)


def test_cnn_lstm_script_chooses_the_configuration_that_learns(tmp_path):
    """Two candidates on videos whose texture gives the diagnosis: one with lr 0 (cannot learn: chance level) and
    one that learns. The script must choose the learner in every outer fold, from inner folds only, and its outer
    estimate must be far above chance."""
    paths = write_video_dataset(tmp_path, n_patients=15, frames=12)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "base": {"seed": 0}, "split": {"folds": [0, 1, 2, 3, 4]},
        "cnn_lstm": {"backbone": "resnet18", "weights": "none", "input_size": 32, "seq_len": 6, "hidden": 32,
                     "fc": [32], "epochs": 25, "batch_size": 8, "lr": 3e-3, "patience": 0, "num_threads": 1}}))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump([{"lr": 0.0}, {"lr": 3e-3}]))
    out = tmp_path / "nested.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "nested_cv_cnn_lstm.py"), "--frames",
                           str(paths["frames"]), "--manifest", str(paths["manifest"]), "--params", str(params),
                           "--grid", str(grid), "--cache", str(tmp_path / "cache"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "LUS_OFFLINE": "1",
                                                                         "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["target"] == "diagnosis" and report["classes"] == ["covid", "pneumonia", "healthy"]
    assert report["seeds"]["0"]["chosen"] == [1] * 5, report["seeds"]["0"]["folds"]
    assert report["accuracy_mean_over_seeds"] > 0.8
    assert "most chosen: {\"lr\": 0.003}" in proc.stdout


def test_cnn_lstm_script_rejects_the_frame_model_backbone(tmp_path):
    paths = write_video_dataset(tmp_path, n_patients=15, frames=4)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump([{"backbone": "frame_model"}]))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"cnn_lstm": {"seq_len": 2}}))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "nested_cv_cnn_lstm.py"), "--frames",
                           str(paths["frames"]), "--manifest", str(paths["manifest"]), "--params", str(params),
                           "--grid", str(grid), "--out", str(tmp_path / "o.json")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode != 0 and "candidate(s) [0] use backbone frame_model" in proc.stderr
    assert not (tmp_path / "o.json").exists()


def test_a_single_candidate_is_plain_cross_validation():
    calls = []
    report = nested_cv(videos_table(), 1, lambda c, parts, seed: calls.append(parts) or {"accuracy": 1.0},
                       "accuracy", folds=5, log=lambda m: None)
    assert len(calls) == 5 and report["seeds"]["0"]["folds"][0]["inner_accuracy"] == []
    assert [set(p["test"]) for p in calls] == [set(f["test"]) for f in make_folds(videos_table(), 5, 0.2, 0)["folds"]]


def test_severity_feature_study_finds_the_texture_that_carries_the_label(tmp_path):
    """Videos whose score is given by line orientation (vertical lines / dark blob / horizontal lines): the
    hand-crafted texture measures (column and row spread per depth band) must recover it on test patients."""
    from lus.models.imagenet import offline_imagenet_file

    if offline_imagenet_file("mobilenet_v2") is None:
        pytest.skip("no offline ImageNet MobileNetV2 weights")
    paths = write_video_dataset(tmp_path, n_patients=15, frames=6)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"split": {"folds": [0, 1, 2, 3, 4]}}))
    out = tmp_path / "study.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "severity_feature_study.py"), "--frames",
                           str(paths["frames"]), "--manifest", str(paths["manifest"]), "--params", str(params),
                           "--size", "32", "--single", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "LUS_OFFLINE": "1",
                                                                         "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["single"]) == {"imagenet_m10", "imagenet_m13", "imagenet_m16", "imagenet_m18", "texture",
                                     "imagenet_all", "texture+imagenet_m18"}
    assert report["single"]["texture"]["0"] > 0.9
    assert len(report["nested"]["seeds"]["0"]["folds"][0]["inner_f1_weighted"]) == 7
    assert report["nested"]["f1_weighted_mean_over_seeds"] > 0.8


def test_frame_script_runs_the_nested_loop_on_the_pipeline_folds(tmp_path):
    """scripts/nested_cv_frame.py end to end on tiny videos (score = texture class): two candidates, every outer
    fold scored once, the outer folds those of the split section."""
    paths = write_video_dataset(tmp_path, n_patients=15, frames=6)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"split": {"folds": [0, 1, 2, 3, 4]}, "frame_model": {
        "arch": "cnn", "input_size": 32, "crop_size": 32, "width": 0.25, "epochs": 2, "batch_size": 16}}))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump([{"lr": 0.0}, {"lr": 0.003}]))
    out = tmp_path / "nested.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "nested_cv_frame.py"), "--frames",
                           str(paths["frames"]), "--manifest", str(paths["manifest"]), "--params", str(params),
                           "--grid", str(grid), "--cache", str(tmp_path / "cache"), "--threads", "1",
                           "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "LUS_OFFLINE": "1",
                                                                         "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    seed0 = report["seeds"]["0"]
    assert report["grid"] == [{"lr": 0.0}, {"lr": 0.003}] and len(seed0["folds"]) == 5
    assert all(len(f["inner_f1_weighted"]) == 2 for f in seed0["folds"])
    manifest = pd.read_csv(paths["manifest"])
    outer = make_folds(manifest, 5, 0.2, 0)["folds"]           # what the split stage makes with these params
    for f, fold in zip(seed0["folds"], outer):               # each outer fold scored its own test patients' videos
        assert sum(f["test"]["predicted_counts"]) == manifest["patient_id"].isin(fold["test"]).sum()
