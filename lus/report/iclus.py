"""Markdown report of the ICLUS Table 2 run (:mod:`lus.evaluation.iclus`) and of the repeated-seed
aggregator comparison (:mod:`lus.evaluation.seeds`): plain text from the metrics dicts, no computation."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from lus.report.published import POOLED_REFERENCE, TABLE2, TABLE2_METRICS


def _pm(summary: Mapping[str, Any], method: str, metric: str) -> str:
    m = summary[method]
    return f"{100 * m[metric + '_mean']:.1f} ± {100 * m[metric + '_std']:.1f}"


def _pooled(summary: Mapping[str, Any], method: str, metric: str) -> str:
    return f"{100 * summary[method][metric + '_pooled']:.1f}"


def _paper(method: str, metric: str) -> str:
    ref = TABLE2.get(method)
    if ref is None or metric not in TABLE2_METRICS:
        return "–"
    mean, std = ref[TABLE2_METRICS.index(metric)]
    return f"{mean} ± {std}"


def protocol_text(folds: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """One phrase naming the evaluation protocol of a folds document (lus.data.folds.protocol_folds)."""
    protocol = folds.get("protocol", "kfold")
    if protocol == "kfold":
        return f"{summary['n_folds']} patient-wise folds stratified by video score (greedy, seed {folds['seed']})"
    if protocol == "traintest":
        source = folds.get("split_source", "the frame model's published train_test_split.csv")
        return (f"one train/test split: {source}, applied per video "
                f"({len(folds['folds'][0]['train'])} training, {len(folds['folds'][0]['test'])} test videos)")
    what = "patient" if protocol == "lopo" else "video"
    return (f"leave-one-{what}-out ({summary['n_folds']} folds of one test {what}; fold-level std is over "
            f"single-{what} folds, so read the pooled columns)")


def render_table(summary: Mapping[str, Any], fits: Mapping[str, list[dict[str, Any]]], folds: Mapping[str, Any],
                 counts: Mapping[str, int], command: str,
                 heading: str = "ICLUS video scores: uninorm aggregator vs baselines (Roy et al. 2020, Table 2)",
                 data: str = "public ICLUS frame predictions", sanity_reference: bool = True) -> str:
    """Markdown report: Table 2 next to the paper, t-norms side by side, all baselines, neutral elements.
    ``heading`` / ``data`` name the data set; ``sanity_reference`` adds METHODS §2.9's ICLUS values."""
    lines = [
        f"# {heading}",
        "",
        f"Data: {data}, {counts['videos']} videos, {counts['patients']} patients, "
        f"{counts['frames']} frames. {protocol_text(folds, summary)}; paper settings: SORD (m 2, zero-score gap 0.5), soft cross-entropy, "
        "full-batch Adam lr 0.01, 30 epochs, constant lr, e initialised to 0, last epoch, off-diagonal min. "
        "Values in %, mean ± population std over folds; pooled = all test videos together. "
        + ("The paper's folds are unknown, so fold-level numbers are comparable only in distribution (fold std "
           "≈ 12 points)." if folds.get("protocol", "kfold") == "kfold" else
           "The paper's columns are its 5-fold results, shown for reference only."),
        "",
        f"Command: `{command}`",
        "",
        "## Table 2 (ours vs paper)",
        "",
        "| method | weighted F1 | precision | recall | paper F1 | paper precision | paper recall "
        "| pooled F1 | pooled precision | pooled recall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("uninorm (product)", "uninorm_product", "uninorm"), ("argmax_mean", "argmax_mean", "argmax_mean"),
            ("max_argmax", "max_argmax", "max_argmax"), ("majority", "majority", "majority")]
    metrics3 = ("f1_weighted", "precision_weighted", "recall_weighted")
    for label, key, paper_key in rows:
        lines.append(f"| {label} | " + " | ".join(_pm(summary, key, m) for m in metrics3) + " | "
                     + " | ".join(_paper(paper_key, m) for m in metrics3) + " | "
                     + " | ".join(_pooled(summary, key, m) for m in metrics3) + " |")
    tnorms = [k for k in ("product", "lukasiewicz", "min") if f"uninorm_{k}" in summary]
    lines += ["", "## t-norms side by side (same folds and settings; min: e per class by grid search of the "
              "training loss on the training folds, since gradients w.r.t. e vanish)", "",
              "| metric | " + " | ".join(tnorms) + " | " + " | ".join(f"{t} pooled" for t in tnorms) + " |",
              "|---|" + "---|" * (2 * len(tnorms))]
    names = {"f1_weighted": "weighted F1", "precision_weighted": "weighted precision",
             "recall_weighted": "weighted recall", "accuracy": "accuracy", "covid_accuracy": "COVID/no-COVID accuracy"}
    for metric, label in names.items():
        lines.append(f"| {label} | " + " | ".join(_pm(summary, f"uninorm_{t}", metric) for t in tnorms) + " | "
                     + " | ".join(_pooled(summary, f"uninorm_{t}", metric) for t in tnorms) + " |")
    if "lukasiewicz" in tnorms:
        lines += ["", "Lukasiewicz with e initialised to 0 (paper setting): S(a, b) = min(1, a + b) saturates every "
                  "class to 1 within a few frames, the gradient through the saturation is exactly 0, so e stays at 0 "
                  "and every video ties (argmax -> score 0). This is a property of the setting, not a numerical bug."]
    lines += ["", "## All methods (mean ± std over folds / pooled)", "",
              "| method | " + " | ".join(names.values()) + " |", "|---|" + "---|" * len(names)]
    for method in [k for k in summary if isinstance(summary[k], dict)]:
        lines.append(f"| {method} | " + " | ".join(f"{_pm(summary, method, m)} / {_pooled(summary, method, m)}"
                                                   for m in names) + " |")
    if sanity_reference:
        lines += ["", "Sanity reference (METHODS §2.9, pooled weighted F1 over 58 videos): "
                  + ", ".join(f"{k} ≈ {v} (ours {_pooled(summary, k, 'f1_weighted')})"
                              for k, v in POOLED_REFERENCE.items() if k in summary)]
    lines += ["", "## Neutral elements per fold (e_0..e_3)", "", "| t-norm | fold | e_0 | e_1 | e_2 | e_3 | fit |",
              "|---|---|---|---|---|---|---|"]
    for name, per in fits.items():
        for f in per:
            lines.append(f"| {name} | {f['fold']} | " + " | ".join(f"{v:.3f}" for v in f["neutral"])
                         + f" | {f['method']} |")
    return "\n".join(lines) + "\n"


def render_seed_table(result: Mapping[str, Any], title: str, command: str, methods: Sequence[str] | None = None) -> str:
    """Markdown of :func:`lus.evaluation.seeds.seed_comparison`: mean and 95 % interval per method, and
    the pairwise win counts (row beats column in that many seeds, pooled metric)."""
    summary, wins = result["summary"], result["wins"]
    methods = [m for m in (methods or list(summary)) if m in summary]
    n = len(result["seeds"])
    lines = [f"# {title}", "",
             f"{result['n_videos']} videos; {result['n_folds']} patient-wise folds (greedy stratified by video "
             f"score) for each of {n} fold seeds ({result['seeds'][0]}..{result['seeds'][-1]}); metric "
             f"{result['metric']} in %. Interval = 2.5th-97.5th percentile across seeds (spread due to the fold "
             "assignment on these videos, not a confidence interval for new patients).", "",
             f"Command: `{command}`", "",
             "| method | mean over folds: mean [95 % interval] | pooled: mean [95 % interval] |", "|---|---|---|"]
    for m in methods:
        s = summary[m]
        lines.append(f"| {m} | {100 * s['mean']:.1f} [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}] | "
                     f"{100 * s['pooled_mean']:.1f} [{100 * s['pooled_ci_low']:.1f}, {100 * s['pooled_ci_high']:.1f}] |")
    lines += ["", f"Seeds (of {n}) in which the row method's pooled {result['metric']} is strictly higher than "
              "the column method's:", "", "| beats → | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for a in methods:
        lines.append(f"| {a} | " + " | ".join("–" if a == b else str(wins[a][b]) for b in methods) + " |")
    return "\n".join(lines) + "\n"
