"""``metrics/report.md``: the papers' tables rebuilt from this run's metrics, published numbers beside.

Everything here is a pure function of the metrics dicts written by the evaluate stage, so the report
changes exactly when a metric changes (tested). Missing parts (e.g. no masks -> no segmentation)
are stated in the table instead of being silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lus.report import published as pub


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def pm(mean: float | None, std: float | None, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None:
        return "–"
    if std is None:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def get(tree: Mapping[str, Any], dotted: str) -> Any:
    """``get(m, "a.b.c")`` on nested dicts; None when any part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


BASELINE_LABELS = {
    "chance_prior": "chance: most frequent training class",
    "chance_random": "chance: random guess with training class frequencies",
    "linear_probe": "linear probe: frozen ImageNet features + logistic regression",
}
BASELINE_NOTE = ("Chance and linear-probe rows are computed by the `baselines` stage on the same folds and test items: "
                 "the chance levels from the fold's training labels only (the random guess averaged over many draws), "
                 "the probe fitted on the fold's training patients with its regularisation chosen on its validation "
                 "patients.")


def verdict(name: str, value: float | None, baselines: Mapping[str, Any], metric: str, scale: float = 100.0,
            digits: int = 1) -> str:
    """One sentence placing a model's score against the chance levels and the linear probe of its table."""
    if value is None or not baselines:
        return ""
    chance = [v for m in ("chance_prior", "chance_random") if (v := get(baselines, f"{m}.{metric}")) is not None]
    probe = get(baselines, f"linear_probe.{metric}")
    fmt = (lambda v: f"{scale * v:.{digits}f}")
    ref = f"chance {' / '.join(fmt(v) for v in chance)}" + (f", linear probe {fmt(probe)}" if probe is not None else "")
    if chance and value <= max(chance):
        word = "**at or below chance**: no better than guessing from the training labels alone"
    elif probe is not None and value <= probe:
        word = "above chance but **not above the linear probe**"
    else:
        word = "above chance and above the linear probe"
    return f"- **{name}**: {fmt(value)} ({ref}): {word}."


def baseline_rows(baselines: Mapping[str, Any], cells: Any) -> list[list[str]]:
    """Table rows of the chance levels and the probe; ``cells(metrics)`` gives a row's value cells."""
    return [[f"*{label}*"] + cells(baselines[m]) for m, label in BASELINE_LABELS.items()
            if isinstance(baselines.get(m), Mapping)]


NO_SEVERITY = "Not applicable: this data source has no severity labels (frame model and aggregator skipped)."


def table1(frame: Mapping[str, Any]) -> str:
    """Frame F1 (= accuracy, %) per model and evaluation setting, ours vs Roy et al. Table 1."""
    models = {arch: m for arch, m in frame.items() if arch != "baselines" and isinstance(m, Mapping)}
    if models and not any(get(m, "applicable") != 0 for m in models.values()):
        return NO_SEVERITY
    rows = []
    for arch, m in models.items():
        cells = [pct(get(m, f"pooled.{s}.accuracy")) for s in pub.TABLE1_COLUMNS[:-1]]
        cells.append(pct(get(m, "pooled.avg.accuracy")))
        rows.append([f"**ours: {arch}**"] + cells)
        weak = get(m, "weak_label.pooled.accuracy")
        if weak is not None and get(m, "pooled.regular.accuracy") is None:
            rows[-1][1] = f"{pct(weak)} (weak labels)"
    base = frame.get("baselines", {})
    n_cols = len(pub.TABLE1_COLUMNS)
    rows += baseline_rows(base, lambda m: [pct(get(m, "accuracy"))] + ["–"] * (n_cols - 1))
    for name, values in pub.TABLE1.items():
        rows.append([f"published: {name}"] + [f"{v:.1f}" for v in values])
    note = ("Ours: out-of-fold accuracy over all labelled frames (pooled over folds); '–' = setting not "
            "available in this data (e.g. no per-annotator labels). Published: Roy et al. 2020 Table 1 (ICLUS). "
            + (BASELINE_NOTE + " Baselines: regular setting only." if base else ""))
    lines = [verdict(f"ours: {arch}", get(m, "pooled.regular.accuracy") or get(m, "weak_label.pooled.accuracy"),
                     base, "accuracy") for arch, m in models.items()]
    return _table(["model", *pub.TABLE1_HEADERS], rows) + "\n\n" + note + "".join(f"\n{x}" for x in lines if x)


CROSS_FIT_NOTE = (
    "The uninorm of fold k is fitted on its training videos' out-of-fold frame probabilities, made by the other "
    "folds' frame models, which trained on fold k's test patients: a second-order leak (README, Limits; "
    "`aggregator.cross_fit: inner` removes it). ",
    "The uninorm of fold k is fitted on frame probabilities from inner cross-fitting (`aggregator.cross_fit: "
    "inner`): models that saw neither the video's patient nor fold k's test patients. ",
)


def table2(video: Mapping[str, Any]) -> str:
    """Video score: uninorm vs baselines, mean ± std over folds (%), ours vs Roy et al. Table 2."""
    if video.get("applicable") == 0:
        return NO_SEVERITY
    rows = []
    methods = [m for m in ("uninorm", "argmax_mean", "max_argmax", "majority", "threshold_count_5",
                           "threshold_count_10", "threshold_count_15") if isinstance(video.get(m), Mapping)]
    for method in methods:
        m = video[method]
        paper = pub.TABLE2.get(method)
        rows.append([method] + [pm(m.get(f"{k}_mean"), m.get(f"{k}_std")) for k in
                                ("f1_weighted", "precision_weighted", "recall_weighted", "accuracy", "covid_accuracy")]
                    + [pct(m.get("f1_weighted_pooled"))]
                    + ([" / ".join(f"{a} ± {b}" for a, b in paper)] if paper else ["–"]))
    base = video.get("baselines", {})
    rows += baseline_rows(base, lambda m: [pm(m.get(f"{k}_mean"), m.get(f"{k}_std")) for k in
                                           ("f1_weighted", "precision_weighted", "recall_weighted", "accuracy",
                                            "covid_accuracy")] + [pct(m.get("f1_weighted_pooled")), "–"])
    headers = ["method", "weighted F1", "weighted precision", "weighted recall", "accuracy", "COVID/no-COVID acc.",
               "pooled F1", "published F1 / precision / recall"]
    lines = [verdict(method, video[method].get("f1_weighted_mean"), base, "f1_weighted_mean") for method in methods]
    return _table(headers, rows) + (f"\n\n{int(video.get('n_videos', 0))} test videos over "
                                    f"{int(video.get('n_folds', 0))} patient-wise folds; std is the population std "
                                    "over folds. Published: Roy et al. 2020 Table 2 (ICLUS, 58 videos). "
                                    + CROSS_FIT_NOTE[int(video.get("inner_cross_fit", 0))]
                                    + (BASELINE_NOTE if base else "")
                                    + ("\n\nWeighted F1 against chance and the probe:" if base else "")
                                    + "".join(f"\n{x}" for x in lines if x))


def table_patient_covid(video: Mapping[str, Any]) -> str:
    """Patient-level COVID-19 detection from the predicted video scores (see lus.metrics.patient)."""
    patient = video.get("patient_covid")
    if not isinstance(patient, Mapping) or not patient:
        return "Not available: no video predictions with a per-patient COVID label."
    rows = [[method] + [pm(get(m, f"{rule}_accuracy_mean"), get(m, f"{rule}_accuracy_std")) + f" (pooled "
                        f"{pct(get(m, f'{rule}_accuracy_pooled'))})" for rule in ("rule", "tuned")]
            for method, m in patient.items() if isinstance(m, Mapping)]
    base = video.get("patient_covid_baselines", {})
    rows += baseline_rows(base, lambda m: [pm(m.get("accuracy_mean"), m.get("accuracy_std"))
                                           + f" (pooled {pct(m.get('accuracy'))})", "–"])
    lines = [verdict(f"{method}, {rule}", get(m, f"{rule}_accuracy_mean"), base, "accuracy_mean")
             for method, m in patient.items() if isinstance(m, Mapping) for rule in ("rule", "tuned")]
    published = pub.COVID_BLUES_DETECTION
    rows.append(["published (Wiedemann et al. 2025, 63 patients, image-based AI)",
                 f"{100 * published['zero_shot']:.0f} (zero-shot)",
                 f"{100 * published['targeted_training']:.0f} (targeted training)"])
    return _table(["video scores from", "mean score ≥ 1 (no training)", "threshold tuned on the other folds"],
                  rows) + (f"\n\nAccuracy (%) over {int(patient.get('n_patients', 0))} patients with a COVID label, mean "
                           "± population std over the test folds. A patient's score is the mean predicted severity "
                           "of their videos. Published figures are on the full COVID-BLUES set with other models: "
                           "context, not a controlled comparison. "
                           + (BASELINE_NOTE + " The probe averages its video probabilities over the patient's "
                              "videos; chance is counted over patients." if base else "")
                           + ("\n\nAccuracy against chance and the probe:" if base else "")
                           + "".join(f"\n{x}" for x in lines if x))


def table_segmentation(seg: Mapping[str, Any]) -> str:
    if not seg or not seg.get("applicable"):
        return "Not applicable: this data source has no segmentation masks."
    rows = []
    for name in [k for k, v in seg.items() if isinstance(v, Mapping)]:
        m = seg[name]
        if m.get("dice_bin_mean") is None:
            continue
        rows.append([name] + [pm(m.get(f"{k}_mean"), m.get(f"{k}_std"), 1.0, 3)
                              for k in ("dice_bin", "dice_cat", "pixel_acc")])
    rows.append(["published ensemble (Roy et al. 2020, unverified)", f"≈ {pub.SEGMENTATION['ensemble_dice_bin']:.2f}",
                 "–", f"≈ {pub.SEGMENTATION['ensemble_pixel_acc']:.2f}"])
    return _table(["model", "binary marker Dice", "categorical Dice", "pixel accuracy"], rows) + (
        "\n\nMean ± population std over the segmentation folds. The published values are recalled from the paper "
        "and not confirmed (METHODS.md §5.6).")


def table_cnn_lstm(cnn: Mapping[str, Any], classes: list[str]) -> str:
    if not cnn:
        return "No CNN-LSTM results."
    head = [["accuracy", pm(cnn.get("accuracy_mean"), cnn.get("accuracy_std"), 1.0, 3),
             f"{pub.BARROS_ACCURACY[0]:.3f} ({pub.BARROS_ACCURACY[1]:.3f})" if set(classes) == set(pub.BARROS_PER_CLASS) else "–"]]
    base = cnn.get("baselines", {})
    head += baseline_rows(base, lambda m: [pm(m.get("accuracy_mean"), m.get("accuracy_std"), 1.0, 3), "–"])
    rows = []
    for c in classes:
        ref = pub.BARROS_PER_CLASS.get(c)
        rows.append([c] + [pm(get(cnn, f"{c}.{k}_mean"), get(cnn, f"{c}.{k}_std"), 1.0, 3)
                           for k in ("precision", "recall", "f1", "specificity")]
                    + ([" / ".join(f"{v:.3f}" for v in ref)] if ref else ["–"]))
    return (_table(["", "ours (mean ± std over folds)", "Barros et al. Xception-20"], head) + "\n\n"
            + _table(["class", "precision", "recall (sensitivity)", "F1", "specificity",
                      "Barros et al. P / R / F1 / spec."], rows)
            + "\n\nOurs: patient-grouped folds. Barros et al.: video-wise, source-blocked folds (optimistic). "
            + (BASELINE_NOTE + "\n" + verdict("CNN-LSTM accuracy", cnn.get("accuracy_mean"), base, "accuracy_mean", 1.0, 3)
               if base else ""))


def build_report(metrics: Mapping[str, Mapping[str, Any]], source: Mapping[str, Any], cnn_classes: list[str],
                 command: str = "dvc repro", frame_supervision: str = "") -> str:
    """The whole markdown report from the evaluate stage's metric groups; ``frame_supervision`` says in words
    what the frame model learned from (its ``meta.json`` ``label_source``)."""
    name = source.get("source", "?")
    synthetic = name == "synthetic"
    warning = ("**Data: built-in SYNTHETIC videos** — these numbers test the software, they say nothing about "
               "clinical performance." if synthetic else
               f"**Data: {name}** (read from `{source.get('root', '?')}`); see the README for its limits.")
    parts = [
        "# Results of this run",
        "",
        warning,
        "",
        f"Reproduce with `{command}`; every number below comes from `metrics/*.json` of the same run.",
        "",
        "## Table 1 — frame-level severity (accuracy = micro-F1, %)",
        "",
        *([f"Frame model trained on: {frame_supervision}.", ""] if frame_supervision else []),
        table1(metrics.get("frame", {})),
        "",
        "## Table 2 — video score (%)",
        "",
        table2(metrics.get("video", {})),
        "",
        "## Patient-level COVID-19 detection from video scores",
        "",
        table_patient_covid(metrics.get("video", {})),
        "",
        "## Segmentation (marker regions per severity)",
        "",
        table_segmentation(metrics.get("segmentation", {})),
        "",
        "## CNN-LSTM video classifier",
        "",
        table_cnn_lstm(metrics.get("cnn_lstm", {}), cnn_classes),
        "",
    ]
    return "\n".join(parts)
