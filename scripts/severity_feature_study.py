"""Which frozen features carry the video severity score? Linear probes on several feature sets, nested CV (issue 13).

Asks whether a different read-out of the frozen ImageNet MobileNetV2 than the pooled last layer (which the linear
probe and the COVID-BLUES preset use), or simple hand-crafted ultrasound texture measures, predict the video score
0-3 better. Every candidate is a video-level linear probe (:func:`lus.train.linear_probe.fit_probe`: standardised
logistic regression, C chosen on the validation patients) on per-video mean and std over the extracted frames of:

- ``imagenet_m<k>``: MobileNetV2 (ImageNet, offline file) module ``k``'s output, averaged over space (module 18 is
  the 1280-d last layer the probe uses; 10, 13, 16 are mid-level texture layers with 64, 96, 160 channels);
- ``imagenet_all``: modules 10, 13, 16 and 18 side by side;
- ``texture``: per quarter of the image depth, mean and std brightness, share of bright pixels (> 0.6), the spread
  of column means (vertical lines: B-lines) and of row means (horizontal lines: A-lines), and the mean horizontal
  and vertical gradient magnitude and their ratio (32 numbers per frame);
- ``texture+imagenet_m18``.

The choice among them is made by :func:`lus.evaluation.nested_cv.nested_cv` on training patients only (weighted F1
of the video score), so the estimate includes the selection; ``--single`` scores each candidate alone on the outer
folds as well (no selection: one fixed configuration per row).

    python scripts/severity_feature_study.py --frames data/frames --manifest data/raw/manifest.csv \\
        --params params.yaml --seeds 0 1 2 --out severity_features.json [--size 112] [--single]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.data.shards import read_shard  # noqa: E402
from lus.data.manifest import extracted_videos  # noqa: E402
from lus.evaluation.nested_cv import nested_cv, split_settings  # noqa: E402
from lus.io import write_json  # noqa: E402
from lus.metrics.classification import weighted_prf  # noqa: E402
from lus.models.imagenet import imagenet_normalise, torchvision_weights  # noqa: E402
from lus.train.linear_probe import fit_probe  # noqa: E402

MODULES = (10, 13, 16, 18)
C_GRID = tuple(10.0 ** e for e in range(-4, 2))


def texture_features(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 -> (T, 32): eight texture measures in each quarter of the image depth."""
    x = frames.astype(np.float32) / 255.0
    h = x.shape[1]
    out = []
    for b in range(4):
        band = x[:, b * h // 4:(b + 1) * h // 4]
        gx = np.abs(np.diff(band, axis=2)).mean((1, 2))
        gy = np.abs(np.diff(band, axis=1)).mean((1, 2))
        out += [band.mean((1, 2)), band.std((1, 2)), (band > 0.6).mean((1, 2)), band.mean(1).std(1),
                band.mean(2).std(1), gx, gy, gx / (gy + 1e-6)]
    return np.stack(out, 1)


@torch.no_grad()
def imagenet_module_features(net: torch.nn.Module, frames: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """(T, H, W) uint8 -> {module: (T, channels)} spatial means of MobileNetV2's feature modules in ``MODULES``."""
    x = torch.from_numpy(frames).float().div(255.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    h, out = imagenet_normalise(x), {}
    for i, module in enumerate(net.features):
        h = module(h)
        if i in MODULES:
            out[i] = h.mean((2, 3)).numpy()
    return out


def video_feature_sets(frames_dir: str, video_ids: list[str], size: int) -> dict[str, np.ndarray]:
    """{candidate name: (V, D) per-video mean and std over frames}."""
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torchvision_weights("mobilenet_v2", "imagenet", "--size")[0])
    net.eval()
    rows: dict[str, list[np.ndarray]] = {}
    for vid in tqdm(video_ids, desc="features", unit="video"):
        frames = read_shard(Path(frames_dir) / f"{vid}.npz")["frames"]
        per_frame = {f"imagenet_m{k}": v for k, v in imagenet_module_features(net, frames, size).items()}
        per_frame["texture"] = texture_features(frames)
        for name, f in per_frame.items():
            rows.setdefault(name, []).append(np.concatenate([f.mean(0), f.std(0)]))
    sets = {name: np.stack(v) for name, v in rows.items()}
    sets["imagenet_all"] = np.concatenate([sets[f"imagenet_m{k}"] for k in MODULES], 1)
    sets["texture+imagenet_m18"] = np.concatenate([sets["texture"], sets["imagenet_m18"]], 1)
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--params", default="params.yaml", help="its split section gives the outer folds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--size", type=int, default=112, help="MobileNetV2 input size")
    ap.add_argument("--single", action="store_true", help="also score every candidate alone (no selection)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    videos = extracted_videos(args.manifest, Path(args.frames) / "index.csv")
    score_of = pd.to_numeric(videos["video_score"], errors="coerce")
    if score_of.isna().any():
        raise SystemExit(f"{args.manifest}: {int(score_of.isna().sum())} extracted video(s) have no video_score; "
                         f"this study needs a severity score for every video")
    y = score_of.to_numpy().astype(int)
    patients = videos["patient_id"].astype(str).to_numpy()
    sets = video_feature_sets(args.frames, videos["video_id"].tolist(), args.size)
    names = list(sets)

    def score(c: int, parts: dict[str, list[str]], seed: int) -> dict:
        x = sets[names[c]]
        rows = {part: np.isin(patients, ids) for part, ids in parts.items()}
        fit = fit_probe(x[rows["train"]], y[rows["train"]], x[rows["val"]], y[rows["val"]], 4, C_GRID,
                        lambda t, p: weighted_prf(t, p)[2])
        pred = fit.predict(x[rows["test"]])
        truth = y[rows["test"]]
        return {"f1_weighted": float(weighted_prf(truth, pred)[2]), "accuracy": float((truth == pred).mean())}

    folds = split_settings(args.params)
    report = {"size": args.size, "nested": nested_cv(videos, len(names), score, "f1_weighted", seeds=args.seeds,
                                                    inner=args.inner, names=names, log=lambda m: None, **folds)}
    print(f"nested CV (selection included): weighted F1 {report['nested']['f1_weighted_mean_over_seeds']:.3f} "
          f"± {report['nested']['f1_weighted_std_over_seeds']:.3f}; chosen {report['nested']['chosen_counts']}")
    if args.single:
        report["single"] = {}
        for c, name in enumerate(names):
            alone = nested_cv(videos, 1, lambda _c, parts, seed, c=c: score(c, parts, seed), "f1_weighted",
                              seeds=args.seeds, log=lambda m: None, **folds)
            report["single"][name] = {s: r["f1_weighted_mean"] for s, r in alone["seeds"].items()}
            print(f"{name}: weighted F1 per seed {json.dumps(report['single'][name])}")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
