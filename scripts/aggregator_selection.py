"""Would choosing aggregator settings by nested cross-validation beat the paper's settings?

Usage (from the project root, after `dvc repro` has written the frame predictions)::

    python scripts/aggregator_selection.py                 # default grid, 3 inner folds
    python scripts/aggregator_selection.py --inner 4 --epochs 30 100

For every outer fold of data/splits/folds.json, the candidate settings (init_neutral x off_diagonal x
epochs, on top of params.yaml's aggregator section) are scored by patient-grouped inner cross-validation
on that fold's training videos only (the project's split, stratified by video score; pooled weighted F1
of the inner held-out videos); the best one is refit on all training videos and evaluated once on the
fold's test videos. The test videos never take part in the choice. Printed next to the paper's
settings and the training-free baselines, as weighted F1 mean and population std over the outer folds
(the numbers of metrics/video.json).

An analysis tool, not a pipeline stage: it reports whether the extra choice pays off on the data at hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.aggregator import OFF_DIAGONAL_RULES, AggregatorSection  # noqa: E402
from lus.config.base import load_section  # noqa: E402
from lus.data.aggregator_inputs import add_fold_data_args, load_fold_data  # noqa: E402
from lus.data.folds import load_folds, make_folds  # noqa: E402
from lus.data.video_set import VideoSet  # noqa: E402
from lus.metrics.classification import weighted_prf  # noqa: E402
from lus.models.uninorm import predict  # noqa: E402
from lus.models.video_baselines import baseline_predictions  # noqa: E402
from lus.train.aggregator import fit_aggregator  # noqa: E402


def f1(labels: np.ndarray, pred: np.ndarray) -> float:
    keep = labels >= 0
    return weighted_prf(labels[keep], pred[keep])[2]


def inner_groups(videos: VideoSet, k: int, seed: int) -> np.ndarray:
    """Inner test fold of every video: the project's patient-wise split (stratified by video score)."""
    table = pd.DataFrame({"video_id": videos.video_ids, "patient_id": videos.patient_ids,
                          "video_score": videos.labels.astype(str)})
    folds = make_folds(table, k, val_fraction=0.2, seed=seed, stratify_by="video_score")["folds"]
    fold_of = {p: g for g, fold in enumerate(folds) for p in fold["test"]}
    return np.array([fold_of[p] for p in videos.patient_ids])


def inner_score(videos: VideoSet, cfg: AggregatorSection, groups: np.ndarray, seed: int) -> float:
    pred = np.full(len(videos), -1)
    for g in np.unique(groups):
        fit = fit_aggregator(videos.subset(groups != g), cfg, seed)
        pred[groups == g] = predict(videos.subset(groups == g), fit.neutral, cfg.tnorm, cfg.off_diagonal)[1]
    return f1(videos.labels, pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    add_fold_data_args(ap)
    ap.add_argument("--inner", type=int, default=3, help="inner folds (patient-grouped)")
    ap.add_argument("--init", type=float, nargs="+", default=[0.0, 0.25, 0.5], help="candidate init_neutral")
    ap.add_argument("--off-diagonal", nargs="+", default=list(OFF_DIAGONAL_RULES), choices=OFF_DIAGONAL_RULES)
    ap.add_argument("--epochs", type=int, nargs="+", default=[30, 100], help="candidate Adam steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    base = load_section(AggregatorSection, args.params)
    grid = [dataclasses.replace(base, init_neutral=i, off_diagonal=o, epochs=e)
            for e, i, o in itertools.product(args.epochs, args.init, args.off_diagonal)]
    n_folds = len(load_folds(args.folds))
    scores: dict[str, list[float]] = {"paper settings (params.yaml)": [], "nested selection": []}
    for k in range(n_folds):
        train, test, _ = load_fold_data(args.frames, args.folds, args.manifest, k)
        groups = inner_groups(train, args.inner, args.seed)
        inner = [inner_score(train, cfg, groups, args.seed) for cfg in grid]
        best = grid[int(np.argmax(inner))]  # ties: the first candidate in grid order
        for name, cfg in (("paper settings (params.yaml)", base), ("nested selection", best)):
            fit = fit_aggregator(train, cfg, args.seed)
            scores[name].append(f1(test.labels, predict(test, fit.neutral, cfg.tnorm, cfg.off_diagonal)[1]))
        for name, pred in baseline_predictions(test).items():
            scores.setdefault(name, []).append(f1(test.labels, pred))
        print(f"fold {k}: chose init_neutral={best.init_neutral} off_diagonal={best.off_diagonal} "
              f"epochs={best.epochs} (inner F1 {max(inner):.3f}); test F1 {scores['nested selection'][-1]:.3f}, "
              f"paper settings {scores['paper settings (params.yaml)'][-1]:.3f}")
    print(f"\nweighted F1 over {n_folds} outer folds (mean ± population std):")
    for name, values in scores.items():
        print(f"  {name:30s} {100 * np.mean(values):5.1f} ± {100 * np.std(values):4.1f}")


if __name__ == "__main__":
    main()
