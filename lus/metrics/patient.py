"""Patient-level COVID-19 detection from predicted video scores (covid-blues task, Wiedemann et al. 2025).

A patient's score is the mean predicted severity of their videos (the BLUE protocol scans six points;
COVID-19 pneumonia is bilateral and multifocal, so the mean over points is the natural summary).
Two decision rules, both evaluated on each fold's *test* patients only:

- ``rule``: positive when the mean score is >= 1 (any B-line pattern on average; no training at all,
  the analogue of the paper's zero-shot setting);
- ``tuned``: the threshold that maximises accuracy on the patients of the *other* folds (their
  predictions are out-of-fold as well), applied to the test fold: nothing of the test fold is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd


def patient_scores(predictions: pd.DataFrame, column: str) -> pd.Series:
    """Mean predicted video score per patient (index = patient_id)."""
    return predictions.groupby(predictions["patient_id"].astype(str))[column].mean()


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """Threshold t (predict positive when score >= t) with the highest accuracy; ties -> the middle one."""
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]])
    acc = np.array([np.mean((scores >= t) == positive) for t in candidates])
    best = np.flatnonzero(acc == acc.max())
    return float(candidates[best[len(best) // 2]])


def patient_covid_detection(per_fold: Mapping[int, pd.DataFrame], covid_of_patient: Mapping[str, int],
                            methods: Iterable[str]) -> dict[str, float]:
    """Flat metrics ``<method>.<rule>_accuracy_{fold<k>,mean,std,pooled}`` and ``n_patients``.

    ``per_fold[k]`` holds fold k's test-video predictions (``patient_id``, ``pred_<method>``);
    patients without a COVID label are left out.
    """
    labelled = {str(p): int(v) for p, v in covid_of_patient.items() if v in (0, 1)}
    out: dict[str, float] = {}
    folds = sorted(per_fold)
    for method in methods:
        column = f"pred_{method}"
        scores = {k: patient_scores(per_fold[k], column) for k in folds if column in per_fold[k]}
        scores = {k: s[s.index.isin(list(labelled))] for k, s in scores.items()}
        if not scores or sum(len(s) for s in scores.values()) == 0:
            continue
        hits: dict[str, list[np.ndarray]] = {"rule": [], "tuned": []}
        for k, test in scores.items():
            if len(test) == 0:
                continue
            y = np.array([labelled[p] for p in test.index])
            others = pd.concat([s for j, s in scores.items() if j != k])
            y_others = np.array([labelled[p] for p in others.index])
            threshold = best_threshold(others.to_numpy(float), y_others) if len(others) else 1.0
            for rule, t in (("rule", 1.0), ("tuned", threshold)):
                correct = (test.to_numpy(float) >= t) == y
                hits[rule].append(correct)
                out[f"{method}.{rule}_accuracy_fold{k}"] = float(correct.mean())
            out[f"{method}.tuned_threshold_fold{k}"] = threshold
        for rule, parts in hits.items():
            fold_acc = np.array([p.mean() for p in parts])
            out[f"{method}.{rule}_accuracy_mean"] = float(fold_acc.mean())
            out[f"{method}.{rule}_accuracy_std"] = float(fold_acc.std())  # population std, as for the video metrics
            out[f"{method}.{rule}_accuracy_pooled"] = float(np.concatenate(parts).mean())
        out["n_patients"] = float(sum(len(s) for s in scores.values()))
    return out
