"""Stage train_cnn_lstm: Barros et al.'s CNN-LSTM video classifier (METHODS §4) of every patient-wise fold.

    python -m stages.train_cnn_lstm --params params.yaml --frames data/frames \
        --folds data/splits/folds.json --manifest data/raw/manifest.csv \
        --frame-models models/frame --cache .cache/features --out models/cnn_lstm [--fold K ...]

Folds train side by side in worker processes (:mod:`lus.parallel`, ``--workers``), each bit-identical
to training it alone.

Per video: ``cnn_lstm.seq_len`` evenly spaced frames -> frozen backbone features (cached under
``--cache/<backbone key>/``: a rerun or another fold with the same backbone reuses them) -> LSTM head.
The ``frame_model`` backbone is fold K's own frame classifier (``--frame-models/fold_K``), trained on fold K's
training patients only, so nothing about the test patients leaks in. Train on the ``train`` patients'
videos, select the epoch (and stop early) on the ``val`` patients', predict the ``test`` patients'.
Target: diagnosis (covid, pneumonia, healthy) when every video has one (``cnn_lstm.target: auto``),
else the video score 0..3. Reads ``cnn_lstm`` and ``base.seed``.

Writes to ``--out/fold_<k>``: ``model.pt``, ``checkpoint.pt`` (only with ``cnn_lstm.checkpoint_every`` > 0),
``curve.csv`` (every fold's rows also go to ``--live`` in DVCLive's format, names ``fold_<k>/...``), ``meta.json`` (classes, backbone
key, params, provenance), ``predictions.csv`` (``video_id, patient_id, actual, predicted, p_<class>``:
the confusion rows) and ``metrics.json`` (flat: accuracy, per class precision/recall/f1/specificity).
Mean ± std over folds: ``lus.metrics.classification.summarise_cnn_lstm`` (evaluate stage).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus.config.base import load_section
from lus.config.cnn_lstm import CnnLstmSection
from lus.config.data import BaseSection
from lus.data.folds import fold_partitions, load_folds
from lus.io import write_csv, write_json
from lus.metrics.classification import classification_scores
from lus.models.cnn_lstm import predict_probs
from lus.parallel import add_workers_arg, run_jobs, worker_count
from lus.runtime import provenance, resolve_device, seed_everything
from lus.train.cnn_lstm import fit_head, labelled_videos, sequence_feature_tensor
from lus.train.distributed import dist_env
from lus.train.fold_jobs import run_fold_jobs, selected_folds
from lus.train.loop import TrainConfig, checkpoint_finished
from stages._cli import add_fold_data_args, run, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Train the CNN-LSTM video classifier of every patient-wise fold.")
    parser.add_argument("--fold", type=int, action="append", default=None,
                        help="fold id (index into folds.json); repeat for several; default: every fold")
    add_fold_data_args(parser)
    parser.add_argument("--frame-models", default="models/frame",
                        help="folder of the frame models, fold_<k> each (backbone frame_model)")
    parser.add_argument("--cache", default=".cache/features", help="feature cache folder (not a DVC output)")
    parser.add_argument("--out", default="models/cnn_lstm", help="output folder (one fold_<k> folder per fold)")
    parser.add_argument("--live", default="", help="DVCLive folder for per-epoch metrics of every fold (names "
                                                   "fold_<k>/...), e.g. dvclive/cnn_lstm; none if empty")
    add_workers_arg(parser, "folds")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def main(args: argparse.Namespace) -> None:
    cfg = load_section(CnnLstmSection, args.params)
    folds = selected_folds(args.folds, args.fold)
    threads = cfg.num_threads or max(1, os.cpu_count() or 1)
    workers = 1 if dist_env().distributed else worker_count(args.workers, len(folds), threads)
    if workers > 1 and cfg.backbone != "frame_model" and cfg.weights != "none":
        warm_feature_cache(args, cfg, workers, threads)
    run_fold_jobs(train_fold, args, folds, threads)


def warm_feature_cache(args: argparse.Namespace, cfg: CnnLstmSection, workers: int, threads: int) -> None:
    """A backbone shared by every fold (fixed ImageNet or file weights): its features of every labelled video,
    computed once, the videos split over the workers, before the folds start. Without this the first folds would
    compute the same features side by side. Each video is computed exactly as a fold would (same backbone, batch
    and thread count), so the folds read the same bytes either way."""
    ids = labelled_videos(args.frames, args.manifest, cfg.target)[0]["video_id"].tolist()
    chunks = [ids[i::workers] for i in range(workers) if ids[i::workers]]
    t0 = time.perf_counter()
    computed = run_jobs(cache_features, [(args, chunk) for chunk in chunks], len(chunks), threads,
                        names=[f"features {i}" for i in range(len(chunks))])
    print(f"train_cnn_lstm: {cfg.backbone} features of {len(ids)} videos ({sum(computed)} computed, the rest cached) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)


def cache_features(args: argparse.Namespace, video_ids: list[str]) -> int:
    """Put the features of ``video_ids`` into the cache; returns how many were computed."""
    cfg = load_section(CnnLstmSection, args.params)
    return sequence_feature_tensor(cfg, video_ids, args.frames, args.cache)[2].misses


def train_fold(args: argparse.Namespace, k: int, progress: bool) -> list[dict[str, float]]:
    """Train and write ``--out/fold_<k>``; returns the per-epoch history rows."""
    base = load_section(BaseSection, args.params)
    cfg = load_section(CnnLstmSection, args.params)
    seed = base.seed + k
    seed_everything(seed)
    out = Path(args.out) / f"fold_{k}"
    frame_model = Path(args.frame_models) / f"fold_{k}"
    parts = fold_partitions(load_folds(args.folds), k, str(args.folds))
    videos, column, classes = labelled_videos(args.frames, args.manifest, cfg.target)
    part_of = {p: part for part, ids in parts.items() for p in ids}
    videos["part"] = videos["patient_id"].astype(str).map(part_of).fillna("")
    if not (videos["part"] == "train").any() or not (videos["part"] == "test").any():
        raise ValueError(f"cnn_lstm fold {k}: no labelled ({column}) videos among its train or test patients")

    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    feats, backbone, cache = sequence_feature_tensor(cfg, videos["video_id"].tolist(), args.frames, args.cache,
                                                     frame_model_dir=frame_model, fold=k, progress=progress)
    feat_s = time.perf_counter() - t0
    y = torch.as_tensor(videos["y"].to_numpy(), dtype=torch.long)
    rows = {p: np.flatnonzero(videos["part"].to_numpy() == p) for p in ("train", "val", "test")}
    fingerprint = {"fold": k, "backbone": backbone.key, "videos": videos["video_id"].tolist(), "target": column,
                   "params": cfg.to_dict()}
    t1 = time.perf_counter()
    checkpoint = out / TrainConfig.checkpoint_name
    if cfg.checkpoint_every == 0 and dist_env().is_main:
        checkpoint.unlink(missing_ok=True)  # a stale one from a run that wrote checkpoints
    resume = not args.no_resume and not checkpoint_finished(checkpoint)   # as train_frame
    model, result = fit_head(feats, y, rows, len(classes), cfg, seed, out, progress=progress, resume=resume,
                             fingerprint=fingerprint)
    train_s = time.perf_counter() - t1
    if not dist_env().is_main:
        return result.history
    te = rows["test"]
    probs = predict_probs(model, feats[torch.from_numpy(te)])
    pred = probs.argmax(1)
    test = videos.iloc[te]
    table = pd.DataFrame({"video_id": test["video_id"].to_numpy(), "patient_id": test["patient_id"].astype(str).to_numpy(),
                          "actual": [classes[i] for i in test["y"]], "predicted": [classes[i] for i in pred]})
    for c, name in enumerate(classes):
        table[f"p_{name}"] = probs[:, c]
    write_csv(out / "predictions.csv", table)
    scores = classification_scores(test["y"].to_numpy(), pred, classes)
    write_json(out / "metrics.json", scores)
    write_json(out / "meta.json", {
        "fold": k, "seed": seed, "target": column, "classes": classes, "backbone": backbone.key_info,
        "backbone_key": backbone.key, "feature_dim": backbone.dim, "params": cfg.to_dict(),
        "frame_model": str(frame_model) if cfg.backbone == "frame_model" else "",
        "n_videos": {p: int(len(r)) for p, r in rows.items()}, "selected_epoch": result.best_epoch,
        "selected_score": result.best_score, "epochs_run": result.epochs_run,
        "provenance": provenance(seed, device),
    })
    print(f"train_cnn_lstm fold {k}: {column}, backbone {cfg.backbone} ({backbone.dim}-d, cache {cache.hits} hits / "
          f"{cache.misses} computed, {feat_s:.1f} s), epoch {result.best_epoch}/{result.epochs_run}, "
          f"test accuracy {scores['accuracy']:.3f} on {len(te)} videos ({train_s:.1f} s)", flush=True)
    return result.history


if __name__ == "__main__":
    run(main, build_parser())
