"""The aggregator's inputs: out-of-fold frame probabilities, a fold of ``folds.json`` and the manifest's
video scores, joined into training and test :class:`VideoSet` s (used by the train_aggregator stage and
the aggregator analysis scripts).

Video label = manifest ``video_score``; videos without one are left out of training and kept in the
test set with label -1 (ignored by the metrics). Frames are ordered by ``frame_index``. If the frame
table holds several rows per frame (one per fold model), the rows of the model for which the video's
patient is a test patient (``fold`` column) are used.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus.data.folds import fold_partitions, load_folds, test_fold_of
from lus.data.manifest import read_manifest
from lus.data.video_set import VideoSet, check_probability_table
from lus.labels import PROB_COLUMNS

log = logging.getLogger(__name__)

FRAME_COLUMNS = ["video_id", "patient_id", "fold", "frame_index", *PROB_COLUMNS]


def add_fold_data_args(parser: argparse.ArgumentParser) -> None:
    """The inputs of :func:`load_fold_data` (also used by the aggregator analysis scripts)."""
    parser.add_argument("--frames", default="data/predictions/frames.parquet", help="frame predictions (Parquet)")
    parser.add_argument("--folds", default="data/splits/folds.json", help="patient-wise folds file")
    parser.add_argument("--manifest", default="data/raw/manifest.csv", help="video manifest (video_score)")


def read_frame_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"frame predictions not found: {path} (run the predict_frames stage first)")
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    missing = [c for c in FRAME_COLUMNS if c not in available and c != "fold"]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FRAME_COLUMNS)}")
    frames = pd.read_parquet(path, columns=[c for c in FRAME_COLUMNS if c in available])
    frames["video_id"] = frames["video_id"].astype(str)
    frames["patient_id"] = frames["patient_id"].astype(str)
    if "fold" not in frames.columns:
        frames["fold"] = -1
    check_probability_table(frames, str(path))
    return frames


def load_fold_data(frames_path: str | Path, folds_path: str | Path, manifest_path: str | Path, fold: int,
                   train_frames_path: str | Path | None = None) -> tuple[VideoSet, VideoSet, dict[str, Any]]:
    """Training and test videos of ``fold`` plus a summary of what was used and left out.

    ``train_frames_path``: a table of stage train_frame_inner; its rows with ``fold == fold`` replace the
    training videos' out-of-fold probabilities (models that never saw this fold's test patients)."""
    folds = load_folds(folds_path)
    spec = fold_partitions(folds, fold, str(folds_path))
    train_p = {str(p) for p in spec.get("train", [])} | {str(p) for p in spec.get("val", [])}
    test_p = {str(p) for p in spec.get("test", [])}
    if train_p & test_p:
        raise ValueError(f"{folds_path}: fold {fold} has patients in both training and test: "
                         f"{', '.join(sorted(train_p & test_p)[:5])}")

    frames = read_frame_table(Path(frames_path))
    test_fold = test_fold_of(folds)
    if frames.duplicated(["video_id", "frame_index"]).any():
        # several fold models per frame: keep the out-of-fold rows
        oof = frames["patient_id"].map(test_fold).fillna(-2).astype(int) == frames["fold"].astype(int)
        frames = frames[oof]
        if frames.duplicated(["video_id", "frame_index"]).any():
            raise ValueError(f"{frames_path}: repeated (video_id, frame_index) rows that are not one per fold model")

    manifest = read_manifest(manifest_path)
    scores = {v: int(s) for v, s in zip(manifest["video_id"].astype(str), manifest["video_score"]) if not pd.isna(s)}
    man_patient = dict(zip(manifest["video_id"].astype(str), manifest["patient_id"].astype(str)))
    allv = VideoSet.from_frames(frames, scores)
    mismatch = [v for v, p in zip(allv.video_ids, allv.patient_ids) if v in man_patient and man_patient[v] != p]
    if mismatch:
        raise ValueError(f"{frames_path}: patient_id of video(s) {', '.join(mismatch[:5])} differs from {manifest_path}")
    not_in_manifest = [v for v in allv.video_ids if v not in man_patient]
    if not_in_manifest:
        log.warning("%d video(s) of %s are not in the manifest and are ignored, e.g. %s", len(not_in_manifest),
                    frames_path, ", ".join(not_in_manifest[:3]))
    in_manifest = np.array([v in man_patient for v in allv.video_ids], dtype=bool)
    patients = np.asarray(allv.patient_ids)
    is_train = np.isin(patients, list(train_p)) & in_manifest
    is_test = np.isin(patients, list(test_p)) & in_manifest
    unlabelled_train = is_train & (allv.labels < 0)
    if unlabelled_train.any():
        log.warning("fold %d: %d training video(s) without video_score are left out of training",
                    fold, int(unlabelled_train.sum()))
    train = allv.subset(is_train & (allv.labels >= 0))
    test = allv.subset(is_test)
    if train_frames_path is not None:
        train = _inner_training_videos(train, Path(train_frames_path), fold, scores)
    if len(train) == 0:
        raise ValueError(f"fold {fold}: no labelled training videos (check {folds_path}, {frames_path} and the "
                         "video_score column of the manifest)")

    # probabilities of training videos should come from frame models that did not train on them
    video_fold = frames.groupby("video_id")["fold"].agg(lambda s: int(s.iloc[0]) if s.nunique() == 1 else -3)
    in_sample = [] if train_frames_path is not None else [
        v for v, p in zip(train.video_ids, train.patient_ids)
        if int(video_fold.get(v, -1)) >= 0 and int(video_fold[v]) != test_fold.get(p, -1)]
    if in_sample:
        log.warning("fold %d: %d training video(s) have frame probabilities from a model that saw their patient "
                    "(fold column != the patient's test fold), e.g. %s", fold, len(in_sample), in_sample[0])
    missing_frames = sorted((train_p | test_p) - set(patients.tolist()))
    info = {
        "n_train_videos": len(train), "n_test_videos": len(test),
        "n_train_frames": int(train.lengths.sum()), "n_test_frames": int(test.lengths.sum()),
        "n_train_patients": len(set(train.patient_ids)), "n_test_patients": len(set(test.patient_ids)),
        "train_label_counts": {str(k): int(v) for k, v in
                               zip(*np.unique(train.labels, return_counts=True))},
        "n_train_unlabelled_excluded": int(unlabelled_train.sum()),
        "n_test_unlabelled": int((test.labels < 0).sum()),
        "n_videos_not_in_manifest": len(not_in_manifest),
        "n_train_videos_in_sample_probabilities": len(in_sample),
        "train_probabilities": "inner cross-fitting" if train_frames_path is not None else "out-of-fold",
        "patients_without_frames": missing_frames,
        "test_patients": sorted(set(test.patient_ids)),
    }
    return train, test, info


def _inner_training_videos(train: VideoSet, path: Path, fold: int, scores: dict[str, int]) -> VideoSet:
    """``train``'s videos with their probabilities from the inner table's rows of ``fold`` (same videos, order)."""
    table = read_frame_table(path)
    rows = table[table["fold"].astype(int) == fold]
    inner = VideoSet.from_frames(rows, scores) if len(rows) else None
    have = set(inner.video_ids) if inner is not None else set()
    missing = [v for v in train.video_ids if v not in have]
    if missing:
        raise ValueError(f"{path}: no inner cross-fitting rows (fold {fold}) for training video(s) "
                         f"{', '.join(missing[:5])}; rerun train_frame_inner (aggregator.cross_fit: inner)")
    position = {v: i for i, v in enumerate(inner.video_ids)}
    keep = np.zeros(len(inner), dtype=bool)
    keep[[position[v] for v in train.video_ids]] = True
    picked = inner.subset(keep)
    if picked.video_ids != train.video_ids or picked.patient_ids != train.patient_ids:
        raise ValueError(f"{path}: fold {fold} rows differ from the out-of-fold table in video order or patients")
    return picked


def load_labelled_videos(frames_path: str | Path, folds_path: str | Path, manifest_path: str | Path) -> VideoSet:
    """Every manifest video with a video score and out-of-fold frame probabilities, as one set (for
    re-splitting the aggregator comparison over fold seeds). With several rows per frame (one per
    fold model) the row of the model for which the video's patient is a test patient is used."""
    frames = read_frame_table(Path(frames_path))
    if frames.duplicated(["video_id", "frame_index"]).any():
        test_fold = test_fold_of(load_folds(folds_path))
        frames = frames[frames["patient_id"].map(test_fold).fillna(-2).astype(int) == frames["fold"].astype(int)]
    manifest = read_manifest(manifest_path)
    scores = {v: int(s) for v, s in zip(manifest["video_id"].astype(str), manifest["video_score"]) if not pd.isna(s)}
    allv = VideoSet.from_frames(frames, scores)
    labelled = allv.subset(allv.labels >= 0)
    if len(labelled) == 0:
        raise ValueError(f"{frames_path}: no video has both frame probabilities and a video_score in {manifest_path}")
    return labelled
