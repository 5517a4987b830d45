"""Frame-level metrics of Table 1 (METHODS §1.7): regular, drop-K transition frames, annotator agreement.

Input is the frame table of ``predict_frames`` (``data/predictions/frames.parquet``: ``video_id, fold,
label, weak_label, p0..p3`` in temporal order per video) and optionally the per-video annotator arrays
of the shards (``annotators`` (A, T), aligned with the shard frames, i.e. with the table's rows of that
video). Prediction = argmax of p0..p3 (crop 1).

Only frames with a true frame label (``label >= 0``) are scored. Weak labels (video score given to every
frame, the only frame target of covid-blues) are scored separately as ``weak_label.*``.

Settings (``<scope>.<setting>.<metric>``; scope ``pooled`` or ``fold<k>``):
- ``regular``: all labelled frames.
- ``drop_k{K}``, K in 1, 3, 5, 7: for each boundary b of a video with y[b-1] != y[b], frames b-K .. b+K-1 are
  removed (K on each side; METHODS marks the per-side reading as uncertain).
- ``video_ann``: frames whose label equals the video score; ``a3`` / ``a4``: frames on which >= 3 / all 4
  annotators agree with the label (only videos whose shards have ``annotators``; absent -> keys omitted).

Metrics: ``accuracy`` (= sklearn micro-F1, comparable with Table 1), ``f1_macro``, ``f1_weighted``,
``recall_<c>``, ``n`` (frames). ``pooled.avg.accuracy`` averages the settings as Table 1's last column.
Use :func:`frame_metrics` for the flat dict and :func:`confusion_rows` for the ``actual,predicted`` plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, recall_score

from lus.data.frame_dataset import read_index
from lus.labels import N_SCORES, PROB_COLUMNS
from lus.metrics.classification import confusion_matrix, macro_f1

N_CLASSES = N_SCORES
DROP_K = (1, 3, 5, 7)
SETTINGS = ("regular", *(f"drop_k{k}" for k in DROP_K), "video_ann", "a3", "a4")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES,
                           per_class: bool = True) -> dict[str, float]:
    """Accuracy, macro/weighted F1, per-class recall (classes absent from y_true are omitted) and n."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    out: dict[str, float] = {"n": float(len(y_true))}
    if len(y_true) == 0:
        return out
    labels = list(range(n_classes))
    out["accuracy"] = float((y_true == y_pred).mean())
    present = sorted(set(y_true.tolist()))
    out["f1_macro"] = macro_f1(y_true, y_pred, n_classes)
    out["f1_weighted"] = float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
    if per_class:
        rec = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
        for c in present:
            out[f"recall_{c}"] = float(rec[c])
    return out


def transition_keep_mask(labels: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask of one video's frames after dropping b-K .. b+K-1 around each label change b."""
    y = np.asarray(labels)
    keep = np.ones(len(y), dtype=bool)
    for b in np.flatnonzero(y[1:] != y[:-1]) + 1:
        keep[max(0, b - k):min(len(y), b + k)] = False
    return keep


def agreement_keep_mask(labels: np.ndarray, annotators: np.ndarray, min_agree: int | None) -> np.ndarray:
    """Frames where at least ``min_agree`` annotators (None = all) give the frame's label; annotators (A, T)."""
    ann = np.asarray(annotators)
    agree = (ann == np.asarray(labels)[None, :]).sum(axis=0)
    need = ann.shape[0] if min_agree is None else min(min_agree, ann.shape[0])
    return agree >= need


def setting_masks(df: pd.DataFrame, annotators: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Boolean row masks of ``df`` per evaluation setting (labelled frames only)."""
    labelled = df["label"].to_numpy() >= 0
    masks: dict[str, np.ndarray] = {"regular": labelled.copy()}
    drop = {k: np.zeros(len(df), dtype=bool) for k in DROP_K}
    has_ann = np.zeros(len(df), dtype=bool)
    a3 = np.zeros(len(df), dtype=bool)
    a4 = np.zeros(len(df), dtype=bool)
    labels_all = df["label"].to_numpy()
    for vid, rows in df.groupby("video_id", sort=False).indices.items():
        y = labels_all[rows]
        for k in DROP_K:
            drop[k][rows] = transition_keep_mask(y, k)
        ann = None if annotators is None else annotators.get(str(vid))
        if ann is not None and ann.shape[1] == len(rows):
            has_ann[rows] = True
            a3[rows] = agreement_keep_mask(y, ann, 3)
            a4[rows] = agreement_keep_mask(y, ann, None)
    for k in DROP_K:
        masks[f"drop_k{k}"] = labelled & drop[k]
    masks["video_ann"] = labelled & (df["label"].to_numpy() == df["weak_label"].to_numpy())
    if has_ann.any():
        masks["a3"] = labelled & has_ann & a3
        masks["a4"] = labelled & has_ann & a4
    return masks


def predictions(df: pd.DataFrame) -> np.ndarray:
    return df[list(PROB_COLUMNS)].to_numpy().argmax(axis=1)


def frame_metrics(df: pd.DataFrame, annotators: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Flat numeric metrics per fold and pooled for every setting, plus weak-label accuracy."""
    pred = predictions(df)
    y = df["label"].to_numpy()
    weak = df["weak_label"].to_numpy()
    masks = setting_masks(df, annotators)
    out: dict[str, float] = {}
    folds = df["fold"].to_numpy()
    scopes = [("pooled", np.ones(len(df), dtype=bool))] + [(f"fold{int(k)}", folds == k) for k in sorted(set(folds))]
    for scope, in_scope in scopes:
        for setting, m in masks.items():
            sel = m & in_scope
            if not sel.any():
                continue
            res = classification_metrics(y[sel], pred[sel], per_class=scope == "pooled")
            out.update({f"{scope}.{setting}.{k}": v for k, v in res.items()})
        wsel = in_scope & (weak >= 0)
        if wsel.any():
            res = classification_metrics(weak[wsel], pred[wsel], per_class=scope == "pooled")
            out.update({f"weak_label.{scope}.{k}": v for k, v in res.items()})
    accs = [out[f"pooled.{s}.accuracy"] for s in SETTINGS if f"pooled.{s}.accuracy" in out]
    if accs:
        out["pooled.avg.accuracy"] = float(np.mean(accs))
    fold_acc = [v for k, v in out.items() if k.startswith("fold") and k.endswith(".regular.accuracy")]
    if fold_acc:
        out["folds.regular.accuracy_mean"] = float(np.mean(fold_acc))
        out["folds.regular.accuracy_std"] = float(np.std(fold_acc))
    if masks["regular"].any():
        cm = confusion_matrix(y[masks["regular"]].astype(np.int64), pred[masks["regular"]].astype(np.int64), N_CLASSES)
        out.update({f"pooled.confusion.{i}_{j}": float(cm[i, j]) for i in range(N_CLASSES) for j in range(N_CLASSES)})
    return out


def confusion_rows(df: pd.DataFrame) -> pd.DataFrame:
    """``actual,predicted`` rows for a DVC confusion plot: labelled frames, else weak labels when none exist."""
    pred = predictions(df)
    y = df["label"].to_numpy()
    sel = y >= 0
    if not sel.any():
        y = df["weak_label"].to_numpy()
        sel = y >= 0
    return pd.DataFrame({"actual": y[sel].astype(int), "predicted": pred[sel].astype(int)})


def load_annotators(frames_dir, video_ids) -> dict[str, np.ndarray]:
    """``annotators`` arrays (A, T) of the shards that have them (for the agreement settings)."""
    frames_dir = Path(frames_dir)
    index = read_index(frames_dir)
    shard_of = dict(zip(index["video_id"], index["shard"]))
    out: dict[str, np.ndarray] = {}
    for v in video_ids:
        if v in shard_of:
            with np.load(frames_dir / shard_of[v]) as z:
                if "annotators" in z.files:
                    out[str(v)] = z["annotators"].astype(np.int64)
    return out


def evaluate_frame_predictions(predictions_path, frames_dir=None, prefix: str = "frame.",
                               localization: Mapping[str, float] | None = None) -> dict[str, float]:
    """Everything the evaluate stage needs from ``frames.parquet`` in one call (flat, numeric, prefixed).

    ``frames_dir`` (``data/frames``) adds the annotator-agreement settings when shards carry ``annotators``;
    ``localization`` (e.g. the ``localization.*`` entries of ``frame_metrics.json``) is merged as is.
    """
    path = Path(predictions_path)
    if not path.is_file():
        raise FileNotFoundError(f"frame predictions not found: {path} (run the predict_frames stage first)")
    df = pd.read_parquet(path)
    df["video_id"] = df["video_id"].astype(str)
    ann = load_annotators(frames_dir, df["video_id"].unique()) if frames_dir is not None else None
    out = {f"{prefix}{k}": v for k, v in frame_metrics(df, ann).items()}
    for k, v in (localization or {}).items():
        out[f"{prefix}{k}"] = float(v)
    return out
