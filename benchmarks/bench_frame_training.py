"""Training throughput of the frame model: the stage's data path vs a bare forward+backward loop.

    .venv/bin/python benchmarks/bench_frame_training.py [--frames data/frames --manifest data/raw/manifest.csv]
        [--params params.yaml] [--arch reg_stn] [--n 2048] [--epochs 2] [--threads 0] [--out bench.json]

``--params`` takes the ``frame_model`` section of that file (sizes, width, schedule, EMA, augmentation),
otherwise the section's built-in defaults; ``--arch`` / ``--epochs`` override it either way.

1. ``stage``: :func:`lus.train.frame.train_frame_fold` exactly as train_frame runs it (class-balanced
   sampler, per-batch augmentation on uint8 frames held in memory, loss parts, checkpoint + curve written
   every epoch, validation pass) -> frames/s = trained frames / wall time (validation excluded by using
   no val set; first epoch included; the one-time costs of a new process, ~2 s of imports when the first
   optimiser is built plus kernel warm-up, are paid before timing, as for the bare loop).
2. ``bare``: the same model, optimiser and loss on one fixed in-memory float batch, no sampler, no
   augmentation, no I/O (after 3 warm-up steps).
3. ``augment``: the augmentation alone (frames/s).
Without ``--frames`` it builds toy shards (``lus.data.frame_dataset.write_toy_shards``) in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.base import load_section  # noqa: E402
from lus.config.frame_model import FrameModelSection  # noqa: E402
from lus.data.augment import FrameAugment, frame_train_augment  # noqa: E402
from lus.data.frame_dataset import load_frame_table, to_input, write_toy_shards  # noqa: E402
from lus.models.frame_models import build_frame_model, frame_loss  # noqa: E402
from lus.models.frame_models import loss_spec, model_spec  # noqa: E402
from lus.train.frame import train_frame_fold  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="")
    ap.add_argument("--manifest", default="")
    ap.add_argument("--params", default="", help="params.yaml whose frame_model section is used")
    ap.add_argument("--arch", default="reg_stn")
    ap.add_argument("--n", type=int, default=2048, help="training frames used")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    base = load_section(FrameModelSection, args.params).to_dict() if args.params else {}
    sec = FrameModelSection.from_dict({**base, "arch": args.arch, "epochs": args.epochs, "milestones": []})
    with tempfile.TemporaryDirectory() as tmp:
        if args.frames:
            frames_dir, manifest = Path(args.frames), pd.read_csv(args.manifest, dtype={"video_id": str,
                                                                                        "patient_id": str})
        else:
            n_videos = max(1, args.n // 64)
            paths = write_toy_shards(Path(tmp) / "toy", n_patients=n_videos, videos_per_patient=1,
                                     frames_per_video=64, size=96)
            frames_dir, manifest = paths["frames"], pd.read_csv(paths["manifest"])
        t0 = time.perf_counter()
        table = load_frame_table(frames_dir, manifest, sec.input_size)
        load_s = time.perf_counter() - t0
        rows = np.arange(min(args.n, len(table)))
        images, targets = table.images[torch.from_numpy(rows)], table.targets[rows]
        empty = images[:0]

        # one-time costs of a fresh process, paid once per training process and not per epoch, are kept out of
        # both rates: building the first optimiser imports torch._dynamo (~2 s), the first steps warm up kernels
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        train_frame_fold(images[:4 * sec.batch_size], targets[:4 * sec.batch_size], empty, targets[:0],
                         FrameModelSection.from_dict({**sec.to_dict(), "epochs": 1}), 0, Path(tmp) / "warm",
                         resume=False, progress=False)
        t0 = time.perf_counter()
        train_frame_fold(images, targets, empty, targets[:0], sec, 0, Path(tmp) / "run", resume=False, progress=False)
        stage_s = time.perf_counter() - t0
        n_trained = (len(images) // sec.batch_size) * sec.batch_size * args.epochs

        torch.manual_seed(0)
        model = build_frame_model(model_spec(sec)).train()
        opt = torch.optim.Adam(model.parameters(), lr=sec.lr, weight_decay=sec.weight_decay)
        x = to_input(images[:sec.batch_size])
        y = torch.as_tensor(targets[:sec.batch_size]).clamp(min=0)
        lspec = loss_spec(sec)
        steps = max(5, n_trained // sec.batch_size // 2)
        for i in range(3 + steps):
            if i == 3:
                t0 = time.perf_counter()
            loss, _ = frame_loss(model(x), y, lspec, sec.arch, sec.stn_mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bare_fps = steps * sec.batch_size / (time.perf_counter() - t0)

        aug = FrameAugment()
        t0 = time.perf_counter()
        for start in range(0, len(images), sec.batch_size):
            frame_train_augment(to_input(images[start:start + sec.batch_size]), aug)
        aug_fps = len(images) / (time.perf_counter() - t0)

    result = {"arch": args.arch, "input_size": sec.input_size, "crop_size": sec.crop_size, "width": sec.width,
              "loc_input_size": sec.loc_input_size, "ema_decay": sec.ema_decay,
              "batch_size": sec.batch_size, "threads": torch.get_num_threads(), "frames": int(len(images)),
              "epochs": args.epochs, "load_seconds": round(load_s, 2), "stage_seconds": round(stage_s, 2),
              "stage_frames_per_s": round(n_trained / stage_s, 1), "bare_frames_per_s": round(bare_fps, 1),
              "augment_frames_per_s": round(aug_fps, 1)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
