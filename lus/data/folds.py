"""Patient-wise, label-stratified k-fold splits with a validation subset per fold.

Why patient-wise: every LUS dataset has several videos (and hundreds of near-identical frames)
per patient, so any split below the patient level leaks. Each fold is
``{"train": [...], "val": [...], "test": [...]}`` of patient ids (nnU-Net's ``splits_final.json``
shape): every patient is a test patient in exactly one fold, and ``val`` is a stratified subset of
the fold's non-test patients used only for model selection (``train`` excludes it).

Determinism: patients are sorted before sklearn's seeded ``StratifiedGroupKFold`` sees them, so
the folds depend only on the data and the seed, never on file or set iteration order.

Honesty: when the labels cannot be stratified at all (every class has fewer videos than splits),
the split falls back to a seeded, shuffled ``GroupKFold`` (patient-wise, unstratified). That is
logged as a warning and recorded in the folds document: ``stratify_by`` is the label that was asked
for, ``stratify_by_used`` the one the test partitions were actually balanced on (``none`` after a
fallback), ``stratified`` is true only if the test and every validation partition were stratified,
and ``fallbacks`` lists each fallback with sklearn's reason.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class SplitError(ValueError):
    """A split leaks patients, misses videos or cannot satisfy the requested stratification."""


def stratification_labels(videos: pd.DataFrame, stratify_by: str) -> tuple[str, pd.Series | None]:
    """Pick the per-video label used to balance folds (``auto``: diagnosis, else video score)."""
    if stratify_by == "none":
        return "none", None
    candidates = ["diagnosis", "video_score"] if stratify_by == "auto" else [stratify_by]
    for col in candidates:
        values = videos[col]
        known = values.notna() & (values.astype(str) != "")
        if known.all():
            return col, values.astype(str)
        if stratify_by != "auto":
            missing = videos.loc[~known, "video_id"].tolist()[:5]
            raise SplitError(f"split.stratify_by={col}: videos without a {col} label, e.g. {', '.join(missing)}; "
                             "use stratify_by: none or auto")
    return "none", None


def _group_kfold(n_splits: int, labels: np.ndarray | None, groups: np.ndarray,
                 seed: int) -> tuple[list[np.ndarray], str]:
    """Test indices of each split, stratified when labels are given, and the fallback reason.

    The reason is "" when the split is what was asked for; otherwise it says why stratification was
    impossible and the indices come from an unstratified, seeded ``GroupKFold(shuffle=True)``.
    """
    # Imported here: scikit-learn takes ~2 s to import, and the training stages only read folds.
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    x = np.zeros(len(groups))
    if labels is not None:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # sklearn warns when a class has fewer groups than splits; checked explicitly by the split stage.
            warnings.simplefilter("ignore", UserWarning)
            try:
                return [test for _, test in splitter.split(x, labels, groups=groups)], ""
            except ValueError as err:  # too few videos per class to stratify at all (tiny data)
                reason = str(err).rstrip(".")
    else:
        reason = ""
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(x, groups=groups)], reason


def make_folds(videos: pd.DataFrame, n_folds: int, val_fraction: float, seed: int,
               stratify_by: str = "auto") -> dict[str, Any]:
    """Build the folds document from a table with ``video_id, patient_id`` (+ label columns)."""
    videos = videos.sort_values(["patient_id", "video_id"]).reset_index(drop=True)
    patients = sorted(videos["patient_id"].unique())
    if len(patients) < n_folds:
        raise SplitError(f"cannot make {n_folds} patient-wise folds from {len(patients)} patient(s); "
                         "lower the number of folds (split.folds) or add data")
    label_name, labels = stratification_labels(videos, stratify_by)
    groups = videos["patient_id"].to_numpy()
    label_arr = None if labels is None else labels.to_numpy()
    test_splits, reason = _group_kfold(n_folds, label_arr, groups, seed)
    fallbacks = [f"test partitions not stratified by {label_name}: {reason}"] if reason else []
    folds = []
    for k, test_idx in enumerate(test_splits):
        test = sorted(set(groups[test_idx]))
        rest = videos[~videos["patient_id"].isin(test)].reset_index(drop=True)
        n_val_splits = max(2, int(round(1.0 / val_fraction)))
        rest_patients = rest["patient_id"].nunique()
        if rest_patients < 2:
            raise SplitError(f"a fold has only {rest_patients} non-test patient(s): need at least 2 for train and val")
        n_val_splits = min(n_val_splits, rest_patients)
        rest_labels = None if labels is None else rest[label_name].astype(str).to_numpy()
        val_splits, val_reason = _group_kfold(n_val_splits, rest_labels, rest["patient_id"].to_numpy(), seed)
        if val_reason:
            fallbacks.append(f"fold {k} val partition not stratified by {label_name}: {val_reason}")
        val = sorted(set(rest["patient_id"].to_numpy()[val_splits[0]]))
        train = sorted(set(rest["patient_id"]) - set(val))
        folds.append({"train": train, "val": val, "test": test})
    for message in fallbacks:
        log.warning("split: %s; used an unstratified patient-wise GroupKFold instead", message)
    doc = {"seed": seed, "group_key": "patient_id", "stratify_by": label_name,
           "stratify_by_used": "none" if reason else label_name,
           "stratified": label_name != "none" and not fallbacks, "fallbacks": fallbacks, "folds": folds}
    check_folds(doc, videos, source="generated split")
    return doc


def _as_fold_list(doc: Any, source: str) -> list[dict[str, list[str]]]:
    folds = doc.get("folds") if isinstance(doc, dict) else doc
    if not isinstance(folds, list) or not folds:
        raise SplitError(f"{source}: expected a list of folds (or {{'folds': [...]}}), got {type(folds).__name__}")
    for k, fold in enumerate(folds):
        if not isinstance(fold, dict) or not {"train", "test"} <= set(fold):
            raise SplitError(f"{source}: fold {k} must be a mapping with 'train', 'val' and 'test' patient lists")
        for part in ("train", "val", "test"):
            ids = fold.get(part, [])
            if not isinstance(ids, list) or not all(isinstance(p, (str, int)) for p in ids):
                raise SplitError(f"{source}: fold {k} '{part}' must be a list of patient ids")
    return folds


def check_folds(doc: Any, videos: pd.DataFrame, source: str, n_folds: int | None = None) -> list[dict[str, list[str]]]:
    """Refuse a split that leaks a patient, misses one, or names unknown patients.

    Checks: within each fold train/val/test are disjoint; across folds every known patient is a
    test patient exactly once; every patient of the data appears in each fold; no unknown ids.
    """
    folds = _as_fold_list(doc, source)
    if n_folds is not None and len(folds) != n_folds:
        raise SplitError(f"{source}: has {len(folds)} folds but params split.folds lists {n_folds}")
    known = set(videos["patient_id"].astype(str))
    test_count: dict[str, int] = {}
    for k, fold in enumerate(folds):
        parts = {p: {str(x) for x in fold.get(p, [])} for p in ("train", "val", "test")}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = parts[a] & parts[b]
            if both:
                raise SplitError(f"{source}: fold {k} leaks patient(s) {', '.join(sorted(both)[:5])} "
                                 f"into both '{a}' and '{b}'")
        union = parts["train"] | parts["val"] | parts["test"]
        unknown = union - known
        if unknown:
            raise SplitError(f"{source}: fold {k} names patient(s) not in the data: {', '.join(sorted(unknown)[:5])}")
        missing = known - union
        if missing:
            miss_videos = videos.loc[videos["patient_id"].astype(str).isin(missing), "video_id"].tolist()
            raise SplitError(f"{source}: fold {k} misses patient(s) {', '.join(sorted(missing)[:5])} "
                             f"(videos {', '.join(miss_videos[:5])}); every patient must be in train, val or test")
        if not parts["train"] or not parts["test"]:
            raise SplitError(f"{source}: fold {k} has an empty 'train' or 'test' partition")
        for p in parts["test"]:
            test_count[p] = test_count.get(p, 0) + 1
    twice = sorted(p for p, c in test_count.items() if c > 1)
    if twice:
        raise SplitError(f"{source}: patient(s) {', '.join(twice[:5])} are test patients in more than one fold")
    never = sorted(known - set(test_count))
    if never:
        raise SplitError(f"{source}: patient(s) {', '.join(never[:5])} are never test patients; "
                         "out-of-fold predictions need every patient in exactly one test partition")
    return [{p: sorted(str(x) for x in fold.get(p, [])) for p in ("train", "val", "test")} for fold in folds]


def fold_class_counts(doc: dict[str, Any], videos: pd.DataFrame, label: str) -> list[dict[str, dict[str, int]]]:
    """Videos per class in each partition of each fold (for the split summary and checks)."""
    out = []
    for fold in doc["folds"]:
        entry = {}
        for part in ("train", "val", "test"):
            sub = videos[videos["patient_id"].isin(fold[part])]
            entry[part] = {str(k): int(v) for k, v in sub[label].astype(str).value_counts().sort_index().items()}
        out.append(entry)
    return out


def patients_of(folds: Sequence[dict[str, list[str]]], fold: int, parts: Iterable[str]) -> set[str]:
    """Patient ids of the given partitions of one fold (e.g. ``("train", "val")``)."""
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} does not exist; the folds file has folds 0..{len(folds) - 1}")
    return {p for part in parts for p in folds[fold][part]}


def load_folds(path: str) -> list[dict[str, list[str]]]:
    """Read ``data/splits/folds.json`` (written and checked by the split stage) as a list of folds."""
    from lus.io import read_json

    return _as_fold_list(read_json(path), str(path))
