"""DVC stage ``evaluate``: final metrics (flat numeric JSON), the paper tables and the plots.

Reads every model output of the run and writes ``metrics/{frame,video,segmentation,cnn_lstm}.json``
(top-level groups ``frame``, ``video``, ``segmentation``, ``cnn_lstm``; numbers only, so
``dvc metrics diff`` lists every value), ``metrics/report.md`` and plot data + PNGs under ``plots/``.
A missing input stops the stage with a message naming the file and the stage that makes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from lus.config.base import load_section
from lus.config.data import SplitSection
from lus.config.frame_model import FrameModelSection
from lus.io import read_json, write_csv, write_json, write_text
from lus.data.manifest import patient_covid_labels, read_manifest
from lus.metrics.classification import summarise_cnn_lstm
from lus.metrics.patient import patient_covid_detection
from lus.metrics.video import summarize_folds
from lus.report.plots import confusion_png, curves_png, per_fold_bars_png
from lus.report.seg_overlays import save_message
from lus.report.tables import build_report
from stages._cli import run, stage_parser

VIDEO_METHODS_PLOTTED = ("uninorm", "argmax_mean", "max_argmax", "majority")


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` so DVC shows ``group.method.metric`` paths."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = float(value)
    return out


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"evaluate: input {path} is missing (made by stage '{stage}': dvc repro {stage})")
    return path


def frame_group(pred_dir: Path, arch: str) -> dict[str, Any]:
    flat = read_json(require(pred_dir / "frame_metrics.json", "predict_frames"))
    group = nest(flat)
    for name in ("accuracy", "f1_macro", "f1_weighted"):  # headline aliases (Table 1's regular column)
        key = f"pooled.regular.{name}" if "pooled.regular.accuracy" in flat else f"weak_label.pooled.{name}"
        if key in flat:
            group[name] = float(flat[key])
    return {arch: group}


def video_group(agg_dir: Path, folds: list[int], plots: Path, manifest: pd.DataFrame) -> dict[str, Any]:
    per_fold = {k: pd.read_csv(require(agg_dir / f"fold_{k}_predictions.csv", f"train_aggregator"))
                for k in folds}
    if all(len(df) == 0 for df in per_fold.values()):  # no severity labels in this data source
        write_csv(plots / "video" / "confusion.csv", pd.DataFrame(columns=["actual", "predicted"]))
        write_csv(plots / "video" / "per_fold_f1.csv", pd.DataFrame(columns=["fold", "method", "f1_weighted"]))
        for name in ("video_confusion.png", "video_per_fold_f1.png"):
            save_message(plots / "png" / name, "video score: not applicable\n(no severity labels in this data source)")
        return {"applicable": 0}
    summary = summarize_folds(per_fold)
    pooled = pd.concat(per_fold.values(), ignore_index=True)
    pooled = pooled[pooled["label"] >= 0]
    rows = pd.DataFrame({"actual": pooled["label"].astype(int), "predicted": pooled["pred_uninorm"].astype(int)})
    write_csv(plots / "video" / "confusion.csv", rows)
    confusion_png(rows, [str(c) for c in range(4)], "video score: uninorm (pooled test folds)",
                  plots / "png" / "video_confusion.png")
    bars = pd.DataFrame([{"fold": k, "method": m, "f1_weighted": summary[m][f"f1_weighted_fold{k}"]}
                         for k in folds for m in VIDEO_METHODS_PLOTTED
                         if m in summary and f"f1_weighted_fold{k}" in summary[m]])
    write_csv(plots / "video" / "per_fold_f1.csv", bars)
    per_fold_bars_png(bars, "f1_weighted", "video weighted F1 per test fold", plots / "png" / "video_per_fold_f1.png")
    covid = patient_covid_labels(manifest)
    patient = nest(patient_covid_detection(per_fold, covid, VIDEO_METHODS_PLOTTED)) if covid else {}
    # which probabilities the uninorm was fitted on (aggregator.cross_fit), as a number: metrics are numeric
    sources = {read_json(require(agg_dir / f"fold_{k}.json", "train_aggregator")).get("data", {})
               .get("train_probabilities", "out-of-fold") for k in folds}
    return {"applicable": 1, "inner_cross_fit": float(sources == {"inner cross-fitting"}), **summary,
            **({"patient_covid": patient} if patient else {})}


def segmentation_group(seg_metrics: Path) -> dict[str, Any]:
    return nest(read_json(require(seg_metrics, "segmentation_ensemble")))


def cnn_lstm_group(cnn_dir: Path, folds: list[int], plots: Path) -> tuple[dict[str, Any], list[str]]:
    dirs = [require(cnn_dir / f"fold_{k}", f"train_cnn_lstm") for k in folds]
    flat, rows = summarise_cnn_lstm(dirs)
    classes = list(read_json(dirs[0] / "meta.json")["classes"])
    write_csv(plots / "cnn_lstm" / "confusion.csv", rows)
    confusion_png(rows, classes, "CNN-LSTM (pooled test folds)", plots / "png" / "cnn_lstm_confusion.png")
    return nest(flat), classes


def frame_plots(pred_confusion: Path, frame_models: Path, folds: list[int], plots: Path) -> None:
    rows = pd.read_csv(require(pred_confusion, "predict_frames"))
    confusion_png(rows, [str(c) for c in range(4)], "frame severity (out-of-fold)", plots / "png" / "frame_confusion.png")
    curves = {f"fold {k}": pd.read_csv(p) for k in folds if (p := frame_models / f"fold_{k}" / "curve.csv").is_file()}
    curves = {name: c for name, c in curves.items() if len(c)}  # empty: not applicable (no severity labels)
    if not curves:
        save_message(plots / "png" / "frame_training_curves.png", "frame model: not applicable\n(no severity labels)")
        return
    curves_png(curves, ("train_loss", "val_accuracy"), "frame model training", plots / "png" / "frame_training_curves.png")


def add_baselines(groups: dict[str, dict[str, Any]], baselines: dict[str, Any]) -> None:
    """Chance levels and linear probe of the ``baselines`` stage, beside the models of each group
    (``frame.baselines``, ``video.baselines``, ``video.patient_covid_baselines``, ``cnn_lstm.baselines``),
    so ``dvc metrics diff`` shows them with the models. A group whose task is not applicable gets none."""
    for task, group, key in (("frame", "frame", "baselines"), ("video", "video", "baselines"),
                             ("patient_covid", "video", "patient_covid_baselines"),
                             ("cnn_lstm", "cnn_lstm", "baselines")):
        if task in baselines and groups[group].get("applicable", 1) != 0 and groups[group]:
            # entries are flat per method, with dotted keys (fold_0.accuracy) that nest like the models' own
            groups[group][key] = nest({f"{m}.{k}": v for m, entry in baselines[task].items() for k, v in entry.items()})


def main(args: argparse.Namespace) -> None:
    folds = load_section(SplitSection, args.params).folds
    arch = load_section(FrameModelSection, args.params).arch
    plots, out = Path(args.plots), Path(args.metrics)
    # Check every input before writing anything, so a missing one leaves no partial results.
    inputs = [(Path(args.raw) / "source.json", "prepare"), (Path(args.raw) / "manifest.csv", "prepare"), (Path(args.predictions) / "frame_metrics.json", "predict_frames"),
              (Path(args.frame_confusion), "predict_frames"), (Path(args.segmentation), "segmentation_ensemble"),
              (Path(args.baselines), "baselines")]
    inputs += [(Path(args.aggregator) / f"fold_{k}_predictions.csv", f"train_aggregator") for k in folds]
    inputs += [(Path(args.cnn_lstm) / f"fold_{k}" / "meta.json", f"train_cnn_lstm") for k in folds]
    for path, stage in inputs:
        require(path, stage)
    source = read_json(Path(args.raw) / "source.json")
    groups: dict[str, dict[str, Any]] = {
        "frame": frame_group(Path(args.predictions), arch),
        "video": video_group(Path(args.aggregator), folds, plots, read_manifest(Path(args.raw) / "manifest.csv")),
        "segmentation": segmentation_group(Path(args.segmentation)),
    }
    groups["cnn_lstm"], classes = cnn_lstm_group(Path(args.cnn_lstm), folds, plots)
    add_baselines(groups, read_json(require(Path(args.baselines), "baselines")))
    frame_plots(Path(args.frame_confusion), Path(args.frame_models), folds, plots)
    for name, group in groups.items():
        write_json(out / f"{name}.json", {name: group})
    write_text(out / "report.md", build_report(groups, source, classes,
                                               frame_supervision=frame_supervision(Path(args.frame_models), folds)))
    video = groups["video"].get("uninorm", {})
    print(f"evaluate: frame accuracy {groups['frame'][arch].get('accuracy', float('nan')):.3f}, video uninorm "
          f"F1 {video.get('f1_weighted_mean', float('nan')):.3f}, CNN-LSTM accuracy "
          f"{groups['cnn_lstm'].get('accuracy_mean', float('nan')):.3f} -> {out}/report.md")


def frame_supervision(frame_models: Path, folds: list[int]) -> str:
    """What the frame models learned from (``label_source`` of their meta.json; empty if none was trained)."""
    sources = []
    for k in folds:
        path = frame_models / f"fold_{k}" / "meta.json"
        meta = read_json(path) if path.is_file() else {}
        if meta.get("applicable", 1) and meta.get("label_source") and meta["label_source"] not in sources:
            sources.append(meta["label_source"])
    return "; ".join(sources)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--predictions", default="data/predictions")
    parser.add_argument("--frame-confusion", default="plots/frame/confusion.csv")
    parser.add_argument("--frame-models", default="models/frame")
    parser.add_argument("--aggregator", default="models/aggregator")
    parser.add_argument("--segmentation", default="models/segmentation_ensemble/metrics.json")
    parser.add_argument("--cnn-lstm", default="models/cnn_lstm")
    parser.add_argument("--baselines", default="models/baselines/metrics.json")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--plots", default="plots")
    return parser


if __name__ == "__main__":
    run(main, build_parser())
