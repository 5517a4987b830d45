"""Choose a frame-model configuration by nested cross-validation on training patients only (issue 13, item 5).

The loop is :func:`lus.evaluation.nested_cv.nested_cv` (outer folds = the pipeline's own). Each candidate of
``--grid`` (a YAML list of ``frame_model`` overrides on top of ``--params``) is trained on an inner fold's
training patients (epoch chosen on its validation patients) and scored on its inner test patients by the
weighted F1 of the video score = argmax of the mean frame probabilities (the pipeline's argmax_mean rule).

    python scripts/nested_cv_frame.py --frames data/frames --manifest data/raw/manifest.csv \\
        --params params.yaml --grid scripts/grids/covid_blues_frame.yaml --seeds 0 1 2 --out nested_cv.json

Frozen-prefix candidates (``arch: mobilenet_v2``) read their features from ``--cache`` (computed once).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.frame_model import FrameModelSection  # noqa: E402
from lus.data.frame_dataset import load_frame_table  # noqa: E402
from lus.data.manifest import extracted_videos  # noqa: E402
from lus.evaluation.nested_cv import add_nested_cv_args, load_grid, nested_cv, split_settings  # noqa: E402
from lus.io import write_json  # noqa: E402
from lus.metrics.classification import weighted_prf  # noqa: E402
from lus.train.frame import FoldFrames, predict, train_frame_model  # noqa: E402


def video_scores(model: torch.nn.Module, table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) video scores of the videos of ``rows``: argmax of the mean frame probabilities."""
    probs = predict(model, table.images[torch.from_numpy(rows)])["probs"]
    video = table.video[rows]
    vids = np.unique(video)
    truth = np.array([table.weak[rows][video == v][0] for v in vids])
    return truth, np.array([probs[video == v].mean(0).argmax() for v in vids])


def train_and_score(table, sec: FrameModelSection, parts: dict[str, list[str]], seed: int, cache: str) -> dict:
    patient = np.asarray(table.patient_ids)[table.video]
    rows = {name: np.flatnonzero(np.isin(patient, ids)) for name, ids in parts.items()}
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = train_frame_model(FoldFrames(table, rows["train"], rows["val"]), sec, seed, tmp, cache_dir=cache,
                                     progress=False)
    truth, pred = video_scores(model, table, rows["test"])
    return {"f1_weighted": float(weighted_prf(truth, pred)[2]), "accuracy": float((truth == pred).mean()),
            "predicted_counts": np.bincount(pred, minlength=4).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_nested_cv_args(ap)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    grid, candidates = load_grid(args.grid, FrameModelSection, args.params)
    videos = extracted_videos(args.manifest, Path(args.frames) / "index.csv")
    tables = {s: load_frame_table(args.frames, videos, s) for s in {c.input_size for c in candidates}}

    def score(c: int, parts: dict[str, list[str]], seed: int) -> dict:
        return train_and_score(tables[candidates[c].input_size], candidates[c], parts, seed, args.cache)

    report = {"grid": grid, **nested_cv(videos, len(candidates), score, "f1_weighted", seeds=args.seeds,
                                        inner=args.inner, only_folds=args.only_folds, **split_settings(args.params),
                                        names=[json.dumps(c) for c in grid], log=lambda m: print(m, flush=True))}
    write_json(args.out, report)
    print(json.dumps({s: (r["f1_weighted_mean"], r["chosen"]) for s, r in report["seeds"].items()}))


if __name__ == "__main__":
    main()
