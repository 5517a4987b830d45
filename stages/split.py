"""DVC stage ``split``: patient-wise, stratified k-fold split -> data/splits/folds.json.

A user folds file (``split.override``) takes precedence over the generated split; either way the
stage refuses to write a split that leaks a patient or misses a video. The user file must lie under
``--user-dir`` (data/splits/user/, a dependency of this stage in dvc.yaml): DVC then reruns the split
when the file's content changes, not only when the ``split.override`` path does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lus.config.base import load_section
from lus.config.data import BaseSection, SplitSection
from lus.data.folds import SplitError, check_folds, fold_class_counts, make_folds, stratification_labels
from lus.data.manifest import extracted_videos
from lus.io import read_json, write_json
from stages._cli import run, stage_parser


def main(args: argparse.Namespace) -> None:
    seed = load_section(BaseSection, args.params).seed
    cfg = load_section(SplitSection, args.params)
    videos = extracted_videos(args.manifest, args.index)
    if videos.empty:
        raise SplitError(f"{args.index}: no extracted videos to split")
    n_folds = len(cfg.folds)
    if cfg.override:
        source = cfg.override
        user_dir = Path(args.user_dir).resolve()
        if not Path(cfg.override).resolve().is_relative_to(user_dir):
            raise SplitError(f"params key 'split.override': {cfg.override} is outside {args.user_dir}/; put your folds "
                             f"file there (the folder is a dependency of the split stage, so DVC reruns the split "
                             f"when the file changes)")
        folds = check_folds(read_json(cfg.override), videos, source=source, n_folds=n_folds)
        label_name, _ = stratification_labels(videos, cfg.stratify_by)
        doc = {"seed": seed, "group_key": "patient_id", "stratify_by": label_name, "source": source, "folds": folds}
    else:
        doc = make_folds(videos, n_folds, cfg.val_fraction, seed, cfg.stratify_by)
    if doc["stratify_by"] != "none":
        doc["class_counts"] = fold_class_counts(doc, videos, doc["stratify_by"])
        per_class_patients = videos.groupby(videos[doc["stratify_by"]].astype(str))["patient_id"].nunique()
        for k, counts in enumerate(doc["class_counts"]):
            absent = [c for c, n in per_class_patients.items() if n >= n_folds and c not in counts["test"]]
            if absent:
                raise SplitError(f"{cfg.override or 'generated split'}: fold {k} has no test videos of class(es) "
                                 f"{', '.join(absent)} although each has >= {n_folds} patients; the split is badly "
                                 f"stratified (by {doc['stratify_by']})")
            thin = [c for c, n in per_class_patients.items() if c not in counts["test"]]
            if thin:
                print(f"warning: fold {k} has no test videos of class(es) {', '.join(thin)} "
                      f"(too few patients of that class for {n_folds} folds)", file=sys.stderr)
    write_json(args.out, doc)
    sizes = ", ".join(f"{len(f['train'])}/{len(f['val'])}/{len(f['test'])}" for f in doc["folds"])
    if doc.get("fallbacks"):  # each was also logged as a warning by make_folds
        how = (f"NOT fully stratified by {doc['stratify_by']}: {len(doc['fallbacks'])} partition set(s) fell back to "
               f"an unstratified patient-wise split (listed under 'fallbacks' in {args.out})")
    else:
        how = f"stratified by {doc['stratify_by']}"
    print(f"wrote {args.out}: {n_folds} folds (train/val/test patients: {sizes}), {how}")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/raw/manifest.csv")
    parser.add_argument("--index", default="data/frames/index.csv")
    parser.add_argument("--out", default="data/splits/folds.json")
    parser.add_argument("--user-dir", default="data/splits/user",
                        help="folder that must hold a split.override file (a DVC dependency of this stage)")
    return parser


if __name__ == "__main__":
    run(main, build_parser())
