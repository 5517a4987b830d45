"""Nested patient-wise cross-validation: choose a configuration on training patients only (issue 13, item 5).

For every fold seed and every outer fold (the pipeline's own ``make_folds``, so the outer test patients are
the ones the pipeline tests on), the outer fold's training patients (``train`` + ``val``) are split again into
``inner`` patient-wise folds with the same stratification. Every candidate is trained and scored on every inner
fold; the candidate with the best inner mean is retrained on the outer fold's train/val patients and scored
once on its test patients, which no choice has seen. The mean of those outer scores estimates the whole
procedure, selection included; the candidate chosen most often is the one a preset should use.

The caller supplies ``score(candidate, parts, seed) -> dict`` (train on ``parts['train']``, choose the epoch on
``parts['val']``, score ``parts['test']``; ``parts`` maps ``train``/``val``/``test`` to patient ids), so the
frame model and the CNN-LSTM share this loop.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import yaml

from lus.config.base import ParamsError, Section, load_section
from lus.config.data import SplitSection
from lus.data.folds import fold_partitions, make_folds

S = TypeVar("S", bound=Section)
ScoreFn = Callable[[int, dict[str, list[str]], int], dict[str, Any]]


def nested_cv(videos: pd.DataFrame, n_candidates: int, score: ScoreFn, metric: str, *, seeds: Sequence[int] = (0,),
              folds: int = 5, inner: int = 3, only_folds: Sequence[int] | None = None,
              val_fraction: float = 0.2, stratify_by: str = "auto", names: Sequence[str] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the nested cross-validation; returns every inner and outer score (JSON-ready).

    ``videos``: one row per labelled video with ``patient_id`` (and the columns ``make_folds`` stratifies by).
    ``val_fraction``/``stratify_by``: as the ``split`` params section (the outer folds equal the pipeline's).
    ``metric``: the key of ``score``'s result that is maximised; ties go to the earlier candidate, so list the
    simpler or cheaper candidates first. With a single candidate the inner folds are skipped and this is plain
    cross-validation of that configuration on the outer folds.
    """
    if n_candidates < 1:
        raise ValueError("nested_cv: no candidates")
    names = list(names) if names is not None else [str(c) for c in range(n_candidates)]
    t0 = time.perf_counter()
    report: dict[str, Any] = {"metric": metric, "candidates": names, "seeds": {}}
    for seed in seeds:
        outer = make_folds(videos, folds, val_fraction, seed, stratify_by)["folds"]
        runs = []
        for k in (only_folds if only_folds else range(folds)):
            parts = fold_partitions(outer, k)
            inner_means = []
            if n_candidates > 1:                 # a single candidate: nothing to choose, no inner folds
                pool = set(parts["train"]) | set(parts["val"])
                inner_folds = make_folds(videos[videos["patient_id"].astype(str).isin(pool)], inner, val_fraction,
                                         seed, stratify_by)["folds"]
                for c in range(n_candidates):
                    scores = [float(score(c, fold_partitions(inner_folds, j), seed + j)[metric]) for j in range(inner)]
                    inner_means.append(float(np.mean(scores)))
                    log(f"seed {seed} fold {k} candidate {c} {names[c]}: inner {metric} {inner_means[-1]:.3f} "
                        f"({time.perf_counter() - t0:.0f} s)")
            best = int(np.argmax(inner_means)) if inner_means else 0
            test = score(best, parts, seed + k)
            log(f"seed {seed} fold {k}: chose {best}, outer test {metric} {float(test[metric]):.3f}")
            runs.append({"fold": k, f"inner_{metric}": inner_means, "chosen": best, "test": test})
        numeric = [key for key, v in runs[0]["test"].items() if isinstance(v, (int, float))]
        report["seeds"][str(seed)] = {"folds": runs, "chosen": [r["chosen"] for r in runs],
                                      **{f"{key}_mean": float(np.mean([r["test"][key] for r in runs]))
                                         for key in numeric}}
    means = [s[f"{metric}_mean"] for s in report["seeds"].values()]
    report[f"{metric}_mean_over_seeds"] = float(np.mean(means))
    report[f"{metric}_std_over_seeds"] = float(np.std(means))
    counts = Counter(c for s in report["seeds"].values() for c in s["chosen"])
    report["chosen_counts"] = {names[c]: n for c, n in sorted(counts.items())}
    report["most_chosen"] = names[max(counts, key=lambda c: (counts[c], -c))]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def add_nested_cv_args(ap: argparse.ArgumentParser) -> None:
    """The command-line options the nested-CV scripts share."""
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--params", default="params.yaml", help="the base configuration the candidates override")
    ap.add_argument("--grid", required=True, help="YAML list of overrides of the section (the candidates)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold seeds (split.seed = base.seed)")
    ap.add_argument("--inner", type=int, default=3, help="inner patient-wise folds")
    ap.add_argument("--only-folds", type=int, nargs="*", default=None,
                    help="run these outer folds only (a quicker comparison of candidates; no full estimate)")
    ap.add_argument("--cache", default=".cache/features", help="feature cache folder")
    ap.add_argument("--out", required=True, help="JSON with every inner and outer score")


def load_grid(path: str | Path, section: type[S], params: str | Path) -> tuple[list[dict], list[S]]:
    """The overrides listed in ``path`` and the ``section`` each gives on top of ``params``; a bad key or value
    fails here, before any training."""
    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, list) or not grid or not all(isinstance(c, dict) for c in grid):
        raise SystemExit(f"{path}: expected a non-empty YAML list of {section.NAME} override mappings")
    base = load_section(section, params).to_dict()
    candidates = []
    for i, override in enumerate(grid):
        try:
            candidates.append(section.from_dict({**base, **override}))
        except (ParamsError, TypeError, ValueError) as e:
            raise SystemExit(f"{path}: candidate {i} {override}: {e}") from None
    return grid, candidates


def split_settings(params: str | Path) -> dict[str, Any]:
    """``nested_cv``'s fold settings from the ``split`` params section, so the outer folds are the pipeline's."""
    cfg = load_section(SplitSection, params)
    if cfg.override:
        raise SystemExit(f"{params}: split.override is set ({cfg.override}); nested cross-validation makes its own "
                         f"folds with make_folds, so its outer folds would not be the pipeline's")
    return {"folds": len(cfg.folds), "val_fraction": cfg.val_fraction, "stratify_by": cfg.stratify_by}
