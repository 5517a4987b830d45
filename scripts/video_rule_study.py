"""Which aggregator wins depends on how the video score relates to the frame scores: a measurement.

Usage (from the project root, after `dvc repro`; the ICLUS part needs the converted ICLUS copy)::

    lus iclus-convert --trust-pickle --src ../shared/data/iclus-frame-predictions --out data/iclus
    python scripts/video_rule_study.py --iclus data/iclus

1. **ICLUS** (real clinicians): each rule of the synthetic generator (``max``, ``mode``, ``sustained`` at
   several shares) is applied to the ICLUS frame ground truth of every video and compared with the
   clinicians' own video score (exact agreement, agreement within one point). This says which rule
   makes synthetic video scores behave like the human ones.
2. **Synthetic**: the video scores of the run's videos are recomputed from their frame labels
   under each rule (same rater-noise draws for every rule: ``synthetic.video_score_noise``), and the
   uninorm aggregator (params.yaml's ``aggregator`` section) and the baselines are trained/evaluated on
   the pipeline's out-of-fold frame probabilities and patient-wise folds, exactly as train_aggregator
   does. Printed per rule and method: the fold-mean weighted F1, averaged over several rater-noise draws
   (the noise decides a tenth of the labels, so one draw moves the table by several points).

The folds were stratified by the generator's own video scores, which is harmless here (stratification
only balances the folds). An analysis tool, not a pipeline stage.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.aggregator import AggregatorSection  # noqa: E402
from lus.config.base import load_section  # noqa: E402
from lus.config.synthetic import VIDEO_SCORE_RULES, SyntheticSection  # noqa: E402
from lus.data.aggregator_inputs import add_fold_data_args, load_fold_data  # noqa: E402
from lus.data.folds import load_folds  # noqa: E402
from lus.data.iclus import load_iclus  # noqa: E402
from lus.metrics.video import fold_metrics  # noqa: E402
from lus.synth.labels import video_score  # noqa: E402
from lus.train.aggregator import run_fold  # noqa: E402

METHODS = ("uninorm", "argmax_mean", "max_argmax", "majority", "threshold_count_15")


def frame_labels_by_video(frames: pd.DataFrame) -> dict[str, np.ndarray]:
    """Frame labels (T,) per video in temporal order."""
    ordered = frames.sort_values(["video_id", "frame_index"])
    return {str(v): g["label"].to_numpy(dtype=np.int64) for v, g in ordered.groupby("video_id", sort=False)}


def rule_scores(labels: dict[str, np.ndarray], rule: str, share: float, noise: float, seed: int) -> dict[str, int]:
    """Video score of every video under ``rule``; video i gets the same noise draws under every rule."""
    return {v: video_score(lab, rule, share, noise, np.random.default_rng([seed, i]))
            for i, (v, lab) in enumerate(sorted(labels.items()))}


def iclus_agreement(data_dir: Path, shares: list[float]) -> None:
    frames, videos = load_iclus(data_dir)
    labels = frame_labels_by_video(frames)
    truth = dict(zip(videos["video_id"].astype(str), videos["video_score"].astype(int)))
    ids = sorted(v for v in labels if v in truth)
    y = np.array([truth[v] for v in ids])
    print(f"ICLUS: video score from the frame ground truth vs the clinicians' video score ({len(ids)} videos)\n")
    print("| rule | exact agreement | within one point | mean(rule - clinician) |")
    print("|---|---|---|---|")
    candidates = [("max", 0.0), ("mode", 0.0)] + [("sustained", s) for s in shares]
    for rule, share in candidates:
        pred = np.array([video_score(labels[v], rule, share, 0.0, np.random.default_rng(0)) for v in ids])
        name = f"sustained, share {share:g}" if rule == "sustained" else rule
        print(f"| {name} | {np.mean(pred == y):.3f} ({int(np.sum(pred == y))}/{len(ids)}) | "
              f"{np.mean(np.abs(pred - y) <= 1):.3f} | {np.mean(pred - y):+.2f} |")
    print()


def synthetic_table(args: argparse.Namespace) -> None:
    cfg = load_section(AggregatorSection, args.params)
    syn = load_section(SyntheticSection, args.params)
    frames = pd.read_parquet(args.frames, columns=["video_id", "frame_index", "label"])
    if (frames["label"] < 0).any():
        raise SystemExit(f"{args.frames}: frames without a frame label; the study needs fully labelled "
                         "(synthetic) data")
    # several rows per frame (one per fold model) carry the same label; keep one
    labels = frame_labels_by_video(frames.drop_duplicates(["video_id", "frame_index"]))
    # each fold's videos and probabilities once; only their labels change with the rule and the noise draw
    fold_data = [load_fold_data(args.frames, args.folds, args.manifest, k)[:2]
                 for k in range(len(load_folds(args.folds)))]
    n_folds = len(fold_data)
    print(f"Synthetic: weighted F1 (%), mean over {n_folds} folds, averaged over {len(args.seeds)} rater-noise "
          f"draws (range in brackets); video scores recomputed under each rule (share {syn.video_score_share:g}, "
          f"rater noise {syn.video_score_noise:g}; aggregator: tnorm {cfg.tnorm}, off_diagonal {cfg.off_diagonal})\n")
    print("| rule | " + " | ".join(METHODS) + " | uninorm beats argmax_mean and max_argmax |")
    print("|---|" + "---|" * (len(METHODS) + 1))
    for rule in VIDEO_SCORE_RULES:
        # fold-mean weighted F1 per noise seed, per method
        per_method: dict[str, list[float]] = {m: [] for m in METHODS}
        for seed in args.seeds:
            scores = rule_scores(labels, rule, syn.video_score_share, syn.video_score_noise, seed)
            folds: dict[str, list[float]] = {m: [] for m in METHODS}
            for k, (train, test) in enumerate(fold_data):
                train, test = (replace(v, labels=[scores[i] for i in v.video_ids]) for v in (train, test))
                _, predictions = run_fold(train, test, cfg, k, args.base_seed)
                metrics = fold_metrics(predictions)
                for m in METHODS:
                    folds[m].append(metrics[m]["f1_weighted"])
            for m in METHODS:
                per_method[m].append(float(np.mean(folds[m])))
        wins = sum(u > max(a, b) for u, a, b in
                   zip(per_method["uninorm"], per_method["argmax_mean"], per_method["max_argmax"]))
        cells = [f"{100 * np.mean(v):.1f} ({100 * min(v):.1f}-{100 * max(v):.1f})" for v in per_method.values()]
        print(f"| {rule} | " + " | ".join(cells) + f" | {wins}/{len(args.seeds)} |", flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    add_fold_data_args(ap)
    ap.add_argument("--iclus", default="", help="converted ICLUS folder (lus iclus-convert); empty = skip part 1")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.25, 0.4, 0.5], help="sustained shares (ICLUS)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds of the rater-noise draws")
    ap.add_argument("--base-seed", type=int, default=0, help="aggregator training seed (base.seed)")
    args = ap.parse_args()
    if args.iclus:
        iclus_agreement(Path(args.iclus), args.shares)
    synthetic_table(args)


if __name__ == "__main__":
    main()
