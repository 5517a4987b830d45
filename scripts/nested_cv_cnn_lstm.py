"""Choose a CNN-LSTM configuration by nested cross-validation on training patients only (issue 13, item 5).

The loop is :func:`lus.evaluation.nested_cv.nested_cv` (outer folds = the pipeline's own, from the ``split``
section of ``--params``). Each candidate of ``--grid`` (a YAML list of ``cnn_lstm`` overrides on top of
``--params``) is trained exactly as the ``train_cnn_lstm`` stage trains a fold (:func:`lus.train.cnn_lstm.fit_head`:
epoch chosen on the inner fold's validation patients) and scored on the inner test patients by video accuracy,
the metric the report gives for the CNN-LSTM.

    python scripts/nested_cv_cnn_lstm.py --frames data/frames --manifest data/raw/manifest.csv \\
        --params params.yaml --grid scripts/grids/pocus_cnn_lstm.yaml --seeds 0 1 2 --out nested_cv.json

Features come from the feature cache (``--cache``), so each backbone / input size / sequence length is computed
once for all folds and candidates. The ``frame_model`` backbone needs a trained frame model per fold and cannot
be a candidate; with a frozen ImageNet frame model it is the same as ``mobilenet_v2`` at the frame model's size.
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

from lus.config.cnn_lstm import CnnLstmSection  # noqa: E402
from lus.data.manifest import extracted_videos  # noqa: E402
from lus.evaluation.nested_cv import add_nested_cv_args, load_grid, nested_cv, split_settings  # noqa: E402
from lus.io import write_json  # noqa: E402
from lus.metrics.classification import weighted_prf  # noqa: E402
from lus.models.cnn_lstm import predict_probs  # noqa: E402
from lus.runtime import seed_everything  # noqa: E402
from lus.train.cnn_lstm import fit_head, labelled_videos, sequence_feature_tensor  # noqa: E402

FEATURE_KEYS = ("backbone", "weights", "input_size", "seq_len", "feature_batch", "device")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_nested_cv_args(ap)
    args = ap.parse_args()
    grid, candidates = load_grid(args.grid, CnnLstmSection, args.params)
    bad = [i for i, c in enumerate(candidates) if c.backbone == "frame_model"]
    if bad:
        raise SystemExit(f"{args.grid}: candidate(s) {bad} use backbone frame_model, which needs a trained frame "
                         f"model per fold; use the torchvision backbone it wraps (e.g. mobilenet_v2 at its input_size)")
    if len({c.target for c in candidates}) > 1:
        raise SystemExit(f"{args.grid}: every candidate must have the same cnn_lstm.target")
    videos, column, classes = labelled_videos(args.frames, args.manifest, candidates[0].target)
    torch.set_num_threads(max(1, candidates[0].num_threads or torch.get_num_threads()))
    features: dict[tuple, torch.Tensor] = {}
    seed_everything(0)   # weights: none (a random-init control) is then the same backbone on every run
    for c in candidates:
        key = tuple(getattr(c, k) for k in FEATURE_KEYS)
        if key not in features:
            features[key] = sequence_feature_tensor(c, videos["video_id"].tolist(), args.frames, args.cache,
                                                    progress=True)[0]
    y = torch.as_tensor(videos["y"].to_numpy(), dtype=torch.long)
    patients = videos["patient_id"].astype(str).to_numpy()

    def score(c: int, parts: dict[str, list[str]], seed: int) -> dict:
        cfg = candidates[c]
        feats = features[tuple(getattr(cfg, k) for k in FEATURE_KEYS)]
        rows = {name: np.flatnonzero(np.isin(patients, ids)) for name, ids in parts.items()}
        with tempfile.TemporaryDirectory() as tmp:
            model, _ = fit_head(feats, y, rows, len(classes), cfg, seed, tmp)
        truth = y[torch.from_numpy(rows["test"])].numpy()
        pred = predict_probs(model, feats[torch.from_numpy(rows["test"])]).argmax(1)
        return {"accuracy": float((truth == pred).mean()), "f1_weighted": float(weighted_prf(truth, pred)[2]),
                "predicted_counts": np.bincount(pred, minlength=len(classes)).tolist()}

    # Folds are made from every extracted video, as the split stage makes them; a fold's unlabelled videos are
    # simply not among the rows it trains or scores on (as in the stage).
    nested = nested_cv(extracted_videos(args.manifest, Path(args.frames) / "index.csv"), len(candidates), score, "accuracy",
                       seeds=args.seeds, inner=args.inner, only_folds=args.only_folds,
                       names=[json.dumps(c) for c in grid], log=lambda m: print(m, flush=True),
                       **split_settings(args.params))
    report = {"target": column, "classes": classes, "grid": grid, **nested}
    write_json(args.out, report)
    print(json.dumps({s: (r["accuracy_mean"], r["chosen"]) for s, r in report["seeds"].items()}))
    print(f"most chosen: {report['most_chosen']}")


if __name__ == "__main__":
    main()
