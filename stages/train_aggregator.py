"""Stage train_aggregator: uninorm aggregator and baselines of every patient-wise fold.

    python -m stages.train_aggregator --params params.yaml \
        --frames data/predictions/frames.parquet --folds data/splits/folds.json \
        --manifest data/raw/manifest.csv --out models/aggregator [--fold K ...]

Per fold (milliseconds each, so one process runs them in order, reseeded per fold): trains the neutral
elements on the fold's training videos (patients in ``train`` + ``val`` of fold K) from their out-of-fold
frame probabilities (``aggregator.cross_fit: inner``: from ``--inner-frames``, made by models that never saw
fold K's test patients, stage train_frame_inner), then predicts the fold's test videos with the uninorm
and every training-free baseline. Reads only the ``aggregator`` params section and ``base.seed``.

Writes ``<out>/fold_K.json`` (neutral elements, params, loss curve, data summary, provenance),
``<out>/fold_K_predictions.csv`` (``video_id, patient_id, fold, label, n_frames, pred_uninorm,
pred_<baseline>..., agg_0..agg_3``) and ``<out>/fold_K_metrics.json`` (flat numbers).

Inputs are joined by :func:`lus.data.aggregator_inputs.load_fold_data` (which videos train, which are
left out and why); fitting and the baselines are :func:`lus.train.aggregator.run_fold`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from lus.config.aggregator import AggregatorSection
from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.data.aggregator_inputs import add_fold_data_args, load_fold_data, read_frame_table
from lus.io import write_csv, write_json
from lus.metrics.video import fold_metrics
from lus.runtime import provenance, seed_everything
from lus.train.aggregator import run_fold
from lus.train.fold_jobs import remove_stale, selected_folds
from stages._cli import run, stage_parser

log = logging.getLogger("stages.train_aggregator")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Train the uninorm video-score aggregator of every fold and evaluate it with the baselines.")
    parser.add_argument("--fold", type=int, action="append", default=None,
                        help="fold id (index into folds.json); repeat for several; default: every fold")
    add_fold_data_args(parser)
    parser.add_argument("--inner-frames", default="data/predictions/frames_inner.parquet",
                        help="training videos' probabilities by inner cross-fitting (read when aggregator.cross_fit "
                             "is inner; stage train_frame_inner)")
    parser.add_argument("--out", default="models/aggregator", help="output folder")
    return parser


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    cfg = load_section(AggregatorSection, args.params)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    folds = selected_folds(args.folds, args.fold)
    out = Path(args.out)
    if not args.fold:   # the stage owns --out: drop the files of folds that no longer exist
        remove_stale(out, "fold_*", {f"fold_{k}{end}" for k in folds for end in (".json", "_predictions.csv",
                                                                                  "_metrics.json")})
    applicable = len(read_frame_table(Path(args.frames))) > 0   # else predict_frames wrote applicable: 0
    results = []
    for k in folds:   # every fold first, then the files: a failing fold leaves none of this run's files
        seed_everything(base.seed)   # each fold as if alone: its numbers do not depend on the others
        results.append((train_fold if applicable else not_applicable)(args, k, base, cfg))
    for k, (predictions, metrics, model) in zip(folds, results):
        write_csv(out / f"fold_{k}_predictions.csv", predictions)
        write_json(out / f"fold_{k}_metrics.json", metrics)
        write_json(out / f"fold_{k}.json", model)


def not_applicable(args: argparse.Namespace, fold: int, base: BaseSection, cfg: AggregatorSection
                   ) -> tuple[pd.DataFrame, dict, dict]:
    log.info("fold %d: not applicable (no frame predictions: no severity labels in this data source)", fold)
    return (pd.DataFrame(columns=["video_id", "label"]), {"applicable": 0},
            {"fold": fold, "applicable": 0, "reason": f"{args.frames} has no frame predictions"})


def train_fold(args: argparse.Namespace, fold: int, base: BaseSection, cfg: AggregatorSection
               ) -> tuple[pd.DataFrame, dict, dict]:
    """Fit and predict one fold; returns its predictions table, metrics and model document."""
    inner = args.inner_frames if cfg.cross_fit == "inner" else None
    train, test, info = load_fold_data(args.frames, args.folds, args.manifest, fold, train_frames_path=inner)
    fit, predictions = run_fold(train, test, cfg, fold, base.seed)
    metrics = fold_metrics(predictions)
    metrics["uninorm_train"] = {"loss": fit.train_loss, "accuracy": fit.train_accuracy,
                                **{f"neutral_{c}": v for c, v in enumerate(fit.neutral)}}
    model = {
        "fold": fold, "applicable": 1,
        "neutral": fit.neutral,
        "tnorm": cfg.tnorm,
        "off_diagonal": cfg.off_diagonal,
        "fit": {k: v for k, v in fit.to_dict().items() if k not in ("neutral", "curve")},
        "curve": fit.curve,
        "params": {"base": {"seed": base.seed}, "aggregator": cfg.to_dict()},
        "data": {**info, "frames": str(args.frames), "folds": str(args.folds), "manifest": str(args.manifest)},
        "provenance": provenance(base.seed),
    }
    log.info("fold %d: e = %s, %d train / %d test videos", fold,
             ", ".join(f"{v:.3f}" for v in fit.neutral), len(train), len(test))
    return predictions, metrics, model


if __name__ == "__main__":
    run(main, build_parser())
