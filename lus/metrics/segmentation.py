"""Segmentation metrics and the boosted ensemble of METHODS §3.

Classes: 0 background/unannotated, 1..4 = region of score 0..3. Every pixel metric is computed from
one 5x5 confusion matrix accumulated over all test pixels (rows = truth, columns = prediction):

- ``pixel_acc``: 5-class pixel accuracy;
- ``dice_bin``: Dice of the marker union {2, 3, 4} (score 1-3 regions) against the rest;
- ``dice_cat``: mean per-class Dice over the four foreground classes 1..4;
- ``dice_cat_orig``: the original code's mean over {1, 3, 4} (score-1 class excluded);
- ``iou_bin``, ``iou_cat`` and per-class ``dice_c1..dice_c4``; ``dice_bin_frame_mean`` = mean of
  per-frame binary Dice (the optional per-frame variant).

Dice = 2|P ∩ G| / (|P| + |G|) with empty/empty = 1 (a class absent from truth and prediction was
segmented perfectly). Ensemble (:func:`ensemble_labels`): mean of the architectures' softmax outputs,
times the boost vector, argmax; a pixel whose un-boosted argmax is the last class (score 3) stays it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from lus.labels import N_SEG_CLASSES as N_CLASSES
from lus.metrics.classification import confusion_matrix, fold_summary, mean_std  # noqa: F401  (re-exported)

MARKER_CLASSES = (2, 3, 4)
FOREGROUND = (1, 2, 3, 4)
ORIG_CLASSES = (1, 3, 4)
DEFAULT_BOOST = (1.0, 1.0, 2.0, 2.0, 2.0)
METRIC_NAMES = ("pixel_acc", "dice_bin", "dice_cat", "dice_cat_orig", "iou_bin", "iou_cat",
                "dice_c1", "dice_c2", "dice_c3", "dice_c4", "dice_bin_frame_mean")


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Binary Dice of two boolean masks; 1.0 when both are empty."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    denom = int(pred.sum()) + int(true.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(pred, true).sum()) / denom


def confusion(pred: np.ndarray, true: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``(n, n)`` int64 pixel counts, rows = true class, columns = predicted class."""
    pred = np.asarray(pred, np.int64).ravel()
    true = np.asarray(true, np.int64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"prediction and truth differ in size: {pred.size} vs {true.size}")
    if pred.size and (min(pred.min(), true.min()) < 0 or max(pred.max(), true.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return confusion_matrix(true, pred, n_classes)


def _dice_from_counts(tp: float, n_pred: float, n_true: float) -> float:
    return 1.0 if n_pred + n_true == 0 else 2.0 * tp / (n_pred + n_true)


def _iou_from_counts(tp: float, n_pred: float, n_true: float) -> float:
    union = n_pred + n_true - tp
    return 1.0 if union == 0 else tp / union


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """All pixel metrics of the module docstring from a 5x5 confusion matrix."""
    cm = np.asarray(cm, np.float64)
    n_true, n_pred, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    total = cm.sum()
    out: dict[str, float] = {"pixel_acc": float(tp.sum() / total) if total else 1.0}
    per_dice = {c: _dice_from_counts(tp[c], n_pred[c], n_true[c]) for c in range(cm.shape[0])}
    per_iou = {c: _iou_from_counts(tp[c], n_pred[c], n_true[c]) for c in range(cm.shape[0])}
    m = list(MARKER_CLASSES)
    b_tp, b_pred, b_true = cm[np.ix_(m, m)].sum(), cm[:, m].sum(), cm[m, :].sum()
    out["dice_bin"] = _dice_from_counts(b_tp, b_pred, b_true)
    out["dice_cat"] = float(np.mean([per_dice[c] for c in FOREGROUND]))
    out["dice_cat_orig"] = float(np.mean([per_dice[c] for c in ORIG_CLASSES]))
    out["iou_bin"] = _iou_from_counts(b_tp, b_pred, b_true)
    out["iou_cat"] = float(np.mean([per_iou[c] for c in FOREGROUND]))
    for c in FOREGROUND:
        out[f"dice_c{c}"] = float(per_dice[c])
    return {k: float(v) for k, v in out.items()}


def dice_bin(pred: np.ndarray, true: np.ndarray) -> float:
    """Binary marker Dice ({2, 3, 4} vs rest) of label maps."""
    return dice(np.isin(pred, MARKER_CLASSES), np.isin(true, MARKER_CLASSES))


def dice_cat(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean Dice over the foreground classes 1..4 (pooled over all pixels given)."""
    return float(np.mean([dice(np.asarray(pred) == c, np.asarray(true) == c) for c in FOREGROUND]))


def segmentation_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Metrics of label maps ``(N, H, W)`` (pooled over pixels, plus the per-frame binary Dice mean)."""
    pred, true = np.asarray(pred), np.asarray(true)
    out = scores_from_confusion(confusion(pred, true))
    if pred.ndim == 3 and len(pred):
        pm, tm = np.isin(pred, MARKER_CLASSES), np.isin(true, MARKER_CLASSES)
        inter = np.logical_and(pm, tm).sum(axis=(1, 2))
        denom = pm.sum(axis=(1, 2)) + tm.sum(axis=(1, 2))
        per = np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))
        out["dice_bin_frame_mean"] = float(per.mean())
    else:
        out["dice_bin_frame_mean"] = out["dice_bin"]
    return out


def ensemble_labels(probs: Sequence[np.ndarray], boost: Sequence[float] = DEFAULT_BOOST) -> np.ndarray:
    """Boosted ensemble of softmax outputs ``[(N, C, H, W), ...]`` -> labels ``(N, H, W)``.

    Mean over models, multiply class c by ``boost[c]``, argmax; pixels whose un-boosted argmax is the
    last class keep it (with [1, 1, 2, 2, 2] that only decides ties between classes 2..4).
    """
    if not probs:
        raise ValueError("ensemble of zero models")
    mean = np.mean([np.asarray(p, np.float32) for p in probs], axis=0)
    boost_arr = np.asarray(boost, np.float32).reshape((1, -1) + (1,) * (mean.ndim - 2))
    if boost_arr.shape[1] != mean.shape[1]:
        raise ValueError(f"boost has {boost_arr.shape[1]} factors for {mean.shape[1]} classes")
    labels = np.argmax(mean * boost_arr, axis=1)
    last = mean.shape[1] - 1
    labels[np.argmax(mean, axis=1) == last] = last
    return labels.astype(np.uint8)


# ----------------------------------------------------------------------------------- stored test outputs
def quantise_probs(probs: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """Softmax outputs for storage: uint8 (round(255 p)) or float16."""
    if dtype == "uint8":
        return np.clip(np.rint(np.asarray(probs) * 255.0), 0, 255).astype(np.uint8)
    if dtype == "float16":
        return np.asarray(probs).astype(np.float16)
    raise ValueError(f"unknown output dtype {dtype!r}; expected uint8 or float16")


def dequantise_probs(stored: np.ndarray) -> np.ndarray:
    stored = np.asarray(stored)
    return stored.astype(np.float32) / 255.0 if stored.dtype == np.uint8 else stored.astype(np.float32)


def load_test_outputs(path: str | Path) -> dict[str, np.ndarray]:
    """One ``test_outputs.npz`` of a train_segmentation fold.

    Arrays: ``probs`` (N, 5, H, W) uint8 (255 p) or float16, ``masks`` (N, H, W) uint8 truth,
    ``frames`` (N, H, W) uint8 images, ``video_id`` (N,) str, ``frame`` (N,) int32 shard row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"segmentation test outputs not found: {path} (run: dvc repro train_segmentation)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def ensemble_metrics(arch_dirs: Mapping[str, str | Path] | Iterable[str | Path],
                     boost: Sequence[float] = DEFAULT_BOOST) -> tuple[dict[str, float], dict[int, dict[str, np.ndarray]]]:
    """Boosted-ensemble metrics from the architectures' stored test outputs.

    ``arch_dirs``: the ``models/segmentation/<arch>`` folders written by train_segmentation. Folds
    present in every applicable architecture are used; the frames of a fold must match across
    architectures (same folds file and data). Returns ``(flat metrics, {fold: {"labels", "masks",
    "frames_ref"}})``; the metrics carry ``applicable`` 0 when no architecture had masked data.
    """
    import json

    dirs = [Path(d) for d in (arch_dirs.values() if isinstance(arch_dirs, Mapping) else arch_dirs)]
    usable: list[tuple[Path, list[int]]] = []
    for d in dirs:
        meta_path = d / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"segmentation model folder incomplete: {meta_path} missing")
        meta = json.loads(meta_path.read_text())
        if int(meta.get("applicable", 0)):
            usable.append((d, [int(k) for k in meta["folds"]]))
    if not usable:
        return {"applicable": 0.0, "n_models": 0.0}, {}
    folds = sorted(set.intersection(*(set(f) for _, f in usable)))
    if not folds:
        raise ValueError("segmentation ensemble: the architectures share no fold; train them on the same "
                         "segmentation.folds")
    per_fold: dict[int, dict[str, float]] = {}
    outputs: dict[int, dict[str, np.ndarray]] = {}
    for k in folds:
        loaded = [load_test_outputs(d / f"fold_{k}" / "test_outputs.npz") for d, _ in usable]
        ref = loaded[0]
        for d_out, (d, _) in zip(loaded[1:], usable[1:]):
            if not (np.array_equal(d_out["video_id"], ref["video_id"]) and np.array_equal(d_out["frame"], ref["frame"])):
                raise ValueError(f"segmentation ensemble: fold {k} test frames of {d} differ from {usable[0][0]}; "
                                 "retrain all architectures on the same data and folds")
        labels = ensemble_labels([dequantise_probs(o["probs"]) for o in loaded], boost)
        per_fold[k] = segmentation_scores(labels, ref["masks"])
        outputs[k] = {"labels": labels, "masks": ref["masks"], "video_id": ref["video_id"], "frame": ref["frame"]}
        if "frames" in ref:
            outputs[k]["frames"] = ref["frames"]
    out = {"applicable": 1.0, "n_models": float(len(usable))}
    out.update(fold_summary(per_fold))
    return out, outputs
