"""Chance levels, the linear probe and their rows in the report (stage `baselines`)."""

from __future__ import annotations

import numpy as np
import pytest

from lus.metrics.chance import (class_frequencies, expected_random_accuracy, majority_class, mean_of_trees,
                                random_guesses)
from lus.metrics.classification import accuracy_summary, class_summary
from lus.metrics.video import summarize_folds, video_summary
from lus.train.baselines import Task, task_baselines
from lus.train.linear_probe import fit_probe


def accuracy(t, p):
    return float(np.mean(t == p))


def test_majority_class_and_frequencies():
    assert majority_class([2, 2, 1, 0, -1, -1, -1], 4) == 2        # unlabelled items do not count
    assert majority_class([1, 3, 3, 1], 4) == 1                     # ties: the lowest class
    assert class_frequencies([0, 0, 3, -1], 4).tolist() == [2 / 3, 0, 0, 1 / 3]
    with pytest.raises(ValueError, match="no labelled"):
        class_frequencies([-1, -1], 4)
    with pytest.raises(ValueError, match="outside"):
        class_frequencies([0, 4], 4)


def test_random_guess_matches_its_closed_form():
    rng = np.random.default_rng(1)
    train = rng.choice(3, 200, p=[0.6, 0.3, 0.1])
    test = rng.choice(3, 300, p=[0.2, 0.2, 0.6])
    guesses = random_guesses(train, len(test), 3, 4000, np.random.default_rng(0))
    mc = float((guesses == test).mean())
    assert mc == pytest.approx(expected_random_accuracy(train, test, 3), abs=0.005)
    # the frequencies really are the training ones, not uniform (uniform would give 1/3)
    assert expected_random_accuracy(train, test, 3) < 0.3


def test_mean_of_trees_is_leafwise():
    trees = [{"a": 1.0, "b": {"c": 2.0}}, {"a": 3.0, "b": {"c": 6.0}}]
    assert mean_of_trees(trees) == {"a": 2.0, "b": {"c": 4.0}}


def test_video_summary_is_the_aggregator_layout():
    import pandas as pd

    folds = {0: (np.array([0, 1, 2, 3]), np.array([0, 1, 1, 3])), 1: (np.array([2, 2, 0]), np.array([2, 0, 0]))}
    frames = {k: pd.DataFrame({"label": t, "pred_m": p}) for k, (t, p) in folds.items()}
    assert video_summary(folds) == summarize_folds(frames)["m"]


def test_accuracy_and_class_summaries():
    folds = {0: (np.array([0, 1, 1]), np.array([0, 1, 0])), 1: (np.array([2, 2]), np.array([2, 2]))}
    acc = accuracy_summary(folds)
    assert acc["accuracy"] == pytest.approx(4 / 5)                       # pooled over items
    assert acc["accuracy_mean"] == pytest.approx((2 / 3 + 1) / 2)        # mean over folds
    assert acc["accuracy_fold0"] == pytest.approx(2 / 3)
    cls = class_summary(folds, ["a", "b", "c"])
    assert cls["accuracy_mean"] == acc["accuracy_mean"] and cls["pooled.accuracy"] == acc["accuracy"]


def _blobs(n: int, d: int, rng: np.random.Generator, shift: float = 2.5):
    y = rng.integers(0, 3, n)
    centres = np.zeros((3, d))
    centres[np.arange(3), np.arange(3)] = shift
    return centres[y] + rng.normal(size=(n, d)), y


def test_probe_learns_a_linear_signal_and_picks_c_on_validation():
    rng = np.random.default_rng(0)
    x, y = _blobs(300, 20, rng)
    xv, yv = _blobs(100, 20, rng)
    xt, yt = _blobs(200, 20, rng)
    fit = fit_probe(x, y, xv, yv, 3, [1e-4, 1e-2, 1.0], accuracy)
    assert accuracy(yt, fit.predict(xt)) > 0.85
    assert set(fit.val_scores) == {1e-4, 1e-2, 1.0}
    assert fit.val_scores[fit.c] == max(fit.val_scores.values())
    proba = fit.predict_proba(xt)
    assert proba.shape == (200, 3) and np.allclose(proba.sum(1), 1.0)


def test_probe_with_few_items_equals_the_unprojected_fit():
    """n < d: fitting in the span of the training items gives the same classifier as the full space."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x, y = _blobs(30, 200, rng, shift=1.5)
    xt, _ = _blobs(50, 200, rng, shift=1.5)
    fit = fit_probe(x, y, x[:0], y[:0], 3, [0.1], accuracy, max_iter=5000)
    assert fit._basis is not None and fit._basis.shape[0] <= 30
    mean, scale = x.mean(0), x.std(0)
    full = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit((x - mean) / scale, y)
    assert np.abs(fit.predict_proba(xt) - full.predict_proba((xt - mean) / scale)).max() < 1e-3


def test_probe_single_training_class_and_absent_classes():
    x = np.random.default_rng(0).normal(size=(10, 4))
    fit = fit_probe(x, np.full(10, 2), x, np.full(10, 2), 4, [1.0], accuracy)
    assert fit.predict(x).tolist() == [2] * 10 and fit.predict_proba(x)[:, 2].tolist() == [1.0] * 10
    y = np.array([0, 3] * 5)                                   # classes 1 and 2 never seen in training
    proba = fit_probe(x, y, x, y, 4, [1.0], accuracy).predict_proba(x)
    assert proba.shape == (10, 4) and not proba[:, 1:3].any()


def _task(rng, informative: bool, unit: bool = False):
    patients = np.array([f"p{i}" for i in range(30)], dtype=object)
    patient = np.repeat(patients, 4)                            # 4 items (videos) per patient
    label_of_patient = rng.integers(0, 2, 30)
    y = np.repeat(label_of_patient, 4)
    x = rng.normal(size=(len(y), 8)) + (3.0 * y[:, None] if informative else 0.0)
    folds = [{"test": list(patients[k::3]), "val": list(patients[(k + 1) % 3::3][:3]),
              "train": [p for p in patients if p not in set(patients[k::3]) | set(patients[(k + 1) % 3::3][:3])]}
             for k in range(3)]
    return Task("t", ["neg", "pos"], y, x, patient, unit=patient if unit else None), folds, label_of_patient


def test_task_baselines_on_an_informative_and_a_noise_feature():
    rng = np.random.default_rng(0)
    task, folds, _ = _task(rng, informative=True)
    out = task_baselines(task, folds, accuracy_summary, c_grid=[0.01, 1.0], score=accuracy, draws=200, seed=0)
    assert set(out) == {"chance_prior", "chance_random", "linear_probe"}
    assert out["linear_probe"]["accuracy"] > 0.95
    assert 0.3 < out["chance_random"]["accuracy"] < 0.7
    assert {"C_fold0", "C_fold1", "C_fold2"} <= set(out["linear_probe"])
    # chance_prior = the training majority of each fold, exactly
    for k, fold in enumerate(folds):
        train = np.isin(task.patient, fold["train"])
        test = np.isin(task.patient, fold["test"])
        expected = np.mean(task.y[test] == majority_class(task.y[train], 2))
        assert out["chance_prior"][f"accuracy_fold{k}"] == pytest.approx(expected)
    noise, folds, _ = _task(np.random.default_rng(1), informative=False)
    out = task_baselines(noise, folds, accuracy_summary, c_grid=[0.01, 1.0], score=accuracy, draws=200, seed=0)
    assert out["linear_probe"]["accuracy"] < 0.75                # nothing to learn: near chance


def test_task_baselines_pool_items_per_unit():
    """Patient-level evaluation: one prediction per test patient, chance counted over patients."""
    task, folds, label_of_patient = _task(np.random.default_rng(2), informative=True, unit=True)
    out = task_baselines(task, folds, accuracy_summary, c_grid=[1.0], score=accuracy, draws=100, seed=0)
    n_test_patients = sum(len(f["test"]) for f in folds)
    assert out["linear_probe"]["accuracy"] > 0.95
    # the pooled accuracy is a share of patients: a multiple of 1/30, not of 1/120
    assert out["chance_prior"]["accuracy"] * n_test_patients == pytest.approx(
        round(out["chance_prior"]["accuracy"] * n_test_patients))


def test_report_says_when_a_model_is_at_chance():
    from lus.report.tables import table2, verdict

    base = {"chance_prior": {"f1_weighted_mean": 0.20}, "chance_random": {"f1_weighted_mean": 0.28},
            "linear_probe": {"f1_weighted_mean": 0.34}}
    assert "at or below chance" in verdict("uninorm", 0.17, base, "f1_weighted_mean")
    assert "not above the linear probe" in verdict("uninorm", 0.30, base, "f1_weighted_mean")
    assert "above chance and above the linear probe" in verdict("uninorm", 0.5, base, "f1_weighted_mean")
    video = {"applicable": 1, "n_videos": 10, "n_folds": 2, "uninorm": {"f1_weighted_mean": 0.169},
             "baselines": {m: {"f1_weighted_mean": v["f1_weighted_mean"], "f1_weighted_std": 0.0}
                           for m, v in base.items()}}
    text = table2(video)
    assert "*linear probe: frozen ImageNet features + logistic regression*" in text
    assert "**uninorm**: 16.9 (chance 20.0 / 28.0, linear probe 34.0): **at or below chance" in text


@pytest.mark.slow
def test_pipeline_reports_chance_and_probe_beside_every_model(tiny_repo):
    """The tiny end-to-end run: every table of the report and every metrics group carries the reference rows."""
    import json

    report = (tiny_repo / "metrics" / "report.md").read_text()
    assert "Frame model trained on: frame labels." in report   # the report names the supervision used
    for section in ("## Table 1", "## Table 2", "## Patient-level COVID-19", "## CNN-LSTM"):
        part = report.split(section, 1)[1].split("\n## ", 1)[0]
        assert "*chance: most frequent training class*" in part, section
        assert "*linear probe: frozen ImageNet features + logistic regression*" in part, section
    video = json.loads((tiny_repo / "metrics" / "video.json").read_text())["video"]
    for method in ("chance_prior", "chance_random", "linear_probe"):
        assert 0.0 <= video["baselines"][method]["f1_weighted_mean"] <= 1.0
        assert method in video["patient_covid_baselines"]
    cnn = json.loads((tiny_repo / "metrics" / "cnn_lstm.json").read_text())["cnn_lstm"]
    assert set(cnn["baselines"]) == {"chance_prior", "chance_random", "linear_probe"}
    frame = json.loads((tiny_repo / "metrics" / "frame.json").read_text())["frame"]
    assert "accuracy" in frame["baselines"]["linear_probe"]


def test_stage_refuses_bad_probe_params_before_any_work(tmp_path):
    """A non-positive regularisation value stops the stage with one line naming the key; nothing is written."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import PROJECT_ROOT

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["baselines"]["c_grid"] = [0.1, 0.0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "baselines"
    proc = subprocess.run([sys.executable, "-m", "stages.baselines", "--params", str(tmp_path / "params.yaml"),
                           "--frames", str(tmp_path / "missing"), "--out", str(out)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: params key 'baselines.c_grid': expected positive values, got [0.1, 0.0]")
    assert not out.exists()
