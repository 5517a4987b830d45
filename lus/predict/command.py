"""``lus predict`` behind the argument parser (lus/cli.py): threads, device, bundle, videos, summary lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from lus.predict.run import PredictOptions, output_folders, predict_videos


def run_predict(videos: Sequence[str], model: str, out: str, fold: int | None = None, device: str = "cpu",
                threads: int = 1, opts: PredictOptions = PredictOptions()) -> None:
    """Predict ``videos`` into ``out``; raises ``ValueError`` naming the failed videos (exit code 1)."""
    import torch

    from lus.export.bundle import load_bundle
    from lus.runtime import resolve_device

    output_folders(videos, out)  # every input checked before any model is loaded or anything is written
    if opts.chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {opts.chunk_size}")
    # One thread is as fast for these small models and does not fight other jobs for the cores.
    torch.set_num_threads(threads if threads > 0 else max(1, os.cpu_count() or 1))
    try:
        dev = resolve_device(device)
    except RuntimeError as exc:  # CUDA requested but absent: a user error, not a crash
        raise ValueError(str(exc)) from exc
    bundle = load_bundle(model, fold=fold, device=dev, with_segmentation=opts.segmentation)
    if bundle.manifest.get("data", {}).get("source") == "synthetic":
        print(f"note: {model} was trained on synthetic data; its outputs say nothing about real scans",
              file=sys.stderr)
    if bundle.cnn_lstm is None:
        print(f"note: {model} has no CNN-LSTM ({bundle.missing_cnn_lstm}): no diagnosis, severity only")
    done, failed = predict_videos(videos, bundle, out, opts)
    for s in done:
        folder = Path(out) / Path(s["video"]).stem
        parts = [f"video score {s['video_score']}"] if "video_score" in s else []
        if "diagnosis" in s:
            d = s["diagnosis"]
            parts.append(f"diagnosis {d['predicted']} ({d['probabilities'][d['predicted']]:.2f}; "
                         + ", ".join(f"{c} {p:.2f}" for c, p in d["probabilities"].items()) + ")")
        print(f"{s['video']}: {'; '.join(parts)} ({s['n_frames']} frames; {bundle.description}) -> {folder}")
    for path, message in failed:
        print(f"error: {path}: {message}", file=sys.stderr)
    if failed:
        raise ValueError(f"{len(failed)} of {len(done) + len(failed)} video(s) failed: "
                         + ", ".join(str(p) for p, _ in failed))
