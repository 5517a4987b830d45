"""Video-classification metrics in the layout of Barros et al.'s evaluation table (METHODS §4, §5.3).

Per fold: ``accuracy`` and, per class, ``precision``, ``recall`` (= sensitivity), ``f1`` and one-vs-rest
``specificity`` TN / (TN + FP), plus ``support``, ``f1_macro`` and ``f1_weighted``. Across folds:
mean and **population** std (ddof = 0), as METHODS §2.9 fixes for every fold summary. Keys are flat
and numeric (``covid.precision``, ``fold_2.accuracy``, ``accuracy_mean``) so ``dvc metrics diff``
works. Undefined ratios (no predicted or no true item of a class) are 0, as sklearn's
``zero_division=0``; ``support`` tells when that happened.

Evaluate stage entry point: :func:`summarise_cnn_lstm` over the ``models/cnn_lstm/fold_<k>`` folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted class; labels are indices 0..k-1."""
    if len(y_true) == 0:
        return np.zeros((k, k), np.int64)
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def per_class_prf(y_true: Sequence[int], y_pred: Sequence[int], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class 0..k-1: precision, recall, F1 and true count (support); undefined ratios are 0 (sklearn's
    ``zero_division=0``). numpy only, so a small stage or a validation pass does not pay scikit-learn's import."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    tp, n_pred, n_true = np.diag(cm).astype(float), cm.sum(0).astype(float), cm.sum(1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = np.where(n_true > 0, tp / n_true, 0.0)
        f1 = np.where(n_pred + n_true > 0, 2 * tp / (n_pred + n_true), 0.0)
    return precision, recall, f1, n_true


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], k: int = 4) -> float:
    """Mean F1 over the classes of 0..k-1 that occur in ``y_true`` or ``y_pred`` (the project's one macro-F1).

    This is scikit-learn's default ``f1_score(average="macro", zero_division=0)``: a class that is
    neither true nor predicted has no defined F1 and is left out (counting it as 0 would lower the score
    for what the data lacks, e.g. a fold or an agreement subset without score-3 frames); a class that is
    predicted but never true has F1 0 and counts (its false positives are not hidden). 0.0 for empty input.
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    _, _, f1, n_true = per_class_prf(y_true, y_pred, k)
    seen = (n_true > 0) | (np.bincount(y_pred, minlength=k)[:k] > 0)
    return float(np.mean(f1[seen])) if seen.any() else 0.0


def weighted_prf(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[float, float, float]:
    """Support-weighted precision, recall and F1 (sklearn ``average="weighted", zero_division=0``).

    Over the classes present in either array; a class that is never predicted has precision 0, a class
    without true items has weight 0."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if len(y_true) == 0 or len(y_true) != len(y_pred) or min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("weighted_prf needs equally long, non-empty arrays of class indices >= 0")
    *ratios, n_true = per_class_prf(y_true, y_pred, int(max(y_true.max(), y_pred.max())) + 1)
    return tuple(float(np.average(m, weights=n_true)) for m in ratios)  # sklearn's order of operations


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, float]:
    """Flat per-fold metrics; labels are indices into ``classes``."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    n = cm.sum()
    out: dict[str, float] = {"accuracy": _ratio(np.trace(cm), n), "n": float(n)}
    f1s, supports = [], []
    for c, name in enumerate(classes):
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        tn = n - tp - fp - fn
        prec, rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * prec * rec, prec + rec)
        out[f"{name}.precision"] = prec
        out[f"{name}.recall"] = rec
        out[f"{name}.f1"] = f1
        out[f"{name}.specificity"] = _ratio(tn, tn + fp)
        out[f"{name}.support"] = float(tp + fn)
        f1s.append(f1)
        supports.append(tp + fn)
    # the one macro-F1 definition (:func:`macro_f1`: classes true or predicted), averaged over the per-class
    # F1 values reported above so the row reads consistently (same numbers up to the last bit)
    seen = [s > 0 or cm[:, c].sum() > 0 for c, s in enumerate(supports)]
    out["f1_macro"] = float(np.mean([f for f, s in zip(f1s, seen) if s])) if any(seen) else 0.0
    out["f1_weighted"] = _ratio(float(np.dot(f1s, supports)), float(np.sum(supports)))
    return out


def confusion_rows(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """Rows ``actual, predicted`` (class names) for DVC confusion plots."""
    return pd.DataFrame({"actual": [classes[int(i)] for i in y_true],
                         "predicted": [classes[int(i)] for i in y_pred]})


def mean_std(rows: Sequence[Mapping[str, float]], prefix: str = "") -> dict[str, float]:
    """``{prefix}{name}_mean`` / ``_std`` (population std, ddof = 0) over folds of flat dicts."""
    out: dict[str, float] = {}
    if not rows:
        return out
    for name in rows[0]:
        vals = np.array([float(r[name]) for r in rows], np.float64)
        out[f"{prefix}{name}_mean"] = float(vals.mean())
        out[f"{prefix}{name}_std"] = float(vals.std(ddof=0))
    return out


def fold_summary(per_fold: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Flat ``fold_<k>.<metric>`` entries plus ``<metric>_mean`` / ``<metric>_std`` over folds."""
    out: dict[str, float] = {"n_folds": float(len(per_fold))}
    for k, row in sorted(per_fold.items()):
        out.update({f"fold_{k}.{name}": float(v) for name, v in row.items()})
    out.update(mean_std([per_fold[k] for k in sorted(per_fold)]))
    return out


def read_fold_predictions(fold_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """``predictions.csv`` (video_id, patient_id, actual, predicted, p_<class>...) and the class list."""
    fold_dir = Path(fold_dir)
    meta_path, pred_path = fold_dir / "meta.json", fold_dir / "predictions.csv"
    for p in (meta_path, pred_path):
        if not p.is_file():
            raise FileNotFoundError(f"CNN-LSTM fold output not found: {p} (run: dvc repro train_cnn_lstm)")
    classes = list(json.loads(meta_path.read_text())["classes"])
    return pd.read_csv(pred_path, dtype={"video_id": str, "patient_id": str}), classes


def summarise_cnn_lstm(fold_dirs: Iterable[str | Path]) -> tuple[dict[str, float], pd.DataFrame]:
    """Flat metrics (per fold, mean ± population std, pooled) and pooled confusion rows.

    ``fold_dirs``: ``models/cnn_lstm/fold_<k>`` folders (the fold id is read from the folder name).
    Keys: ``fold_<k>.<metric>``, ``<metric>_mean``, ``<metric>_std``, ``pooled.<metric>``, ``n_folds``.
    """
    per_fold: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pooled, classes_ref = [], None
    for d in fold_dirs:
        d = Path(d)
        try:
            k = int(d.name.rsplit("_", 1)[-1])
        except ValueError:
            raise ValueError(f"{d}: expected a folder named fold_<k>") from None
        preds, classes = read_fold_predictions(d)
        if classes_ref is not None and classes != classes_ref:
            raise ValueError(f"{d}: classes {classes} differ from other folds' {classes_ref}")
        classes_ref = classes
        idx = {c: i for i, c in enumerate(classes)}
        per_fold[k] = (preds["actual"].astype(str).map(idx).to_numpy(), preds["predicted"].astype(str).map(idx).to_numpy())
        pooled.append(preds[["actual", "predicted"]].astype(str))
    if not per_fold:
        raise ValueError("summarise_cnn_lstm: no fold folders given")
    return class_summary(per_fold, classes_ref), pd.concat(pooled, ignore_index=True)


def accuracy_summary(per_fold: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> dict[str, float]:
    """``accuracy`` pooled over all folds' items, ``accuracy_mean`` / ``_std`` (population) over folds and
    ``accuracy_fold<k>``, from ``{fold: (y_true, y_pred)}``."""
    per = {k: float(np.mean(np.asarray(t) == np.asarray(p))) for k, (t, p) in sorted(per_fold.items())}
    hits = np.concatenate([np.asarray(t) == np.asarray(p) for t, p in per_fold.values()])
    values = np.array(list(per.values()))
    return {"accuracy": float(hits.mean()), "accuracy_mean": float(values.mean()),
            "accuracy_std": float(values.std(ddof=0)), **{f"accuracy_fold{k}": v for k, v in per.items()}}


def class_summary(per_fold: Mapping[int, tuple[Sequence[int], Sequence[int]]], classes: Sequence[str]) -> dict[str, float]:
    """:func:`classification_scores` per fold, their mean ± std and the pooled scores (``pooled.<metric>``):
    the layout :func:`summarise_cnn_lstm` gives the CNN-LSTM, from ``{fold: (y_true, y_pred)}``."""
    out = fold_summary({k: classification_scores(t, p, classes) for k, (t, p) in per_fold.items()})
    y_true = np.concatenate([np.asarray(t) for t, _ in per_fold.values()])
    y_pred = np.concatenate([np.asarray(p) for _, p in per_fold.values()])
    out.update({f"pooled.{k}": v for k, v in classification_scores(y_true, y_pred, classes).items()})
    return out
