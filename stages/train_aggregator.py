"""Stage train_aggregator@fold: uninorm aggregator and baselines for one patient-wise fold.

    python -m stages.train_aggregator --fold K --params params.yaml \
        --frames data/predictions/frames.parquet --folds data/splits/folds.json \
        --manifest data/raw/manifest.csv --out models/aggregator

Trains the neutral elements on the fold's training videos (patients in ``train`` + ``val`` of fold K)
from their out-of-fold frame probabilities, then predicts the fold's test videos with the uninorm
and every training-free baseline. Reads only the ``aggregator`` params section and ``base.seed``.

Writes ``<out>/fold_K.json`` (neutral elements, params, loss curve, data summary, provenance),
``<out>/fold_K_predictions.csv`` (``video_id, patient_id, fold, label, n_frames, pred_uninorm,
pred_<baseline>..., agg_0..agg_3``) and ``<out>/fold_K_metrics.json`` (flat numbers).

Video label = manifest ``video_score``; videos without one are left out of training and kept in the
predictions with label -1 (ignored by the metrics). Frames are ordered by ``frame_index``. If the
frame table holds several rows per frame (one per fold model), the rows of the model for which the
video's patient is a test patient (``fold`` column) are used.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus.config.aggregator import AggregatorSection
from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.data.manifest import read_manifest
from lus.io import read_json, write_csv, write_json
from lus.metrics.video import fold_metrics
from lus.models.uninorm import PROB_COLUMNS, VideoSet, check_probability_table, run_fold
from lus.runtime import provenance, seed_everything
from stages._cli import run, stage_parser

log = logging.getLogger("stages.train_aggregator")

FRAME_COLUMNS = ["video_id", "patient_id", "fold", "frame_index", *PROB_COLUMNS]


def add_fold_data_args(parser: argparse.ArgumentParser) -> None:
    """The inputs of :func:`load_fold_data` (also used by the aggregator analysis scripts)."""
    parser.add_argument("--frames", default="data/predictions/frames.parquet", help="frame predictions (Parquet)")
    parser.add_argument("--folds", default="data/splits/folds.json", help="patient-wise folds file")
    parser.add_argument("--manifest", default="data/raw/manifest.csv", help="video manifest (video_score)")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Train the uninorm video-score aggregator of one fold and evaluate it with the baselines.")
    parser.add_argument("--fold", type=int, required=True, help="fold id (index into folds.json)")
    add_fold_data_args(parser)
    parser.add_argument("--out", default="models/aggregator", help="output folder")
    return parser


def _read_frames(path: Path) -> pd.DataFrame:
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


def _test_fold_of_patient(folds: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, f in enumerate(folds):
        for p in f.get("test", []):
            out[str(p)] = k
    return out


def load_fold_data(frames_path: str | Path, folds_path: str | Path, manifest_path: str | Path, fold: int
                   ) -> tuple[VideoSet, VideoSet, dict[str, Any]]:
    """Training and test videos of ``fold`` plus a summary of what was used and left out."""
    doc = read_json(folds_path)
    folds = doc.get("folds") if isinstance(doc, dict) else None
    if not isinstance(folds, list) or not folds:
        raise ValueError(f"{folds_path}: expected {{\"folds\": [{{\"train\", \"val\", \"test\"}}, ...]}}")
    if not 0 <= fold < len(folds):
        raise ValueError(f"--fold {fold} is out of range: {folds_path} has {len(folds)} folds (0..{len(folds) - 1})")
    spec = folds[fold]
    train_p = {str(p) for p in spec.get("train", [])} | {str(p) for p in spec.get("val", [])}
    test_p = {str(p) for p in spec.get("test", [])}
    if train_p & test_p:
        raise ValueError(f"{folds_path}: fold {fold} has patients in both training and test: "
                         f"{', '.join(sorted(train_p & test_p)[:5])}")

    frames = _read_frames(Path(frames_path))
    test_fold = _test_fold_of_patient(folds)
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
    if len(train) == 0:
        raise ValueError(f"fold {fold}: no labelled training videos (check {folds_path}, {frames_path} and the "
                         "video_score column of the manifest)")

    # probabilities of training videos should come from frame models that did not train on them
    video_fold = frames.groupby("video_id")["fold"].agg(lambda s: int(s.iloc[0]) if s.nunique() == 1 else -3)
    in_sample = [v for v, p in zip(train.video_ids, train.patient_ids)
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
        "patients_without_frames": missing_frames,
        "test_patients": sorted(set(test.patient_ids)),
    }
    return train, test, info


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    cfg = load_section(AggregatorSection, args.params)
    seed_everything(base.seed)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    out = Path(args.out)
    if len(_read_frames(Path(args.frames))) == 0:  # predict_frames wrote applicable: 0 (no severity labels)
        write_json(out / f"fold_{args.fold}_metrics.json", {"applicable": 0})
        write_csv(out / f"fold_{args.fold}_predictions.csv", pd.DataFrame(columns=["video_id", "label"]))
        write_json(out / f"fold_{args.fold}.json", {"fold": args.fold, "applicable": 0,
                                                    "reason": f"{args.frames} has no frame predictions"})
        log.info("fold %d: not applicable (no frame predictions: no severity labels in this data source)", args.fold)
        return
    train, test, info = load_fold_data(args.frames, args.folds, args.manifest, args.fold)
    fit, predictions = run_fold(train, test, cfg, args.fold, base.seed)
    metrics = fold_metrics(predictions)
    metrics["uninorm_train"] = {"loss": fit.train_loss, "accuracy": fit.train_accuracy,
                                **{f"neutral_{c}": v for c, v in enumerate(fit.neutral)}}
    model = {
        "fold": args.fold, "applicable": 1,
        "neutral": fit.neutral,
        "tnorm": cfg.tnorm,
        "off_diagonal": cfg.off_diagonal,
        "fit": {k: v for k, v in fit.to_dict().items() if k not in ("neutral", "curve")},
        "curve": fit.curve,
        "params": {"base": {"seed": base.seed}, "aggregator": cfg.to_dict()},
        "data": {**info, "frames": str(args.frames), "folds": str(args.folds), "manifest": str(args.manifest)},
        "provenance": provenance(base.seed),
    }
    write_csv(out / f"fold_{args.fold}_predictions.csv", predictions)
    write_json(out / f"fold_{args.fold}_metrics.json", metrics)
    write_json(out / f"fold_{args.fold}.json", model)
    log.info("fold %d: e = %s, %d train / %d test videos", args.fold,
             ", ".join(f"{v:.3f}" for v in fit.neutral), len(train), len(test))


if __name__ == "__main__":
    run(main, build_parser())
