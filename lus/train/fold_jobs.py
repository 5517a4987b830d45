"""Every fold of a training stage in worker processes: the orchestration train_frame and train_cnn_lstm share.

A stage gives a module-level ``train_fold(args, fold, progress) -> history rows`` (it must be importable by the
spawned workers, :mod:`lus.parallel`); this module picks the folds, drops the output folders of folds that no
longer exist, runs the jobs and writes every fold's rows to one DVCLive log (names ``fold_<k>/...``).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lus.data.folds import fold_partitions, load_folds
from lus.parallel import run_jobs, worker_count
from lus.train.distributed import dist_env
from lus.train.live import replay_histories

FoldJob = Callable[[argparse.Namespace, int, bool], list[dict[str, Any]]]


def remove_stale(folder: str | Path, pattern: str, keep: set[str]) -> None:
    """Delete the entries of ``folder`` matching ``pattern`` whose names are not in ``keep`` (files or folders):
    a stage that owns a persisted output folder drops what its current folds or architectures no longer write."""
    for path in sorted(Path(folder).glob(pattern)):
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def selected_folds(folds_path: str | Path, requested: Sequence[int] | None) -> list[int]:
    """``requested`` fold ids (sorted, unique), default every fold of the file; an unknown id fails here."""
    folds = load_folds(folds_path)
    chosen = sorted(set(requested)) if requested else list(range(len(folds)))
    for k in chosen:
        fold_partitions(folds, k, str(folds_path))
    return chosen


def run_fold_jobs(job: FoldJob, args: argparse.Namespace, folds: list[int], threads: int) -> None:
    """``job(args, k, progress)`` for every fold, ``args.workers`` at once (0 = one per core at ``threads``
    torch threads each). Uses ``args.out`` (``fold_<k>`` folders; stale ones are removed when every fold runs,
    i.e. without ``args.fold``), ``args.live`` and ``args.no_progress``."""
    workers = 1 if dist_env().distributed else worker_count(args.workers, len(folds), threads)
    if not args.fold:   # the stage owns --out: drop the folders of folds that no longer exist
        remove_stale(args.out, "fold_*", {f"fold_{k}" for k in folds})
    progress = not args.no_progress and workers == 1
    histories = run_jobs(job, [(args, k, progress) for k in folds], workers, threads,
                         names=[f"fold {k}" for k in folds])
    if dist_env().is_main:
        replay_histories(args.live, {f"fold_{k}": rows for k, rows in zip(folds, histories)})
