"""Stage train_frame_inner: inner cross-fitting of the frame model, for a leak-free aggregator (``aggregator.cross_fit``).

    python -m stages.train_frame_inner --params params.yaml --frames data/frames --folds data/splits/folds.json \
        --manifest data/raw/manifest.csv --out models/frame_inner --predictions data/predictions/frames_inner.parquet

Why: the aggregator of outer fold k trains on the out-of-fold frame probabilities of its training videos,
and those come from the frame models of the other folds, which trained on fold k's *test* patients (a
second-order leak; see the README's Limits). With ``aggregator.cross_fit: inner`` the training videos of
fold k get probabilities from models that never saw fold k's test patients nor the video's own patient.

How (pairwise cross-fitting, no more models than needed): fold k's training patients are the test patients
of the other folds, so for each pair of folds a < b one frame model is trained on every patient outside
test(a) and test(b) (frame_model params, seed base.seed + 100 + 10 a + b, epoch chosen on the patients of
val(a) left in the pool); it predicts test(b) for the aggregator of fold a and test(a) for the aggregator of
fold b. K folds need K (K - 1) / 2 models (10 for 5 folds), each on 3/5 of the patients; they train side by
side like train_frame's folds (``--workers``). Nothing is trained with ``cross_fit: outer`` (the default):
the stage then writes an empty table in a second.

Writes ``--out/pair_<a>_<b>/`` (as train_frame: model.pt, meta.json, curve.csv, checkpoint.pt) and
``--predictions`` (``video_id, patient_id, fold, frame_index, p0..p3``: ``fold`` = the outer fold whose
aggregator trains on the row; videos by fold, then manifest order, frames in temporal order).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus.config.aggregator import AggregatorSection
from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.config.frame_model import FrameModelSection
from lus.data.aggregator_inputs import FRAME_COLUMNS
from lus.data.folds import fold_partitions, load_folds
from lus.data.frame_dataset import load_frame_table
from lus.data.manifest import read_manifest
from lus.io import write_parquet
from lus.labels import PROB_COLUMNS
from lus.parallel import add_workers_arg, run_jobs, worker_count
from lus.train.distributed import dist_env
from lus.train.fold_jobs import remove_stale
from lus.train.frame import predict
from stages._cli import add_fold_data_args, run, stage_parser
from stages.train_frame import add_cache_arg, thread_count, train_on_patients


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Inner cross-fitting of the frame model for the aggregator (aggregator.cross_fit: inner).")
    add_fold_data_args(parser)
    parser.add_argument("--out", default="models/frame_inner", help="output folder (one pair_<a>_<b> folder per pair)")
    parser.add_argument("--predictions", default="data/predictions/frames_inner.parquet",
                        help="frame probabilities of every outer fold's training videos (Parquet)")
    add_cache_arg(parser)
    add_workers_arg(parser, "models")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def pair_patients(folds: list[dict[str, list[str]]], a: int, b: int, source: str) -> dict[str, list[str]]:
    """Training pool of the pair (a, b): every patient outside test(a) and test(b); validation = the pool's
    patients among val(a) (val(b) when that leaves none); the held-out test(a) and test(b)."""
    parts = [fold_partitions(folds, k, source) for k in range(len(folds))]
    held = set(parts[a]["test"]) | set(parts[b]["test"])
    pool = sorted({p for part in parts for p in part["test"]} - held)
    val = sorted(set(parts[a]["val"]) & set(pool)) or sorted(set(parts[b]["val"]) & set(pool))
    return {"train": [p for p in pool if p not in set(val)], "val": val,
            "test_a": list(parts[a]["test"]), "test_b": list(parts[b]["test"])}


def train_pair(args: argparse.Namespace, a: int, b: int, progress: bool) -> pd.DataFrame:
    """Train the model of pair (a, b) and return its probabilities for test(b) (rows fold = a) and test(a) (fold = b)."""
    base = load_section(BaseSection, args.params)
    sec = load_section(FrameModelSection, args.params)
    folds = load_folds(args.folds)
    spec = pair_patients(folds, a, b, str(args.folds))
    if not spec["train"]:
        raise ValueError(f"{args.folds}: folds {a} and {b} leave no patient to train an inner model on")
    _, model = train_on_patients(args, Path(args.out) / f"pair_{a}_{b}", f"pair_{a}_{b}", spec["train"], spec["val"],
                                 base.seed + 100 + 10 * a + b, progress)
    if model is None:   # no severity labels in this data source
        return pd.DataFrame(columns=FRAME_COLUMNS)
    manifest = read_manifest(args.manifest)
    rows = []
    for use_for, held in ((a, spec["test_b"]), (b, spec["test_a"])):
        videos = manifest[manifest["patient_id"].astype(str).isin(set(held))]
        table = load_frame_table(args.frames, videos, sec.input_size)
        probs = predict(model, table.images, sec.eval_batch_size, next(model.parameters()).device)["probs"]
        frame = pd.DataFrame({"video_id": table.video_id_per_row().astype(str),
                              "patient_id": np.asarray(table.patient_ids, dtype=object)[table.video].astype(str),
                              "fold": use_for, "frame_index": table.frame_index.astype(int)})
        for c, name in enumerate(PROB_COLUMNS):
            frame[name] = probs[:, c].astype(np.float32)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def main(args: argparse.Namespace) -> None:
    cfg = load_section(AggregatorSection, args.params)
    sec = load_section(FrameModelSection, args.params)
    out = Path(args.out)
    if cfg.cross_fit != "inner":
        if out.is_dir():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        write_parquet(args.predictions, pd.DataFrame({c: pd.Series(dtype="float32" if c in PROB_COLUMNS else
                                                                   "int64" if c in ("fold", "frame_index") else "object")
                                                      for c in FRAME_COLUMNS}))
        print(f"train_frame_inner: aggregator.cross_fit is {cfg.cross_fit!r}; nothing to train (empty {args.predictions})")
        return
    n_folds = len(load_folds(args.folds))
    pairs = [(a, b) for a in range(n_folds) for b in range(a + 1, n_folds)]
    remove_stale(out, "pair_*", {f"pair_{a}_{b}" for a, b in pairs})
    threads = thread_count(sec.num_threads)
    workers = 1 if dist_env().distributed else worker_count(args.workers, len(pairs), threads)
    t0 = time.perf_counter()
    tables = run_jobs(train_pair, [(args, a, b, not args.no_progress and workers == 1) for a, b in pairs], workers,
                      threads, names=[f"pair {a},{b}" for a, b in pairs])
    if not dist_env().is_main:
        return
    order = {v: i for i, v in enumerate(read_manifest(args.manifest)["video_id"].astype(str))}
    frames = pd.concat(tables, ignore_index=True)
    if len(frames):
        frames = frames.assign(_v=frames["video_id"].map(order)).sort_values(["fold", "_v", "frame_index"],
                                                                             kind="stable").drop(columns="_v")
    write_parquet(args.predictions, frames.reset_index(drop=True))
    print(f"train_frame_inner: {len(pairs)} inner models, {len(frames)} frame rows for "
          f"{frames['fold'].nunique() if len(frames) else 0} aggregators ({time.perf_counter() - t0:.0f} s)",
          file=sys.stderr)


if __name__ == "__main__":
    run(main, build_parser())
