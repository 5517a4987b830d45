"""Video-level severity metrics (METHODS.md §2.9) and their summary over folds.

Per fold: weighted F1, precision and recall (weights = class support; classes without support
contribute nothing, undefined precision counts as 0 as in sklearn's default), accuracy, and
COVID/no-COVID accuracy on binarised scores (0 vs 1-3). Across folds: mean and population std
(ddof = 0), plus the same metrics pooled over all folds' test videos.

All values are fractions in [0, 1]. The summary is a nested dict of numbers only, so
``dvc metrics diff`` shows every value.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lus.metrics.classification import weighted_prf

METRICS = ("f1_weighted", "precision_weighted", "recall_weighted", "accuracy", "covid_accuracy")
PRED_PREFIX = "pred_"


def video_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> dict[str, float]:
    """The five video metrics of one set of predictions."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        raise ValueError("cannot compute video metrics without videos")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    p, r, f = weighted_prf(y_true, y_pred)
    return {
        "f1_weighted": float(f),
        "precision_weighted": float(p),
        "recall_weighted": float(r),
        "accuracy": float(np.mean(y_true == y_pred)),
        "covid_accuracy": float(np.mean(np.minimum(y_true, 1) == np.minimum(y_pred, 1))),
    }


def prediction_methods(frame: pd.DataFrame) -> list[str]:
    """Method names of the ``pred_<method>`` columns, in column order."""
    return [c[len(PRED_PREFIX):] for c in frame.columns if c.startswith(PRED_PREFIX)]


def fold_metrics(predictions: pd.DataFrame, label_col: str = "label") -> dict[str, dict[str, float] | int]:
    """``{"n_videos": n, <method>: {metric: value}}`` for one fold's prediction table."""
    known = predictions[predictions[label_col] >= 0]
    out: dict[str, dict[str, float] | int] = {"n_videos": int(len(known))}
    if len(known):
        for method in prediction_methods(known):
            out[method] = video_metrics(known[label_col], known[PRED_PREFIX + method])
    return out


def summarize_folds(per_fold_prediction_frames: Sequence[pd.DataFrame] | Mapping[int, pd.DataFrame],
                    label_col: str = "label") -> dict:
    """Summarise per-fold prediction tables (as written by ``train_aggregator``) into flat metrics.

    Input: one DataFrame per fold with ``label`` and ``pred_<method>`` columns (a mapping fold id ->
    frame, or a sequence; fold ids then come from a constant ``fold`` column, else the position).
    Videos with label < 0 are ignored; folds without labelled videos are skipped.

    Output::

        {"n_folds": k, "n_videos": n,
         "<method>": {"<metric>_mean": .., "<metric>_std": .. (ddof=0), "<metric>_pooled": ..,
                      "<metric>_fold<k>": .., ...}, ...}

    for every metric in :data:`METRICS` and every method present in all folds (``uninorm``,
    ``argmax_mean``, ``max_argmax``, ``majority``, ``threshold_count_5/10/15``, ...).
    """
    items = (list(per_fold_prediction_frames.items()) if isinstance(per_fold_prediction_frames, Mapping)
             else list(enumerate(per_fold_prediction_frames)))
    folds: list[tuple[int, pd.DataFrame]] = []
    for pos, frame in items:
        frame = frame[frame[label_col] >= 0]
        if len(frame) == 0:
            continue
        fold_id = pos
        if not isinstance(per_fold_prediction_frames, Mapping) and "fold" in frame.columns \
                and frame["fold"].nunique() == 1:
            fold_id = int(frame["fold"].iloc[0])
        folds.append((int(fold_id), frame))
    if not folds:
        raise ValueError("summarize_folds: no fold has labelled test videos")
    ids = [k for k, _ in folds]
    if len(set(ids)) != len(ids):
        raise ValueError(f"summarize_folds: repeated fold ids {ids}")
    methods = [m for m in prediction_methods(folds[0][1]) if all(PRED_PREFIX + m in f.columns for _, f in folds)]
    pooled = pd.concat([f for _, f in folds], ignore_index=True)
    out: dict = {"n_folds": len(folds), "n_videos": int(len(pooled))}
    for method in methods:
        col = PRED_PREFIX + method
        out[method] = _method_entry({k: (f[label_col].to_numpy(), f[col].to_numpy()) for k, f in folds})
    return out


def _method_entry(per_fold: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``<metric>_mean/_std/_pooled`` and ``<metric>_fold<k>`` of one method from ``{fold: (y_true, y_pred)}``."""
    ids = list(per_fold)
    metrics = {k: video_metrics(*per_fold[k]) for k in ids}
    pooled = video_metrics(np.concatenate([per_fold[k][0] for k in ids]), np.concatenate([per_fold[k][1] for k in ids]))
    entry: dict[str, float] = {}
    for metric in METRICS:
        values = np.array([metrics[k][metric] for k in ids])
        entry[f"{metric}_mean"] = float(values.mean())
        entry[f"{metric}_std"] = float(values.std(ddof=0))
        entry[f"{metric}_pooled"] = pooled[metric]
    for k in ids:
        for metric in METRICS:
            entry[f"{metric}_fold{k}"] = metrics[k][metric]
    return entry


def video_summary(per_fold: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> dict[str, float]:
    """One method's entry of :func:`summarize_folds` (``<metric>_mean/_std/_pooled/_fold<k>``) from
    ``{fold: (y_true, y_pred)}``: the layout of the aggregator methods in ``metrics/video.json``."""
    return _method_entry({k: (np.asarray(t, np.int64), np.asarray(p, np.int64)) for k, (t, p) in per_fold.items()})
