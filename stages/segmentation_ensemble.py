"""Stage segmentation_ensemble: boosted ensemble of the trained architectures + one summary (METHODS §3).

    python -m stages.segmentation_ensemble --params params.yaml --models models/segmentation \
        --out models/segmentation_ensemble --plots plots/segmentation/ensemble

Runs after train_segmentation (its dependency is the parent folder ``models/segmentation``).
Averages the stored test softmax outputs of the architectures in ``segmentation.archs``, multiplies
by ``segmentation.boost`` and takes the argmax (a pixel whose plain argmax is score 3 stays score 3).

Writes ``--out/metrics.json``: one flat summary the evaluate stage can merge under ``segmentation``:
``applicable``, ``<arch>.<metric>_mean/_std`` for each architecture and ``ensemble.<metric>_mean/_std``
(+ per fold ``ensemble.fold_<k>.<metric>``), and ``--plots/fold_<k>_test.png`` ensemble overlays. With
no masked data every architecture reported ``applicable: 0``; so does the summary (exit 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lus.config.base import load_section
from lus.config.data import BaseSection
from lus.config.segmentation import SegmentationSection
from lus.io import read_json, write_json
from lus.metrics.segmentation import ensemble_metrics
from lus.report.seg_overlays import pick_frames, save_message, save_overlay_grid
from lus.runtime import provenance
from stages._cli import run, stage_parser

SUMMARY_METRICS = ("dice_bin", "dice_cat", "dice_cat_orig", "pixel_acc", "iou_bin", "iou_cat", "dice_bin_frame_mean")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Ensemble the segmentation architectures and summarise the benchmark.")
    parser.add_argument("--models", default="models/segmentation", help="folder holding one folder per arch")
    parser.add_argument("--out", default="models/segmentation_ensemble", help="output folder")
    parser.add_argument("--plots", default="plots/segmentation/ensemble", help="picture folder")
    return parser


def summarise(models: Path, archs: list[str], boost: list[float]) -> tuple[dict[str, float], dict]:
    """Flat summary of every architecture and the ensemble; also returns the ensemble's fold outputs."""
    dirs = {a: models / a for a in archs}
    summary: dict[str, float] = {}
    for arch, d in dirs.items():
        m = read_json(d / "metrics.json")
        summary[f"{arch}.applicable"] = float(m.get("applicable", 0))
        for name in SUMMARY_METRICS:
            for stat in ("mean", "std"):
                key = f"{name}_{stat}"
                if key in m:
                    summary[f"{arch}.{key}"] = float(m[key])
    ens, outputs = ensemble_metrics(dirs, boost)
    summary = {"applicable": ens["applicable"], **summary}
    summary.update({f"ensemble.{k}": v for k, v in ens.items() if k != "applicable"
                    and (k.startswith("fold_") or k.endswith(("_mean", "_std")) or k.startswith("n_"))})
    return summary, outputs


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    cfg = load_section(SegmentationSection, args.params)
    out, plots = Path(args.out), Path(args.plots)
    summary, outputs = summarise(Path(args.models), list(cfg.archs), list(cfg.boost))
    plots.mkdir(parents=True, exist_ok=True)
    if not summary["applicable"]:
        save_message(plots / "not_applicable.png", "segmentation ensemble: not applicable\n(no masks in this data source)")
    for k, o in outputs.items():
        rows = pick_frames(o["masks"], cfg.n_overlays, base.seed, o["video_id"])
        titles = [f"{o['video_id'][r]} #{o['frame'][r]}" for r in rows]
        save_overlay_grid(plots / f"fold_{k}_test.png", o["frames"][rows], o["masks"][rows], o["labels"][rows], titles,
                          f"ensemble ({'+'.join(cfg.archs)}) fold {k}: dice_bin {summary[f'ensemble.fold_{k}.dice_bin']:.3f}")
    write_json(out / "metrics.json", summary)
    write_json(out / "meta.json", {"archs": list(cfg.archs), "boost": list(cfg.boost), "folds": sorted(outputs),
                                   "rule": "mean softmax x boost, argmax; plain argmax 4 stays 4",
                                   "seed": base.seed, "provenance": provenance(base.seed)})
    if summary["applicable"]:
        line = ", ".join(f"{a} {summary.get(f'{a}.dice_bin_mean', float('nan')):.3f}" for a in cfg.archs)
        print(f"segmentation dice_bin: {line}, ensemble {summary['ensemble.dice_bin_mean']:.3f}")
    else:
        print("segmentation ensemble: not applicable (no masks); wrote applicable: 0")


if __name__ == "__main__":
    run(main, build_parser())
