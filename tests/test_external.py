"""Cross-dataset protocol (lus external): labels, patient pooling metrics, C chosen on the training source only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lus.evaluation.external import auc, balanced_accuracy, choose_c, covid_labels, markdown


def test_covid_labels_from_diagnosis_else_the_patients_test():
    manifest = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "patient_id": ["p1", "p1", "p2", "p3"],
                             "diagnosis": ["covid", "pneumonia", None, None],
                             "covid_positive": [np.nan, np.nan, 1, np.nan]})
    assert covid_labels(manifest).tolist() == [1, 0, 1, -1]


def test_auc_and_balanced_accuracy():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(y, np.full(4, 0.5)) == 0.5                     # ties count half
    assert np.isnan(auc(np.ones(3, int), np.arange(3.0)))
    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5   # the majority guess


def test_choose_c_uses_grouped_folds_of_the_training_data():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 3)
    y = (groups % 2).astype(int)                              # one label per patient
    x = rng.normal(size=(60, 8)) + y[:, None] * 1.5           # separable enough
    c, scores = choose_c(x, y, groups, [0.001, 0.1, 10.0], n_splits=4, seed=0, max_iter=200)
    assert set(scores) == {0.001, 0.1, 10.0} and c in scores
    assert scores[c] == max(scores.values()) and scores[c] > 0.8


def test_markdown_states_the_verdict_against_chance():
    m = {"patient.accuracy": 0.5, "patient.sensitivity": 0.9, "patient.specificity": 0.1,
         "patient.balanced_accuracy": 0.5, "patient.auc": 0.55, "chance.patient_accuracy_majority": 0.52,
         "chance.patient_accuracy_random": 0.5, "n_test_patients": 50, "n_test_positive": 26, "n_test_videos": 300,
         "n_train_videos": 100, "n_train_patients": 90, "c": 0.1, "video.auc": 0.5}
    from lus.config.baselines import BaselinesSection

    text = markdown("pocus", "covid-blues", m, 112, 16, BaselinesSection())
    assert "**at or below**" in text and "| this model (zero-shot) | 50.0 | 90.0 | 10.0 | 50.0 | 55.0 |" in text
    assert "**above**" in markdown("pocus", "covid-blues", {**m, "patient.accuracy": 0.7}, 112, 16, BaselinesSection())


def test_same_source_twice_is_refused(tmp_path):
    from lus.config.baselines import BaselinesSection
    from lus.config.extract import ExtractSection
    from lus.evaluation.external import run_external

    with pytest.raises(ValueError, match="two different sources"):
        run_external("pocus", "pocus", tmp_path, ExtractSection(), BaselinesSection(), tmp_path / "out",
                     tmp_path / "work", input_size=112, max_frames=16)
