"""Frames of the extracted shards, held in memory for the frame model.

Shards ``data/frames/<video_id>.npz`` (see docs/ARCHITECTURE.md) carry ``frames`` uint8 (T, H, W),
``frame_index`` and optionally ``labels`` int8 (T,), ``masks`` uint8 (T, H, W), ``annotators`` int8 (A, T).
:func:`load_frame_table` reads the shards of the requested videos once, resizes every frame to
``input_size`` x ``input_size`` (bilinear, antialiased; the model's test transform) and keeps them as
uint8 (N, S, S): a few thousand 64 x 64 frames take a few MB, so no DataLoader workers are needed.

Training target of a frame: its frame label when the shard has ``labels`` (>= 0), otherwise the video's
``video_score`` from the manifest as a **weak label** (every frame of the video gets the video score).
covid-blues has only video scores, so its frame model is trained on weak labels and its frame metrics
are reported separately as ``weak_label`` accuracy. Frames with neither label (-1) are not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from lus.data.augment import FrameAugment, frame_train_augment


@dataclass
class FrameTable:
    """All frames of a set of videos, in video order then temporal (shard) order."""

    images: torch.Tensor                  # uint8 (N, S, S), resized to the model input
    video: np.ndarray                     # int (N,) index into ``video_ids``
    frame_index: np.ndarray               # int (N,) source frame numbers
    labels: np.ndarray                    # int (N,) frame label 0..3, -1 unknown
    weak: np.ndarray                      # int (N,) video score of the frame's video, -1 unknown
    video_ids: list[str]
    patient_ids: list[str]                # per video
    annotators: dict[str, np.ndarray] = field(default_factory=dict)   # video_id -> (A, T)
    masks: dict[str, np.ndarray] = field(default_factory=dict)        # video_id -> uint8 (T, H, W), native size

    def __len__(self) -> int:
        return len(self.video)

    @property
    def targets(self) -> np.ndarray:
        """Training target per frame: frame label, else weak (video) label, else -1."""
        return np.where(self.labels >= 0, self.labels, self.weak)

    def rows_of_patients(self, patients: Iterable[str]) -> np.ndarray:
        keep = set(patients)
        vid_ok = np.array([p in keep for p in self.patient_ids], dtype=bool)
        return np.flatnonzero(vid_ok[self.video]) if len(self.video) else np.zeros(0, dtype=int)

    def video_id_per_row(self) -> np.ndarray:
        return np.asarray(self.video_ids, dtype=object)[self.video]


def resize_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (T, H, W) -> uint8 (T, size, size), bilinear with antialiasing (chunked to bound memory)."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if x.shape[1:] == (size, size):
        return x.clone()
    out = []
    for start in range(0, len(x), 512):
        chunk = x[start:start + 512].unsqueeze(1).float()
        r = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(r.round().clamp(0, 255).to(torch.uint8).squeeze(1))
    return torch.cat(out) if out else torch.zeros(0, size, size, dtype=torch.uint8)


def read_index(frames_dir: str | Path) -> pd.DataFrame:
    path = Path(frames_dir) / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(f"frame index not found: {path} (run the extract_frames stage first)")
    return pd.read_csv(path, dtype={"video_id": str, "shard": str})


def load_frame_table(frames_dir: str | Path, videos: pd.DataFrame, input_size: int, with_masks: bool = False,
                     index: pd.DataFrame | None = None) -> FrameTable:
    """Load the shards of ``videos`` (columns ``video_id, patient_id, video_score``) that were extracted.

    Videos missing from ``index.csv`` (skipped by extraction) are left out silently; the caller can
    compare ``table.video_ids`` with its list.
    """
    frames_dir = Path(frames_dir)
    index = read_index(frames_dir) if index is None else index
    shard_of = dict(zip(index["video_id"], index["shard"]))
    images, vid, fidx, labels, weak = [], [], [], [], []
    video_ids, patient_ids = [], []
    annotators: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for rec in videos.to_dict("records"):
        v = str(rec["video_id"])
        if v not in shard_of:
            continue
        path = frames_dir / str(shard_of[v])
        if not path.is_file():
            raise FileNotFoundError(f"frame shard listed in index.csv not found: {path}")
        with np.load(path) as z:
            frames = z["frames"]
            t = len(frames)
            k = len(video_ids)
            video_ids.append(v)
            patient_ids.append(str(rec["patient_id"]))
            images.append(resize_frames(frames, input_size))
            vid.append(np.full(t, k, dtype=np.int64))
            fidx.append(z["frame_index"].astype(np.int64) if "frame_index" in z.files else np.arange(t))
            lab = z["labels"].astype(np.int64) if "labels" in z.files else np.full(t, -1, dtype=np.int64)
            labels.append(lab)
            score = rec.get("video_score")
            weak.append(np.full(t, -1 if score is None or pd.isna(score) else int(score), dtype=np.int64))
            if "annotators" in z.files:
                annotators[v] = z["annotators"].astype(np.int64)
            if with_masks and "masks" in z.files:
                masks[v] = z["masks"]
    if not images:
        return FrameTable(torch.zeros(0, input_size, input_size, dtype=torch.uint8), np.zeros(0, np.int64),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), [], [])
    return FrameTable(torch.cat(images), np.concatenate(vid), np.concatenate(fidx), np.concatenate(labels),
                      np.concatenate(weak), video_ids, patient_ids, annotators, masks)


def to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S) -> float (B, 1, S, S) in [0, 1] (models replicate grey to RGB)."""
    return images_u8.unsqueeze(1).float().div_(255.0)


class FrameDataset:
    """In-memory frames for :func:`lus.train.loop.fit` (fast ``get_batch`` path, augmentation per batch)."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int] | np.ndarray,
                 augment: FrameAugment | None = None) -> None:
        if len(images) != len(targets):
            raise ValueError("FrameDataset: images and targets differ in length")
        self.images = images
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_input(self.images[idx])
        if self.augment is not None:
            x, _ = frame_train_augment(x, self.augment)
        return x, self.targets[idx]


def write_toy_shards(root: str | Path, n_patients: int = 8, videos_per_patient: int = 2, frames_per_video: int = 24,
                     size: int = 48, seed: int = 0, with_labels: bool = True) -> dict[str, Path]:
    """Tiny contract-conforming dataset for tests and benchmarks (not the project's synthetic generator).

    Writes ``root/frames/<video_id>.npz`` + ``index.csv``, ``root/manifest.csv`` and ``root/folds.json``
    (as many folds as fit, <= 4; two val patients per fold). Each frame shows a speckle background with a pleural line and a
    score-specific marker (0 horizontal A-lines, 1 vertical B-lines, 2 B-lines + dark consolidation,
    3 white patch; brighter with severity, so a tiny CNN learns it in a few epochs) in a rectangle whose
    mask class is score + 1. Frame labels step between the video
    score and one below it, so videos contain transitions; four simulated annotators disagree sometimes.
    """
    from lus.io import write_csv, write_json, write_npz

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows, index_rows = [], []
    for p in range(n_patients):
        for v in range(videos_per_patient):
            vid = f"toy_p{p}_v{v}"
            score = int((p + v) % 4)
            t = frames_per_video
            labels = np.full(t, score, dtype=np.int8)
            if score > 0:
                cut = int(rng.integers(t // 3, 2 * t // 3))
                labels[cut:cut + t // 4] = score - 1
            frames = np.zeros((t, size, size), dtype=np.uint8)
            masks = np.zeros((t, size, size), dtype=np.uint8)
            for i in range(t):
                img = rng.normal(60, 20, (size, size))
                img[size // 6:size // 6 + 2, :] += 120                      # pleural line
                h = int(rng.integers(size // 3, size // 2))
                w = int(rng.integers(size // 3, size // 2))
                y0 = int(rng.integers(size // 6 + 3, size - h))
                x0 = int(rng.integers(0, size - w))
                y = int(labels[i])
                reg = img[y0:y0 + h, x0:x0 + w]
                reg += 45.0 * y - 30.0                                        # brighter with severity
                if y == 0:
                    reg[::6, :] += 110
                elif y == 1:
                    reg[:, ::7] += 130
                elif y == 2:
                    reg[:, ::7] += 130
                    reg[h // 4:3 * h // 4, w // 4:3 * w // 4] = 10
                else:
                    reg += 150
                frames[i] = np.clip(img, 0, 255).astype(np.uint8)
                masks[i, y0:y0 + h, x0:x0 + w] = y + 1
            ann = np.repeat(labels[None, :], 4, axis=0).astype(np.int8)
            flip = rng.random(ann.shape) < 0.15
            ann[flip] = np.clip(ann[flip] + rng.choice([-1, 1], size=int(flip.sum())), 0, 3)
            arrays = {"frames": frames, "frame_index": np.arange(t, dtype=np.int32) * 2}
            if with_labels:
                arrays.update(labels=labels, masks=masks, annotators=ann)
            write_npz(root / "frames" / f"{vid}.npz", **arrays)
            index_rows.append({"video_id": vid, "shard": f"{vid}.npz", "n_frames": t, "n_decoded": t, "fps": 10.0,
                               "crop_x0": 0, "crop_y0": 0, "crop_x1": size, "crop_y1": size,
                               "has_labels": with_labels, "has_masks": with_labels})
            rows.append({"video_id": vid, "path": f"videos/{vid}.avi", "patient_id": f"P{p:02d}", "hospital": "toy",
                         "probe": "convex", "fps": 10.0, "n_frames": t, "video_score": score,
                         "diagnosis": "covid", "covid_positive": 1, "frame_labels": "", "masks": ""})
    write_csv(root / "frames" / "index.csv", pd.DataFrame(index_rows))
    write_csv(root / "manifest.csv", pd.DataFrame(rows))
    patients = [f"P{p:02d}" for p in range(n_patients)]
    k = min(4, n_patients // 2)
    folds = []
    for f in range(k):
        test = patients[f::k]
        rest = [p for p in patients if p not in test]
        # two val patients whose videos cover all four scores (scores of patient p: p % 4, (p + 1) % 4)
        first = int(rest[0][1:])
        partner = [p for p in rest[1:] if (int(p[1:]) - first) % 4 == 2][:1]
        val = [rest[0]] + partner
        folds.append({"train": [p for p in rest if p not in val], "val": val, "test": test})
    write_json(root / "folds.json", {"seed": seed, "group_key": "patient_id", "stratify_by": "none", "folds": folds})
    return {"frames": root / "frames", "manifest": root / "manifest.csv", "folds": root / "folds.json"}
