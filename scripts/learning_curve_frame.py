"""Learning curve of a frame-model configuration over the number of training patients (issue 13, item 6).

For every outer patient-wise fold (``lus.data.folds.make_folds``, as the pipeline splits), the model is trained on
a random share of the fold's training patients (its validation patients unchanged, for epoch selection) and scored
on the fold's test patients: weighted F1 of the video score (argmax of the mean frame probabilities). Each share is
drawn ``--repeats`` times; the curve is the mean over folds and draws. A curve still rising at 100 % says more
patients would help; a flat one says the configuration, not the cohort size, is the limit.

    python scripts/learning_curve_frame.py --frames data/frames --manifest data/raw/manifest.csv \\
        --params params.yaml --config scripts/grids/covid_blues_frame.yaml --candidate 0 --out curve.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lus.config.frame_model import FrameModelSection  # noqa: E402
from lus.data.folds import fold_partitions, make_folds  # noqa: E402
from lus.data.frame_dataset import load_frame_table  # noqa: E402
from lus.data.manifest import extracted_videos  # noqa: E402
from lus.evaluation.nested_cv import load_grid, split_settings  # noqa: E402
from lus.io import write_json  # noqa: E402
from nested_cv_frame import train_and_score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--config", required=True, help="YAML list of frame_model overrides (scripts/grids/...)")
    ap.add_argument("--candidate", type=int, default=0, help="which entry of --config")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    grid, candidates = load_grid(args.config, FrameModelSection, args.params)
    if not 0 <= args.candidate < len(grid):
        raise SystemExit(f"--candidate {args.candidate}: {args.config} lists {len(grid)} candidates")
    override, sec = grid[args.candidate], candidates[args.candidate]
    videos = extracted_videos(args.manifest, Path(args.frames) / "index.csv")
    table = load_frame_table(args.frames, videos, sec.input_size)
    split = split_settings(args.params)   # the pipeline's folds for this seed
    folds = make_folds(videos, split["folds"], split["val_fraction"], args.seed, split["stratify_by"])["folds"]
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    curve = []
    for share in args.shares:
        scores, n_patients = [], []
        for k in range(len(folds)):
            parts = fold_partitions(folds, k)
            for r in range(1 if share >= 1 else args.repeats):
                n = max(2, int(round(share * len(parts["train"]))))
                train = sorted(rng.choice(parts["train"], n, replace=False).tolist())
                res = train_and_score(table, sec, {**parts, "train": train}, args.seed + k, args.cache)
                scores.append(res["f1_weighted"])
                n_patients.append(n)
        curve.append({"share": share, "train_patients_mean": float(np.mean(n_patients)),
                      "f1_weighted_mean": float(np.mean(scores)), "f1_weighted_std": float(np.std(scores)),
                      "runs": len(scores)})
        print(f"share {share:.2f} ({np.mean(n_patients):.1f} training patients): video F1 "
              f"{np.mean(scores):.3f} ± {np.std(scores):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_json(args.out, {"config": override, "seed": args.seed, "curve": curve})


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
