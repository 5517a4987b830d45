"""Stage baselines: chance levels and the linear probe of every task the report covers, on the run's folds.

    python -m stages.baselines --params params.yaml --frames data/frames --folds data/splits/folds.json \
        --manifest data/raw/manifest.csv --cache .cache/features --out models/baselines

Tasks, each where the data has its labels: ``frame`` (frame score 0-3; the video score as a weak label
where frames have none, as train_frame does), ``video`` (video score 0-3), ``cnn_lstm`` (the CNN-LSTM's
target, ``cnn_lstm.target``) and ``patient_covid`` (a patient's COVID-19 test from their videos). Per task
and fold: ``chance_prior``, ``chance_random`` and ``linear_probe`` (frozen ImageNet features of every
frame, pooled per video as mean and std, logistic regression; see :mod:`lus.train.baselines`).

Writes ``--out/metrics.json`` (``<task>.<method>.<metric>``, numbers only, summarised with the same
functions as the task's own models, so the evaluate stage puts them in the same tables) and
``--out/meta.json`` (backbone, task classes, provenance).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from lus.config.base import load_section
from lus.config.baselines import BaselinesSection
from lus.config.cnn_lstm import CnnLstmSection
from lus.config.data import BaseSection
from lus.data.folds import load_folds
from lus.data.frame_dataset import load_frame_table, read_index
from lus.data.frame_features import frame_table_features, pool_mean_std
from lus.data.manifest import patient_covid_labels, read_manifest, resolve_target
from lus.data.video_sampling import FeatureCache
from lus.io import atomic_dir, write_json
from lus.labels import SCORE_CLASSES
from lus.metrics.classification import accuracy_summary, class_summary, weighted_prf
from lus.metrics.video import video_summary
from lus.models.backbones import build_backbone
from lus.runtime import provenance, resolve_device, seed_everything
from lus.train.baselines import Task, task_baselines
from stages._cli import add_fold_data_args, run, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Chance levels and the linear probe of every task, on the run's patient-wise folds.")
    add_fold_data_args(parser)
    parser.add_argument("--cache", default=".cache/features", help="feature cache folder (not a DVC output)")
    parser.add_argument("--out", default="models/baselines", help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return weighted_prf(y_true, y_pred)[2]


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    cfg = load_section(BaselinesSection, args.params)
    target = load_section(CnnLstmSection, args.params).target
    torch.set_num_threads(cfg.num_threads or max(1, os.cpu_count() or 1))
    seed_everything(base.seed)
    folds = load_folds(args.folds)
    index = read_index(args.frames)
    manifest = read_manifest(args.manifest)
    videos = manifest[manifest["video_id"].isin(set(index["video_id"]))].sort_values("video_id").reset_index(drop=True)
    t0 = time.perf_counter()
    table = load_frame_table(args.frames, videos, cfg.input_size, index=index)
    videos = videos.set_index("video_id").loc[table.video_ids].reset_index()  # the table's video order
    device = resolve_device(cfg.device)
    backbone = build_backbone(cfg.backbone, cfg.weights, cfg.input_size).to(device)
    cache = FeatureCache(args.cache, backbone.key, {"what": "frozen per-frame features", **backbone.key_info})

    def extract(frames: np.ndarray) -> np.ndarray:
        return np.concatenate([backbone(frames[i:i + cfg.feature_batch]).cpu().numpy()
                               for i in range(0, len(frames), cfg.feature_batch)])

    frame_x = frame_table_features(table, extract, cache, progress=not args.no_progress)
    video_x = pool_mean_std(frame_x, table.video, len(table.video_ids))
    feature_s = time.perf_counter() - t0
    patient = np.asarray(table.patient_ids, dtype=object)
    common = dict(c_grid=cfg.c_grid, draws=cfg.chance_draws, seed=base.seed, max_iter=cfg.max_iter)

    tasks: list[tuple[Task, object, object, int | None]] = [
        (Task("frame", list(SCORE_CLASSES), table.targets, frame_x, patient[table.video]),
         accuracy_summary, accuracy, cfg.max_train_frames)]
    score = pd.to_numeric(videos["video_score"], errors="coerce").fillna(-1).astype(int).to_numpy()
    tasks.append((Task("video", list(SCORE_CLASSES), score, video_x, patient), video_summary, weighted_f1, None))
    column, classes, y_cls = resolve_target(videos, target)
    tasks.append((Task("cnn_lstm", classes, y_cls.to_numpy(), video_x, patient),
                  lambda per_fold, c=classes: class_summary(per_fold, c), accuracy, None))
    covid = patient_covid_labels(manifest)
    y_covid = np.array([covid.get(str(p), -1) for p in patient], np.int64)
    tasks.append((Task("patient_covid", ["negative", "positive"], y_covid, video_x, patient, unit=patient),
                  accuracy_summary, accuracy, None))

    t1 = time.perf_counter()
    metrics: dict[str, dict] = {}
    for task, summarise, select, max_train in tasks:
        if not (task.y >= 0).any():
            continue  # the data has no labels for this task: its table says "not applicable" anyway
        t_task = time.perf_counter()
        metrics[task.name] = task_baselines(task, folds, summarise, score=select, max_train=max_train, **common)
        print(f"baselines: {task.name}: {int((task.y >= 0).sum())} items, {time.perf_counter() - t_task:.1f} s")
    with atomic_dir(args.out) as out:  # both files or neither
        write_json(out / "metrics.json", metrics)
        write_json(out / "meta.json", {
            "backbone": backbone.key_info, "backbone_key": backbone.key, "feature_dim": int(frame_x.shape[1]),
            "video_features": "mean and std over all extracted frames of the video",
            "tasks": {t.name: t.classes for t, *_ in tasks if t.name in metrics}, "cnn_lstm_target": column,
            "frames_labelled": "frame labels" if (table.labels >= 0).any() else "weak (video score)",
            "params": cfg.to_dict(), "provenance": provenance(base.seed, device),
        })
    summary = ", ".join(f"{name} probe {m['linear_probe'].get('accuracy_mean', m['linear_probe'].get('f1_weighted_mean', 0)):.3f}"
                        for name, m in metrics.items())
    print(f"baselines: {len(table)} frames / {len(table.video_ids)} videos, {cfg.backbone} features "
          f"({cache.hits} cached, {cache.misses} computed, {feature_s:.1f} s), fits {time.perf_counter() - t1:.1f} s; "
          f"{summary}")


if __name__ == "__main__":
    run(main, build_parser())
