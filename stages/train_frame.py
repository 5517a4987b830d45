"""Stage train_frame: frame severity model (Reg-STN + SORD or a Table-1 baseline) of every patient-wise fold.

    python -m stages.train_frame --params params.yaml --frames data/frames \
        --folds data/splits/folds.json --manifest data/raw/manifest.csv --out models/frame [--fold K ...]

Folds train side by side in worker processes (:mod:`lus.parallel`; ``--workers``, default one per core
at ``frame_model.num_threads`` threads each), each bit-identical to training it alone. A fold's process
loads only the shards of its ``train`` and ``val`` patients (test patients are never read),
trains on ``train``, selects the epoch by crop-1 accuracy on ``val``. Frame target = shard ``labels``
when present, else the manifest ``video_score`` as a weak label (covid-blues has no frame labels).
Reads the ``frame_model`` section and ``base.seed``.

With ``--crops``, writes ``--crops/fold_<k>/epoch_<NNN>.jpg`` after every epoch: [frame with crop boxes |
crop 1 | crop 2] of one fixed frame per score from the training and from the validation patients (METHODS
§1.5), drawn with the weights that validation saw.

Writes to ``--out/fold_<k>``: ``model.pt`` (state dict of the selected epoch; ``torch.load(weights_only=True)``),
``meta.json`` (params, classes, arch, sizes, seed, provenance, selected epoch, data counts),
``curve.csv`` (per-epoch loss parts and validation metrics; the same rows of every fold go to ``--live``
in DVCLive's format, named ``fold_<k>/...``, see ``lus.train.live``) and ``checkpoint.pt`` (resume state: an
interrupted run continues from its last finished epoch when data, params and fold are unchanged; a
finished checkpoint is ignored, since DVC only reruns the stage when something changed; ``--no-resume``
always starts afresh). dvc.yaml declares ``--out`` with ``persist: true`` for this to work; a run over every
fold removes ``fold_<k>`` folders of folds that no longer exist.

A data source without any severity (no frame labels, no video scores; e.g. pocus, which only has
diagnoses) is not an error: the stage writes ``meta.json`` with ``applicable: 0`` and the reason, and
placeholder ``model.pt``/``checkpoint.pt``/``curve.csv`` holding no weights, so the pipeline continues
to the stages that apply (the CNN-LSTM with a torchvision backbone). Downstream frame stages pass the
flag on.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.config.frame_model import FrameModelSection
from lus.data.folds import fold_partitions, load_folds
from lus.data.frame_dataset import load_frame_table
from lus.data.manifest import read_manifest
from lus.io import write_json, write_text, write_torch
from lus.labels import SCORES
from lus.parallel import add_workers_arg
from lus.report.localization import epoch_crop_grid, pick_frames, write_jpeg
from lus.runtime import provenance
from lus.train.distributed import dist_env
from lus.train.frame import FoldFrames, predict, supervision_label, train_frame_model
from lus.train.fold_jobs import remove_stale, run_fold_jobs, selected_folds
from lus.train.loop import checkpoint_finished
from stages._cli import add_fold_data_args, run, stage_parser

CLASSES = list(SCORES)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Train the frame severity model of every patient-wise fold.")
    parser.add_argument("--fold", type=int, action="append", default=None,
                        help="fold id (index into folds.json); repeat for several; default: every fold")
    add_fold_data_args(parser)
    parser.add_argument("--out", default="models/frame", help="output folder (one fold_<k> folder per fold)")
    parser.add_argument("--live", default="", help="DVCLive folder for per-epoch metrics of every fold (names "
                                                   "fold_<k>/...; dvc exp show / dvc plots), e.g. dvclive/frame; "
                                                   "none if empty")
    parser.add_argument("--crops", default="", help="folder for the per-epoch [frame | crop 1 | crop 2] pictures "
                                                    "(METHODS §1.5; fold_<k>/epoch_<n>.jpg), e.g. plots/frame/crops; "
                                                    "none if empty")
    add_cache_arg(parser)
    add_workers_arg(parser, "folds")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def add_cache_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=".cache/features",
                        help="feature cache folder (not a DVC output): frozen-prefix features of frame_model.arch "
                             "mobilenet_v2; a frozen ImageNet backbone shares them with stages baselines and train_cnn_lstm")


def fold_patients(folds_path: str | Path, fold: int) -> dict[str, list[str]]:
    return fold_partitions(load_folds(folds_path), fold, str(folds_path))


def data_digest(images: torch.Tensor, targets: np.ndarray) -> str:
    """SHA-1 of the loaded frames and targets (part of the checkpoint fingerprint)."""
    h = hashlib.sha1(images.contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(targets, dtype=np.int64).tobytes())
    return h.hexdigest()


def thread_count(n: int) -> int:
    """``n`` threads, or all cores shared among the torchrun processes of this machine (n = 0)."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return n if n > 0 else max(1, (os.cpu_count() or 1) // local)


class EpochCropPictures:
    """METHODS §1.5: after every epoch, [frame with boxes | crop 1 | crop 2] of fixed frames, one per score from
    the training patients and one from the validation patients (the paper shows test frames; this stage never
    loads test patients), drawn with the weights validation saw -> ``<folder>/epoch_<NNN>.jpg``.

    A run resumed from a checkpoint draws the epochs it trains (DVC empties the folder before a rerun)."""

    def __init__(self, folder: Path, fold: int | str, table, parts: dict[str, np.ndarray], seed: int) -> None:
        self.folder, self.fold = folder, fold
        targets, videos = table.targets, table.video_id_per_row()
        self.rows = {name: rows[pick_frames(targets[rows], videos[rows], 1, seed)] for name, rows in parts.items()}
        self.captions = {name: [f"{videos[r]} #{table.frame_index[r]}, score {targets[r]}" for r in rows]
                         for name, rows in self.rows.items()}
        self.images = table.images
        self.thetas: dict[str, dict[str, np.ndarray]] | None = None

    def on_validation(self, model: torch.nn.Module) -> None:
        device = next(model.parameters()).device
        self.thetas = {name: predict(model, self.images[torch.from_numpy(rows)], device=device)
                       for name, rows in self.rows.items()}

    def on_epoch_end(self, epoch: int, row: dict[str, float]) -> None:
        if self.thetas is None:
            return
        columns = {name: [(self.images[r].numpy(), out["theta1"][i], out["theta2"][i], self.captions[name][i])
                          for i, r in enumerate(self.rows[name])] for name, out in self.thetas.items()}
        acc = row.get("val_accuracy")
        title = f"fold {self.fold}, epoch {epoch}" + ("" if acc is None else f", val accuracy {acc:.3f}")
        write_jpeg(self.folder / f"epoch_{epoch:03d}.jpg", epoch_crop_grid(columns, title))
        self.thetas = None


def write_not_applicable(out: Path, fold: int | str, sec: FrameModelSection, reason: str) -> None:
    """Outputs that say "no severity to learn" instead of a model (DVC needs every declared output)."""
    for name in ("model.pt", "checkpoint.pt"):
        write_torch(out / name, {})  # an empty state dict: loading it into a model fails loudly
    write_text(out / "curve.csv", "epoch\n")
    write_json(out / "meta.json", {"applicable": 0, "reason": reason, "arch": sec.arch, "fold": fold,
                                   "input_size": sec.input_size, "crop_size": sec.crop_size,
                                   "classes": CLASSES, "params": sec.to_dict()})
    print(f"train_frame fold {fold}: not applicable ({reason}); wrote applicable: 0")


def main(args: argparse.Namespace) -> None:
    sec = load_section(FrameModelSection, args.params)
    folds = selected_folds(args.folds, args.fold)
    run_fold_jobs(train_fold, args, folds, thread_count(sec.num_threads))
    if args.crops:   # a declared output, even when no fold drew (e.g. a source without severity labels)
        crops = Path(args.crops)
        crops.mkdir(parents=True, exist_ok=True)
        if not args.fold:
            remove_stale(crops, "fold_*", {f"fold_{k}" for k in folds})


def train_fold(args: argparse.Namespace, fold: int, progress: bool) -> list[dict[str, float]]:
    """Train and write ``--out/fold_<fold>``; returns the per-epoch history rows (none if not applicable)."""
    base = load_section(BaseSection, args.params)
    parts = fold_patients(args.folds, fold)
    if not parts["train"]:
        raise ValueError(f"{args.folds}: fold {fold} has no training patients")
    crops = Path(args.crops) / f"fold_{fold}" if args.crops else None
    history, _ = train_on_patients(args, Path(args.out) / f"fold_{fold}", fold, parts["train"], parts["val"],
                                   base.seed + fold, progress, crops)
    return history


def train_on_patients(args: argparse.Namespace, out: Path, fold: int | str, train_patients: list[str],
                      val_patients: list[str], seed: int, progress: bool, crops: Path | None = None
                      ) -> tuple[list[dict[str, float]], torch.nn.Module | None]:
    """Train one frame model on the frames of ``train_patients`` (epoch chosen on ``val_patients``) and write
    ``out``; no other patient's frames are loaded. ``fold`` names the run in meta.json and the checkpoint
    fingerprint (an outer fold id, or e.g. ``pair_0_1`` for stage train_frame_inner). Returns the history rows
    and the model (none if not applicable). Reads ``--params``, ``--frames``, ``--manifest``, ``--no-resume``."""
    sec = load_section(FrameModelSection, args.params)
    manifest = read_manifest(args.manifest)
    wanted = set(train_patients) | set(val_patients)
    videos = manifest[manifest["patient_id"].astype(str).isin(wanted)]   # other patients are never loaded
    t0 = time.perf_counter()
    table = load_frame_table(args.frames, videos, sec.input_size)
    tr, va = table.rows_of_patients(train_patients), table.rows_of_patients(val_patients)
    if len(tr) == 0:
        raise ValueError(f"fold {fold}: no extracted frames for the training patients (check {args.frames})")
    targets = table.targets
    if (targets[tr] < 0).all():
        if dist_env().is_main:
            write_not_applicable(out, fold, sec, "no frame labels or video severity scores in this "
                                 "data source (e.g. pocus has diagnoses only)")
            if crops is not None and crops.is_dir():
                shutil.rmtree(crops)   # pictures of an earlier run on other data
        return [], None
    load_s = time.perf_counter() - t0
    fingerprint = {"fold": fold, "videos": table.video_ids, "n_frames": len(table),
                   "data_sha1": data_digest(table.images, targets),
                   "train_patients": list(train_patients), "val_patients": list(val_patients), "params": sec.to_dict()}
    # Resume only an interrupted run: a finished checkpoint means DVC reruns the stage because something
    # changed (data, params or code), so train afresh.
    resume = not args.no_resume and not checkpoint_finished(out / "checkpoint.pt")
    if dist_env().is_main:   # the finished-run files go first: a killed run leaves only its checkpoint
        for name in ("model.pt", "meta.json"):
            (out / name).unlink(missing_ok=True)
    t1 = time.perf_counter()
    pictures = None
    if crops is not None and dist_env().is_main:
        if not resume and crops.is_dir():
            shutil.rmtree(crops)   # pictures of an earlier run
        pictures = EpochCropPictures(crops, fold, table, {"training patients": tr[targets[tr] >= 0],
                                                          "validation patients": va[targets[va] >= 0]}, seed)
    model, result = train_frame_model(FoldFrames(table, tr, va), sec, seed, out, cache_dir=args.cache,
                                      fingerprint=fingerprint, resume=resume, progress=progress,
                                      on_validation=pictures.on_validation if pictures else None,
                                      on_epoch_end=pictures.on_epoch_end if pictures else None)
    if not dist_env().is_main:
        return result.history, model
    n_frame_labels = int((table.labels[tr] >= 0).sum())
    label_source = supervision_label(sec, n_frame_labels, len(tr))
    meta = {
        "applicable": 1, "arch": sec.arch, "classes": CLASSES, "input_size": sec.input_size, "crop_size": sec.crop_size,
        "fold": fold, "seed": seed, "params": sec.to_dict(),
        "selected_epoch": result.best_epoch, "selected_val_accuracy": result.best_score,
        "last_epoch": result.epochs_run,
        "last_val_accuracy": result.history[-1].get("val_accuracy") if result.history else None,
        "selection": ("val patients, video accuracy of the pooled frame probabilities" if sec.supervision == "video"
                      else "val patients, crop-1 accuracy (frame label, else weak label)"),
        "supervision": sec.supervision,
        "label_source": label_source,
        "n_train_frames": int(len(tr)), "n_val_frames": int(len(va)),
        "n_train_videos": len({table.video_ids[v] for v in table.video[tr]}), "n_frame_labels_train": n_frame_labels,
        "train_class_counts": np.bincount(targets[tr][targets[tr] >= 0], minlength=4).tolist(),
        "resumed_from_epoch": result.resumed_from,
        "provenance": provenance(seed, next(model.parameters()).device),
    }
    write_json(out / "meta.json", meta)
    # timings only in the log: meta.json must be identical when the same inputs are trained again
    val = "" if result.best_score is None else f" (val accuracy {result.best_score:.3f})"
    print(f"train_frame {'fold ' if isinstance(fold, int) else ''}{fold}: epoch {result.best_epoch}/{result.epochs_run} "
          f"selected{val}; data {load_s:.1f} s, training {time.perf_counter() - t1:.1f} s", file=sys.stderr, flush=True)
    return result.history, model


if __name__ == "__main__":
    run(main, build_parser())
