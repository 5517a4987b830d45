"""The aggregator comparison repeated over fold seeds (statistics fit for 54-58 videos).

One 5-fold run on ~58 videos moves by several points of weighted F1 with the fold assignment alone, so a
single run cannot tell a 3-point difference from noise. :func:`seed_comparison` repeats the patient-wise
k-fold comparison (uninorm per t-norm and every baseline) for many fold seeds (each fit takes
milliseconds) and reports, per method, the mean over seeds, a 95 % interval across seeds (2.5th-97.5th
percentile) of both the fold-mean and the pooled weighted F1, and for each pair of methods in how many
seeds the first beats the second (pooled weighted F1, strictly; ties counted apart). The interval is
the spread due to the fold assignment on this fixed set of videos, not a confidence interval for new
patients.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lus.config.aggregator import AggregatorSection
from lus.data.folds import make_patient_folds
from lus.data.video_set import VideoSet
from lus.metrics.video import summarize_folds
from lus.train.aggregator import run_folds


def seed_comparison(allv: VideoSet, seeds: Sequence[int], configs: Mapping[str, AggregatorSection],
                    n_folds: int = 5, fit_seed: int = 0, metric: str = "f1_weighted") -> dict[str, Any]:
    """Repeat the k-fold aggregator comparison on ``allv`` (labelled videos) for every fold seed.

    Returns ``{"seeds", "n_folds", "metric", "n_videos", "per_seed": {method: {"mean": [...], "pooled":
    [...]}}, "summary": {method: {"mean", "ci_low", "ci_high", "pooled_mean", "pooled_ci_low",
    "pooled_ci_high"}}, "wins": {a: {b: n}}, "ties": {a: {b: n}}}`` (fractions, not %).
    """
    if len(seeds) < 2:
        raise ValueError("seed_comparison needs at least 2 seeds")
    if (allv.labels < 0).any():
        raise ValueError("seed_comparison: every video needs a video score (pass only labelled videos)")
    videos = pd.DataFrame({"video_id": allv.video_ids, "patient_id": allv.patient_ids, "video_score": allv.labels})
    per_seed: dict[str, dict[str, list[float]]] = {}
    for s in seeds:
        folds = make_patient_folds(videos, n_folds, int(s))
        tables, _ = run_folds(allv, folds, configs, fit_seed)
        summary = summarize_folds(tables)
        for method, m in summary.items():
            if isinstance(m, dict):
                entry = per_seed.setdefault(method, {"mean": [], "pooled": []})
                entry["mean"].append(float(m[f"{metric}_mean"]))
                entry["pooled"].append(float(m[f"{metric}_pooled"]))
    methods = [m for m in per_seed if len(per_seed[m]["pooled"]) == len(seeds)]
    out_summary = {}
    for method in methods:
        mean, pooled = np.asarray(per_seed[method]["mean"]), np.asarray(per_seed[method]["pooled"])
        out_summary[method] = {
            "mean": float(mean.mean()), "ci_low": float(np.percentile(mean, 2.5)),
            "ci_high": float(np.percentile(mean, 97.5)),
            "pooled_mean": float(pooled.mean()), "pooled_ci_low": float(np.percentile(pooled, 2.5)),
            "pooled_ci_high": float(np.percentile(pooled, 97.5)),
        }
    wins = {a: {b: int(np.sum(np.asarray(per_seed[a]["pooled"]) > np.asarray(per_seed[b]["pooled"])))
                for b in methods if b != a} for a in methods}
    ties = {a: {b: int(np.sum(np.asarray(per_seed[a]["pooled"]) == np.asarray(per_seed[b]["pooled"])))
                for b in methods if b != a} for a in methods}
    return {"seeds": [int(s) for s in seeds], "n_folds": n_folds, "metric": metric, "n_videos": len(allv),
            "per_seed": {m: per_seed[m] for m in methods}, "summary": out_summary, "wins": wins, "ties": ties}
