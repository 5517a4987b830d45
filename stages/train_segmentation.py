"""Stage train_segmentation: the marker-segmentation architectures (METHODS §3) on the shared folds.

    python -m stages.train_segmentation --params params.yaml --frames data/frames \
        --folds data/splits/folds.json --manifest data/raw/manifest.csv \
        --out models/segmentation --plots plots/segmentation/archs [--arch unet ...]

Architectures (``segmentation.archs``, or ``--arch``) train side by side in worker processes
(:mod:`lus.parallel`, ``--workers``), each bit-identical to training it alone. ``--out`` is persisted, so
an interrupted run resumes from its checkpoints; a finished checkpoint is never reused (DVC reruns the stage
when code changed too, which the checkpoint's fingerprint of data and params cannot see).

Per architecture, for each fold of ``segmentation.folds`` (default [0]): train on the masked videos of the fold's
``train`` patients (paper augmentations on frame + mask, class-balanced draws), select the epoch on
its ``val`` patients, then predict its ``test`` patients. Reads ``segmentation`` and ``base.seed``.

Writes to ``--out/<arch>``: ``fold_<k>/{model.pt, checkpoint.pt, curve.csv, test_outputs.npz}`` (test
softmax, truth and frames for the ensemble stage), ``meta.json`` and ``metrics.json`` (flat:
``applicable``, ``fold_<k>.<metric>``, ``<metric>_mean``/``_std`` with dice_bin, dice_cat,
dice_cat_orig, pixel_acc, ...). Writes to ``--plots/<arch>``: ``fold_<k>_test.png`` overlays (PNG only; the
training curve is ``fold_<k>/curve.csv``, and every architecture's rows go to ``--live`` in DVCLive's format,
names ``<arch>/fold_<k>/...``). A data source without masks (covid-blues, pocus) is
not an error: the stage writes ``applicable: 0``, a note picture, and exits 0 so the pipeline continues.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.config.segmentation import SegmentationSection
from lus.data.folds import load_folds, patients_of
from lus.data.manifest import read_manifest
from lus.data.seg_dataset import (
    BalancedFrameSampler, SegAugment, SegDataset, class_presence, load_seg_frames, masked_videos,
)
from lus.io import write_json, write_npz
from lus.metrics.segmentation import fold_summary, quantise_probs, segmentation_scores
from lus.models.segmentation import build_segmentation_model, canonical_arch, predict_probs
from lus.parallel import add_workers_arg, run_jobs, worker_count
from lus.report.seg_overlays import pick_frames, save_message, save_overlay_grid
from lus.runtime import provenance, resolve_device, seed_everything
from lus.train.distributed import dist_env
from lus.train.fold_jobs import remove_stale
from lus.train.live import replay_histories
from lus.train.loop import TrainConfig, checkpoint_finished, fit
from stages._cli import add_fold_data_args, run, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Train the segmentation architectures on the shared patient-wise folds.")
    parser.add_argument("--arch", action="append", default=None,
                        help="unet | unetpp | deeplabv3plus; repeat for several; default: segmentation.archs")
    add_fold_data_args(parser)
    parser.add_argument("--out", default="models/segmentation", help="output folder (one <arch> folder each)")
    parser.add_argument("--plots", default="plots/segmentation/archs", help="picture folder (one <arch> folder each)")
    parser.add_argument("--live", default="", help="DVCLive folder for per-epoch metrics of every architecture and "
                                                   "fold (names <arch>/fold_<k>/...), e.g. dvclive/segmentation; "
                                                   "none if empty")
    add_workers_arg(parser, "architectures")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def make_model(cfg: SegmentationSection, arch: str) -> torch.nn.Module:
    return build_segmentation_model(arch, cfg.encoder, cfg.encoder_depth, cfg.decoder_channels, cfg.encoder_weights,
                                    cfg.aspp_rates, cfg.aspp_dropout)


def make_evaluate_fn(val, cfg: SegmentationSection, seed: int):
    """Validation metrics on a fixed, seeded subset of the val frames (``max_val_frames``)."""
    rows = np.arange(len(val))
    if cfg.max_val_frames and len(rows) > cfg.max_val_frames:
        rows = np.sort(np.random.default_rng(seed).choice(rows, cfg.max_val_frames, replace=False))
    frames, masks = val.frames[rows], val.masks[rows]

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        probs = predict_probs(model, frames, device)
        scores = segmentation_scores(probs.argmax(1), masks)
        nll = F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(masks).long())
        return {k: scores[k] for k in ("dice_bin", "dice_cat", "pixel_acc")} | {"loss": float(nll)}

    return evaluate


def train_fold(cfg: SegmentationSection, arch: str, seed: int, k: int, train, val, out_dir: Path,
               resume: bool, progress: bool):
    """Train one fold with the shared loop; returns (model, FitResult)."""
    seed_everything(seed)
    model = make_model(cfg, arch)
    dataset = SegDataset(train, SegAugment() if cfg.augment else None)
    n_draws = cfg.steps_per_epoch * cfg.batch_size
    sample_fn = BalancedFrameSampler(class_presence(train.masks), train.video, n_draws) if cfg.balanced_sampling else None
    has_val = len(val) > 0
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                       weight_decay=cfg.weight_decay, scheduler=cfg.scheduler, sampler="shuffle",
                       steps_per_epoch=cfg.steps_per_epoch,
                       select_metric=cfg.selection_metric if has_val else "score",
                       select_mode="min" if cfg.selection_metric == "loss" else "max",
                       seed=seed, device=cfg.device, progress=progress)

    def loss_fn(m, batch):
        x, y = batch
        loss = F.cross_entropy(m(x), y)
        return loss, {}

    fingerprint = {"arch": arch, "fold": k, "videos": train.video_ids, "n_train": len(train), "n_val": len(val),
                   "params": cfg.to_dict()}
    result = fit(model, dataset, loss_fn, out_dir, tcfg, evaluate_fn=make_evaluate_fn(val, cfg, seed) if has_val else None,
                 sample_fn=sample_fn, fingerprint=fingerprint, resume=resume)
    return model, result


def write_not_applicable(out: Path, plots: Path, arch: str, reason: str) -> None:
    write_json(out / "meta.json", {"arch": arch, "applicable": 0, "reason": reason, "folds": []})
    write_json(out / "metrics.json", {"applicable": 0})
    save_message(plots / "not_applicable.png", f"{arch}: not applicable\n{reason}")
    print(f"train_segmentation[{arch}]: not applicable ({reason}); wrote applicable: 0")


def main(args: argparse.Namespace) -> None:
    cfg = load_section(SegmentationSection, args.params)
    names = list(dict.fromkeys(args.arch or cfg.archs))   # folder names as given; models by canonical name
    for name in names:
        make_model(cfg, canonical_arch(name))  # fail fast on a bad arch, encoder or size before any work
    threads = cfg.num_threads or max(1, os.cpu_count() or 1)
    workers = 1 if dist_env().distributed else worker_count(args.workers, len(names), threads)
    if not args.arch:   # the stage owns --out and --plots: drop architectures no longer in the list
        for folder in (args.out, args.plots):
            remove_stale(folder, "*/", set(names))
    progress = not args.no_progress and workers == 1
    histories = run_jobs(train_arch, [(args, name, progress) for name in names], workers, threads, names=names)
    if dist_env().is_main:
        replay_histories(args.live, {f"{name}/{run}": rows for name, runs in zip(names, histories)
                                     for run, rows in runs.items()})


def train_arch(args: argparse.Namespace, name: str, progress: bool) -> dict[str, list[dict[str, float]]]:
    """Train, test and write one architecture (folder ``name``); returns its folds' history rows by ``fold_<k>``."""
    base = load_section(BaseSection, args.params)
    cfg = load_section(SegmentationSection, args.params)
    arch = canonical_arch(name)
    out, plots = Path(args.out) / name, Path(args.plots) / name
    out.mkdir(parents=True, exist_ok=True)
    plots.mkdir(parents=True, exist_ok=True)
    with_masks = set(masked_videos(args.frames))
    if not with_masks:
        write_not_applicable(out, plots, arch, "no video of this data source has masks")
        return {}
    manifest = read_manifest(args.manifest)
    patient_of = dict(zip(manifest["video_id"].astype(str), manifest["patient_id"].astype(str)))
    folds = load_folds(args.folds)
    device = resolve_device(cfg.device)
    per_fold, fold_meta, histories = {}, {}, {}
    for k in cfg.folds:
        parts = {}
        for part in ("train", "val", "test"):
            patients = patients_of(folds, k, [part])
            parts[part] = sorted(v for v in with_masks if patient_of.get(v) in patients)
        if not parts["train"] or not parts["test"]:
            raise ValueError(f"segmentation fold {k}: no masked videos among its train or test patients "
                             f"({len(parts['train'])} / {len(parts['test'])}); check the data source and folds")
        t0 = time.perf_counter()
        train, val = load_seg_frames(args.frames, parts["train"]), load_seg_frames(args.frames, parts["val"])
        fold_dir = out / f"fold_{k}"
        # resume only an interrupted run: DVC reruns this stage when anything changed, code included, which a
        # finished checkpoint's fingerprint (data and params) cannot see, so a finished one trains afresh
        resume = not args.no_resume and not checkpoint_finished(fold_dir / "checkpoint.pt")
        model, result = train_fold(cfg, arch, base.seed + k, k, train, val, fold_dir, resume, progress)
        histories[f"fold_{k}"] = result.history
        train_s = time.perf_counter() - t0
        if not dist_env().is_main:
            continue
        test = load_seg_frames(args.frames, parts["test"])
        probs = predict_probs(model, test.frames, next(model.parameters()).device)
        labels = probs.argmax(1).astype(np.uint8)
        per_fold[k] = segmentation_scores(labels, test.masks)
        write_npz(fold_dir / "test_outputs.npz", probs=quantise_probs(probs, cfg.output_dtype), masks=test.masks,
                  frames=test.frames, video_id=test.video_id_per_row(), frame=test.frame)
        vids = test.video_id_per_row()
        rows = pick_frames(test.masks, cfg.n_overlays, base.seed, vids)
        save_overlay_grid(plots / f"fold_{k}_test.png", test.frames[rows], test.masks[rows], labels[rows],
                          [f"{vids[r]} #{test.frame[r]}" for r in rows],
                          f"{arch} fold {k} test: dice_bin {per_fold[k]['dice_bin']:.3f}")
        fold_meta[k] = {"selected_epoch": result.best_epoch, "selected_score": result.best_score,
                        "epochs_run": result.epochs_run, "resumed_from": result.resumed_from,
                        "n_frames": {"train": len(train), "val": len(val), "test": len(test)},
                        "n_videos": {p: len(v) for p, v in parts.items()}}
        print(f"train_segmentation[{arch}] fold {k}: epoch {result.best_epoch} selected; test "
              + ", ".join(f"{m} {per_fold[k][m]:.3f}" for m in ("dice_bin", "dice_cat", "pixel_acc"))
              + f" ({train_s:.1f} s)", flush=True)
    if not dist_env().is_main:
        return histories
    metrics = {"applicable": 1.0, **fold_summary(per_fold)}
    metrics.update({f"fold_{k}.selected_epoch": float(m["selected_epoch"]) for k, m in fold_meta.items()})
    write_json(out / "metrics.json", metrics)
    write_json(out / "meta.json", {
        "arch": arch, "applicable": 1, "folds": list(per_fold), "classes": ["background", "score0", "score1",
                                                                            "score2", "score3"],
        "params": cfg.to_dict(), "seed": base.seed, "input": "grey 2x/255-1, shard size, padded to stride",
        "selection": f"val patients, {cfg.selection_metric}", "fold_details": fold_meta,
        "encoder_weights_source": getattr(model, "weights_source", cfg.encoder_weights),
        "provenance": provenance(base.seed, device),
    })
    return histories


if __name__ == "__main__":
    run(main, build_parser())
