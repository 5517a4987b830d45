"""Stage predict_frames: out-of-fold frame probabilities, crop transforms, frame metrics, localisation pictures.

    python -m stages.predict_frames --params params.yaml --frames data/frames --folds data/splits/folds.json \
        --manifest data/raw/manifest.csv --models models/frame --out data/predictions/frames.parquet \
        --metrics data/predictions/frame_metrics.json --confusion plots/frame/confusion.csv \
        --pictures plots/localization

Every frame of every extracted video is predicted by the model of the fold in which its patient is a
*test* patient (``models/frame/fold_<k>/model.pt``), so all probabilities are out-of-fold. Probabilities are
softmax(crop 1) (METHODS §1.5); ``theta1_*``/``theta2_*`` are the crop maps (identity where the arch has
no such crop). Reads the ``frame_model`` section and ``base.seed``.

Outputs: ``frames.parquet`` (``video_id, patient_id, fold, frame_index, label (-1 unknown), weak_label,
p0..p3, theta1_0..5, theta2_0..5``; videos in manifest order, frames in temporal order),
``frame_metrics.json`` (flat numbers, :func:`lus.metrics.frame.frame_metrics` + ``localization.*``),
``confusion.csv`` (``actual,predicted``), and PNGs [frame with crop boxes | crop 1 | crop 2] under
``--pictures`` (a few frames per true score).

When every fold's frame model says ``applicable: 0`` (a data source without severity labels), the stage
writes an empty table with the same columns, ``{"applicable": 0}`` metrics, an empty confusion table and a
note picture, and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.config.frame_model import FrameModelSection
from lus.data.folds import load_folds
from lus.data.frame_dataset import load_frame_table, read_index
from lus.data.manifest import read_manifest
from lus.io import atomic_dir, read_json, write_csv, write_json, write_parquet
from lus.metrics.frame import confusion_rows, frame_metrics
from lus.models.frame_models import build_frame_model, model_spec
from lus.report.localization import crop_panel, marker_coverage, pick_frames, write_png
from lus.report.seg_overlays import save_message
from lus.runtime import resolve_device, seed_everything
from lus.train.frame import predict
from stages._cli import add_fold_data_args, run, stage_parser

THETA_COLUMNS = [f"theta{k}_{i}" for k in (1, 2) for i in range(6)]
COLUMNS = ["video_id", "patient_id", "fold", "frame_index", "label", "weak_label", "p0", "p1", "p2", "p3",
           *THETA_COLUMNS]


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Out-of-fold frame predictions, frame metrics and localisation pictures.")
    add_fold_data_args(parser)
    parser.add_argument("--models", default="models/frame", help="folder holding fold_<k>/model.pt")
    parser.add_argument("--out", default="data/predictions/frames.parquet")
    parser.add_argument("--metrics", default="data/predictions/frame_metrics.json")
    parser.add_argument("--confusion", default="plots/frame/confusion.csv")
    parser.add_argument("--pictures", default="plots/localization")
    return parser


def load_fold_model(models_dir: Path, fold: int, sec: FrameModelSection) -> torch.nn.Module:
    folder = models_dir / f"fold_{fold}"
    path, meta_path = folder / "model.pt", folder / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"frame model not found: {path} (run: dvc repro train_frame)")
    if meta_path.is_file():
        meta = read_json(meta_path)
        for key in ("arch", "input_size", "crop_size"):
            if meta.get(key) != getattr(sec, key):
                raise ValueError(f"{meta_path}: trained with {key}={meta.get(key)!r} but frame_model.{key}="
                                 f"{getattr(sec, key)!r}; retrain (dvc repro train_frame)")
    model = build_frame_model(dataclasses.replace(model_spec(sec), pretrained=False))   # weights come next
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def predict_fold(fold: int, videos: pd.DataFrame, sec: FrameModelSection, frames_dir: Path, index: pd.DataFrame,
                 models_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Rows of one fold's test videos, plus masks per video (for the coverage metric and pictures)."""
    table = load_frame_table(frames_dir, videos, sec.input_size, with_masks=True, index=index)
    if len(table) == 0:
        return pd.DataFrame(columns=COLUMNS), {}
    device = resolve_device(sec.device)
    model = load_fold_model(models_dir, fold, sec).to(device)
    out = predict(model, table.images, sec.eval_batch_size, device)
    df = pd.DataFrame({
        "video_id": table.video_id_per_row().astype(str),
        "patient_id": np.asarray(table.patient_ids, dtype=object)[table.video].astype(str),
        "fold": np.full(len(table), fold, dtype=np.int64), "frame_index": table.frame_index,
        "label": table.labels, "weak_label": table.weak,
    })
    for c in range(4):
        df[f"p{c}"] = out["probs"][:, c]
    for k, key in ((1, "theta1"), (2, "theta2")):
        for i in range(6):
            df[f"theta{k}_{i}"] = out[key][:, i]
    return df, {"masks": table.masks, "annotators": table.annotators}


def frame_models_applicable(models_dir: Path, n_folds: int) -> bool:
    """False when train_frame found nothing to learn in any fold (see stages/train_frame.py)."""
    metas = [models_dir / f"fold_{k}" / "meta.json" for k in range(n_folds)]
    return any(not m.is_file() or read_json(m).get("applicable", 1) for m in metas)


def write_not_applicable(args: argparse.Namespace) -> None:
    write_parquet(args.out, pd.DataFrame({c: pd.Series(dtype=object if c in ("video_id", "patient_id") else float)
                                          for c in COLUMNS}))
    write_json(args.metrics, {"applicable": 0})
    write_csv(args.confusion, pd.DataFrame(columns=["actual", "predicted"]))
    with atomic_dir(Path(args.pictures)) as tmp:
        save_message(tmp / "not_applicable.png", "frame severity: not applicable\n(no severity labels in this data source)")
    print("predict_frames: not applicable (no severity labels in this data source); wrote applicable: 0")


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    sec = load_section(FrameModelSection, args.params)
    torch.set_num_threads(sec.num_threads if sec.num_threads > 0 else max(1, os.cpu_count() or 1))
    seed_everything(base.seed)
    folds = load_folds(args.folds)
    frames_dir, models_dir = Path(args.frames), Path(args.models)
    if not frame_models_applicable(models_dir, len(folds)):
        write_not_applicable(args)
        return
    manifest = read_manifest(args.manifest)
    index = read_index(args.frames)
    order = {v: i for i, v in enumerate(manifest["video_id"].astype(str))}
    parts, masks, annotators = [], {}, {}
    for k, fold in enumerate(folds):
        test = {str(p) for p in fold.get("test", [])}
        videos = manifest[manifest["patient_id"].astype(str).isin(test)]
        df, extra = predict_fold(k, videos, sec, frames_dir, index, models_dir)
        parts.append(df)
        masks.update(extra.get("masks", {}))
        annotators.update(extra.get("annotators", {}))
    frames = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    if frames is None:
        raise ValueError(f"no frames predicted: none of the test patients in {args.folds} has extracted frames")
    frames["_order"] = frames["video_id"].map(order)
    frames = frames.sort_values(["_order", "frame_index"], kind="stable").drop(columns="_order").reset_index(drop=True)
    frames = frames[COLUMNS]
    write_parquet(args.out, frames)

    metrics = {"applicable": 1.0, **frame_metrics(frames, annotators)}
    theta_cols = [f"theta1_{i}" for i in range(6)]
    th, mk = [], []
    for vid, rows in frames.groupby("video_id", sort=False).indices.items():
        if vid in masks and len(masks[vid]) == len(rows):
            th += list(frames[theta_cols].to_numpy()[rows])
            mk += list(masks[vid])
    if mk:
        cov = marker_coverage(th, mk)
        metrics.update({f"localization.{k}": v for k, v in cov.items()})
    write_json(args.metrics, metrics)
    write_csv(args.confusion, confusion_rows(frames))
    write_pictures(frames, frames_dir, index, Path(args.pictures), sec.pictures_per_score, base.seed)
    print(f"predict_frames: {len(frames)} frames of {frames['video_id'].nunique()} videos; "
          f"accuracy {metrics.get('pooled.regular.accuracy', float('nan')):.3f}, "
          f"weak-label accuracy {metrics.get('weak_label.pooled.accuracy', float('nan')):.3f}")


def write_pictures(frames: pd.DataFrame, frames_dir: Path, index: pd.DataFrame, out_dir: Path, per_score: int,
                   seed: int) -> None:
    """PNG panels for a few test frames per true score (frame label, else weak label), at shard resolution."""
    scores = np.where(frames["label"] >= 0, frames["label"], frames["weak_label"]).astype(int)
    rows = pick_frames(scores, frames["video_id"].to_numpy(), per_score, seed) if per_score > 0 else []
    shard_of = dict(zip(index["video_id"], index["shard"]))
    with atomic_dir(out_dir) as tmp:
        for r in rows:
            rec = frames.iloc[r]
            with np.load(frames_dir / shard_of[rec["video_id"]]) as z:
                fidx = z["frame_index"] if "frame_index" in z.files else np.arange(len(z["frames"]))
                pos = int(np.flatnonzero(fidx == rec["frame_index"])[0])
                frame = z["frames"][pos]
            t1 = rec[[f"theta1_{i}" for i in range(6)]].to_numpy(dtype=float)
            t2 = rec[[f"theta2_{i}" for i in range(6)]].to_numpy(dtype=float)
            pred = int(np.argmax(rec[["p0", "p1", "p2", "p3"]].to_numpy(dtype=float)))
            name = f"score{scores[r]}_pred{pred}_{rec['video_id']}_f{int(rec['frame_index'])}.png"
            write_png(tmp / name, crop_panel(frame, t1, t2))


if __name__ == "__main__":
    run(main, build_parser())
