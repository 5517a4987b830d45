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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus.io import read_json

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


def fold_partitions(folds: Sequence[dict[str, list[str]]], fold: int, source: str = "the folds file"
                    ) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` patient ids (str, in file order) of one fold; an out-of-range fold is
    refused naming ``source`` and the valid range (the stages' ``--fold``)."""
    if not 0 <= fold < len(folds):
        raise ValueError(f"{source}: fold {fold} is out of range (folds 0..{len(folds) - 1})")
    return {part: [str(p) for p in folds[fold].get(part, [])] for part in ("train", "val", "test")}


def patients_of(folds: Sequence[dict[str, list[str]]], fold: int, parts: Iterable[str]) -> set[str]:
    """Patient ids of the given partitions of one fold (e.g. ``("train", "val")``)."""
    spec = fold_partitions(folds, fold)
    return {p for part in parts for p in spec[part]}


def load_folds(path: str | Path) -> list[dict[str, list[str]]]:
    """Read ``data/splits/folds.json`` (written and checked by the split stage) as a list of folds; the one
    parser of a folds file (a malformed one raises :class:`SplitError` naming the file)."""
    return _as_fold_list(read_json(path), str(path))


def test_fold_of(folds: Sequence[dict[str, list[str]]]) -> dict[str, int]:
    """Patient id -> the fold in which it is a test patient (out-of-fold frame predictions come from it)."""
    return {str(p): k for k, fold in enumerate(folds) for p in fold.get("test", [])}


# ------------------------------------------------------------------------- aggregator protocols (METHODS §2.7)
# A protocol's folds document has the folds.json shape plus ``protocol`` and ``group_key``: the ids in
# ``train``/``test`` are patient ids (``patient_id``) or, for leave-one-video-out and the ICLUS
# train/test split, video ids (``video_id``). ``val`` is empty: the aggregator has no model selection.

PROTOCOLS = ("kfold", "traintest", "lopo", "lovo")


def _video_table(videos: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """``videos`` with string ids, after checking it has ``cols``."""
    missing = [c for c in cols if c not in videos.columns]
    if missing:
        raise ValueError(f"videos: missing column(s) {', '.join(missing)}")
    ids = {c: videos[c].astype(str) for c in ("video_id", "patient_id") if c in videos.columns}
    return videos.assign(**ids)


def make_patient_folds(videos: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Deterministic patient-wise folds stratified by video score (METHODS §2.7, greedy variant).

    Patients are sorted, shuffled with ``seed``, then taken largest first (stable); each goes to the
    fold that currently holds the fewest videos of that patient's scores (ties: fewest videos, then
    lowest fold index). ``val`` is empty: the aggregator has no model selection.
    """
    videos = _video_table(videos, ["patient_id", "video_score"])
    patients = sorted(videos["patient_id"].unique())
    if len(patients) < n_folds:
        raise ValueError(f"cannot make {n_folds} patient-wise folds from {len(patients)} patients")
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    scores_of = {p: g["video_score"].astype(int).to_numpy() for p, g in videos.groupby("patient_id")}
    order = sorted(order, key=lambda p: -len(scores_of[p]))  # stable: the seeded order breaks ties
    n_classes = int(max(4, videos["video_score"].max() + 1))
    per_class = np.zeros((n_folds, n_classes), dtype=np.int64)
    test: list[list[str]] = [[] for _ in range(n_folds)]
    for p in order:
        s = scores_of[p]
        cost = [(int(sum(per_class[f, k] for k in s)), int(per_class[f].sum()), f) for f in range(n_folds)]
        f = min(cost)[2]
        np.add.at(per_class[f], s, 1)
        test[f].append(p)
    folds = []
    for f in range(n_folds):
        t = sorted(test[f])
        folds.append({"train": sorted(set(patients) - set(t)), "val": [], "test": t})
    return {"seed": seed, "group_key": "patient_id", "stratify_by": "video_score", "method": "greedy_stratified",
            "folds": folds}


def leave_one_out_folds(videos: pd.DataFrame, group_key: str) -> dict[str, Any]:
    """One fold per patient (``group_key="patient_id"``, LOPO) or per video (``"video_id"``, LOVO).

    LOVO keeps the test video's other videos of the same patient in training, as the original code does;
    it is the leakiest protocol and is reported for comparison with the paper only."""
    if group_key not in ("patient_id", "video_id"):
        raise ValueError(f"group_key must be patient_id or video_id, got {group_key!r}")
    videos = _video_table(videos, ["video_id", "patient_id"])
    ids = sorted(videos[group_key].unique())
    if len(ids) < 2:
        raise ValueError(f"leave-one-out over {group_key} needs at least 2 distinct ids, got {len(ids)}")
    folds = [{"train": [i for i in ids if i != held], "val": [], "test": [held]} for held in ids]
    return {"seed": None, "group_key": group_key, "stratify_by": "none",
            "method": "leave_one_patient_out" if group_key == "patient_id" else "leave_one_video_out", "folds": folds}


def train_test_folds(videos: pd.DataFrame, split_column: str) -> dict[str, Any]:
    """A single fold from a per-video ``train``/``test`` column (ICLUS: the frame model's
    ``train_test_split.csv``, joined per video as ``frame_model_split``). Ids are video ids, because the
    published split names patients by their spreadsheet identity, which differs from the pickle's for
    some videos; a video with another value (or none) is refused."""
    videos = _video_table(videos, ["video_id", "patient_id", split_column])
    split = videos[split_column].astype(str)
    bad = videos.loc[~split.isin(["train", "test"]), "video_id"].tolist()
    if bad:
        raise ValueError(f"videos: column {split_column!r} must be 'train' or 'test' for every video; "
                         f"{len(bad)} video(s) are not, e.g. {', '.join(bad[:5])}")
    train = sorted(videos.loc[split == "train", "video_id"])
    test = sorted(videos.loc[split == "test", "video_id"])
    if not train or not test:
        raise ValueError(f"videos: column {split_column!r} has an empty train or test part")
    return {"seed": None, "group_key": "video_id", "stratify_by": "none", "method": f"train_test:{split_column}",
            "folds": [{"train": train, "val": [], "test": test}]}


def protocol_folds(videos: pd.DataFrame, protocol: str, n_folds: int = 5, seed: int = 0,
                   split_column: str = "frame_model_split") -> dict[str, Any]:
    """The folds document of ``protocol`` (one of :data:`PROTOCOLS`) for a per-video table with
    ``video_id, patient_id, video_score`` (and ``split_column`` for ``traintest``)."""
    if protocol == "kfold":
        doc = make_patient_folds(videos, n_folds, seed)
    elif protocol == "traintest":
        doc = train_test_folds(videos, split_column)
    elif protocol in ("lopo", "lovo"):
        doc = leave_one_out_folds(videos, "patient_id" if protocol == "lopo" else "video_id")
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return doc if protocol == "kfold" else {"protocol": protocol, **doc}
