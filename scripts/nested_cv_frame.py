"""Choose a frame-model configuration by nested cross-validation on training patients only (issue 13, item 5).

For every fold seed and every outer fold, the outer fold's training patients (``train`` + ``val``) are split
again into ``--inner`` patient-wise folds (``lus.data.folds.make_folds``, same stratification as the
pipeline). Each candidate of ``--grid`` (a YAML list of ``frame_model`` overrides on top of ``--params``) is
trained on every inner fold's training patients (epoch chosen on its validation patients) and scored on its
inner test patients: weighted F1 of the video score = argmax of the mean frame probabilities (the
pipeline's argmax_mean rule). The candidate with the best inner mean is retrained on the outer fold's
train/val patients and scored once on the outer test patients, which no choice has seen; the mean of
those outer scores is the nested-CV estimate of the whole procedure, selection included.

    python scripts/nested_cv_frame.py --frames data/frames --manifest data/raw/manifest.csv \\
        --params params.yaml --grid presets/covid_blues_grid.yaml --seeds 0 1 2 --out nested_cv.json

Frozen-prefix candidates (``arch: mobilenet_v2``) read their features from ``--cache`` (computed once).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.base import load_section  # noqa: E402
from lus.config.frame_model import FrameModelSection  # noqa: E402
from lus.data.folds import fold_partitions, make_folds  # noqa: E402
from lus.data.frame_dataset import load_frame_table, read_index  # noqa: E402
from lus.data.manifest import read_manifest  # noqa: E402
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


def labelled_videos(frames: str, manifest: str) -> pd.DataFrame:
    """The manifest rows of the extracted videos (what the pipeline's split stage splits)."""
    index = read_index(frames)
    table = read_manifest(manifest)
    return table[table["video_id"].isin(set(index["video_id"]))].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--grid", required=True, help="YAML list of frame_model overrides (the candidates)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold seeds (split.seed = base.seed)")
    ap.add_argument("--folds", type=int, default=5, help="outer patient-wise folds")
    ap.add_argument("--inner", type=int, default=3, help="inner patient-wise folds")
    ap.add_argument("--only-folds", type=int, nargs="*", default=None,
                    help="run these outer folds only (a quicker comparison of candidates; no full estimate)")
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--out", required=True, help="JSON with every inner and outer score")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    grid = yaml.safe_load(Path(args.grid).read_text())
    if not isinstance(grid, list) or not all(isinstance(c, dict) for c in grid):
        raise SystemExit(f"{args.grid}: expected a YAML list of frame_model override mappings")
    base = load_section(FrameModelSection, args.params).to_dict()
    candidates = [FrameModelSection.from_dict({**base, **c}) for c in grid]   # bad keys fail here, before any work
    videos = labelled_videos(args.frames, args.manifest)
    tables = {s: load_frame_table(args.frames, videos, s) for s in {c.input_size for c in candidates}}
    report: dict = {"grid": grid, "seeds": {}}
    t0 = time.perf_counter()
    for seed in args.seeds:
        outer = make_folds(videos, args.folds, 0.2, seed)["folds"]
        runs = []
        for k in (args.only_folds if args.only_folds else range(args.folds)):
            parts = fold_partitions(outer, k)
            pool = set(parts["train"]) | set(parts["val"])
            inner = make_folds(videos[videos["patient_id"].astype(str).isin(pool)], args.inner, 0.2, seed)["folds"]
            inner_f1 = []
            for c, sec in enumerate(candidates):
                scores = [train_and_score(tables[sec.input_size], sec, fold_partitions(inner, j), seed + j, args.cache)
                          for j in range(args.inner)]
                inner_f1.append(float(np.mean([s["f1_weighted"] for s in scores])))
                print(f"seed {seed} fold {k} candidate {c} {grid[c]}: inner F1 {inner_f1[-1]:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            best = int(np.argmax(inner_f1))
            test = train_and_score(tables[candidates[best].input_size], candidates[best], parts, seed + k, args.cache)
            print(f"seed {seed} fold {k}: chose {best}, outer test F1 {test['f1_weighted']:.3f}", flush=True)
            runs.append({"fold": k, "inner_f1": inner_f1, "chosen": best, "test": test})
        report["seeds"][str(seed)] = {
            "folds": runs, "f1_weighted_mean": float(np.mean([r["test"]["f1_weighted"] for r in runs])),
            "accuracy_mean": float(np.mean([r["test"]["accuracy"] for r in runs])),
            "chosen": [r["chosen"] for r in runs]}
    means = [s["f1_weighted_mean"] for s in report["seeds"].values()]
    report["f1_weighted_mean_over_seeds"] = float(np.mean(means))
    report["f1_weighted_std_over_seeds"] = float(np.std(means))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, report)
    print(json.dumps({s: (r["f1_weighted_mean"], r["chosen"]) for s, r in report["seeds"].items()}))


if __name__ == "__main__":
    main()
