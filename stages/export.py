"""Stage export: package the run's models for ``lus predict`` and write MODEL_CARD.md.

    python -m stages.export --params params.yaml --frame-models models/frame --aggregator models/aggregator \
        --segmentation models/segmentation --raw data/raw --frames-report data/frames/report.json \
        --metrics metrics --cnn-lstm models/cnn_lstm --out models/export --card MODEL_CARD.md

Runs after evaluate. Writes ``--out`` (``manifest.json``, ``frame/fold_<k>.pt``, ``aggregator.json``,
``segmentation/<arch>/fold_<k>.pt``, ``cnn_lstm/fold_<k>.pt``; format in :mod:`lus.export.bundle`) and
``--card``. The model settings come from what the training stages recorded next to their models; from
``params.yaml`` it reads only ``base.seed``, ``split.folds`` (which folds) and ``segmentation.archs``/``segmentation.boost``
(which architectures, and the ensemble rule).
"""

from __future__ import annotations

import argparse

from lus.config.base import load_section
from lus.config.data import BaseSection, SplitSection
from lus.config.segmentation import SegmentationSection
from lus.export.package import export_models
from stages._cli import run, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("Package the trained models (fold ensemble, aggregator, segmentation, CNN-LSTM) and the "
                          "model card.")
    parser.add_argument("--frame-models", default="models/frame", help="folder holding fold_<k>/model.pt")
    parser.add_argument("--aggregator", default="models/aggregator", help="folder holding fold_<k>.json")
    parser.add_argument("--segmentation", default="models/segmentation", help="folder holding <arch>/fold_<k>/")
    parser.add_argument("--cnn-lstm", default="models/cnn_lstm", help="folder holding fold_<k>/model.pt + meta.json "
                                                                      "of train_cnn_lstm ('' = leave the CNN-LSTM out)")
    parser.add_argument("--raw", default="data/raw", help="folder with manifest.csv and source.json")
    parser.add_argument("--frames-report", default="data/frames/report.json", help="extraction report (settings)")
    parser.add_argument("--metrics", default="metrics", help="folder of the evaluate stage's metrics JSON")
    parser.add_argument("--out", default="models/export", help="export folder (replaced atomically)")
    parser.add_argument("--card", default="MODEL_CARD.md", help="model card to write")
    return parser


def main(args: argparse.Namespace) -> None:
    base = load_section(BaseSection, args.params)
    split = load_section(SplitSection, args.params)
    seg = load_section(SegmentationSection, args.params)
    manifest = export_models(frame_dir=args.frame_models, aggregator_dir=args.aggregator,
                             segmentation_dir=args.segmentation, raw_dir=args.raw, frames_report=args.frames_report,
                             metrics_dir=args.metrics, out_dir=args.out, seed=base.seed, folds=split.folds,
                             seg_archs=seg.archs, seg_boost=seg.boost, card_path=args.card,
                             cnn_lstm_dir=args.cnn_lstm or None)
    parts = [f"frame models of {len(manifest['frame_model'].get('folds', []))} folds"
             if manifest["frame_model"]["applicable"] else "no frame model (not applicable)"]
    if manifest["segmentation"]["applicable"]:
        parts.append(f"segmentation {'+'.join(manifest['segmentation']['archs'])}")
    cnn = manifest["cnn_lstm"]
    if cnn["applicable"]:
        parts.append(f"CNN-LSTM ({cnn['target']}, backbone {cnn['backbone']['name']}) of {len(cnn['folds'])} folds")
    print(f"export: {', '.join(parts)} -> {args.out}; model card -> {args.card}")


if __name__ == "__main__":
    run(main, build_parser())
