"""Patient-level COVID detection: the tuned threshold never sees the test fold."""
import numpy as np
import pandas as pd

from lus.metrics.patient import best_threshold, patient_covid_detection


def test_best_threshold_separates_and_picks_middle_of_ties():
    assert best_threshold(np.array([0.0, 0.5, 2.0, 3.0]), np.array([0, 0, 1, 1])) == 1.25
    # all negative: any threshold above the max is perfect; the middle candidate is returned deterministically
    t = best_threshold(np.array([1.0, 2.0]), np.array([0, 0]))
    assert t > 2.0


def _fold(patients, preds):
    return pd.DataFrame({"patient_id": patients, "pred_uninorm": preds})


def test_rule_and_tuned_accuracy_by_hand():
    # fold 0: p0 (neg, mean 0.5), p1 (pos, mean 2); fold 1: p2 (neg, 1.5), p3 (pos, 3)
    per_fold = {0: _fold(["p0", "p0", "p1"], [0, 1, 2]), 1: _fold(["p2", "p3"], [1.5, 3])}
    covid = {"p0": 0, "p1": 1, "p2": 0, "p3": 1}
    m = patient_covid_detection(per_fold, covid, ["uninorm"])
    # rule (>= 1): fold 0 both right; fold 1: p2 wrongly positive
    assert m["uninorm.rule_accuracy_fold0"] == 1.0 and m["uninorm.rule_accuracy_fold1"] == 0.5
    # tuned on fold 1's patients (1.5 neg, 3 pos) -> 2.25, applied to fold 0: p1 (2.0) missed
    assert m["uninorm.tuned_threshold_fold0"] == 2.25
    assert m["uninorm.tuned_accuracy_fold0"] == 0.5
    # tuned on fold 0 (0.5 neg, 2 pos) -> 1.25, applied to fold 1: p2 (1.5) wrongly positive
    assert m["uninorm.tuned_threshold_fold1"] == 1.25
    assert m["uninorm.tuned_accuracy_fold1"] == 0.5
    assert m["uninorm.tuned_accuracy_mean"] == 0.5 and m["uninorm.tuned_accuracy_std"] == 0.0
    assert m["uninorm.rule_accuracy_pooled"] == 0.75
    assert m["n_patients"] == 4.0


def test_unlabelled_patients_are_left_out():
    per_fold = {0: _fold(["p0", "px"], [0, 3]), 1: _fold(["p1"], [2])}
    m = patient_covid_detection(per_fold, {"p0": 0, "p1": 1}, ["uninorm"])
    assert m["n_patients"] == 2.0
