"""Frames + masks for the segmentation benchmark (METHODS §3): loading, augmentation, class-balanced draws.

:func:`load_seg_frames` reads the shards (``frames`` and ``masks`` uint8 (T, H, W), see
docs/ARCHITECTURE.md) of the requested videos into one in-memory :class:`SegFrames` (a few thousand
64x64 frames are a few MB). :class:`SegDataset` serves batches through the training loop's fast
path ``get_batch(idx)`` -> ``(x, y)``: ``x`` float (B, 1, H, W) in [-1, 1] (``2x/255 - 1``), ``y``
long (B, H, W) class ids 0..4.

Augmentation (paper family, each op with p = 0.33 unless stated; geometric ops warp frame and mask
together, mask by nearest neighbour, outside -> background): hflip p 0.5; translate ±15 %; rotate
±15°; shear ±4.5°; zoom [0.55, 1.45]; contrast [0.55, 1.45]; multiply [0.55, 1.45]; Gaussian blur
σ <= 0.75; Gaussian noise std 0.015 (on [0, 1] intensities). Built from :mod:`lus.data.augment`.

Class-balanced sampling (:func:`balanced_frame_indices`), per draw: pick a class uniformly among the
classes present in the training frames (background included, so frames without markers are still
seen), then a video containing it with probability ∝ 0.2 * (min(n, 50) - 1) + 1 (n = the video's
frames containing the class), then a frame of that video containing the class, without replacement
(each (class, video) pool is a seeded permutation consumed in order and restarted when used up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from lus.data import augment as A
from lus.labels import N_SEG_CLASSES as N_CLASSES



@dataclass
class SegFrames:
    """Frames and masks of a set of videos, in video order then shard order."""

    frames: np.ndarray        # uint8 (N, H, W)
    masks: np.ndarray         # uint8 (N, H, W), 0..4
    video: np.ndarray         # int64 (N,) index into video_ids
    frame: np.ndarray         # int32 (N,) row in the video's shard
    video_ids: list[str]

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, rows: np.ndarray) -> "SegFrames":
        return SegFrames(self.frames[rows], self.masks[rows], self.video[rows], self.frame[rows], self.video_ids)

    def video_id_per_row(self) -> np.ndarray:
        return np.asarray(self.video_ids, dtype=str)[self.video] if len(self.video) else np.zeros(0, dtype=str)


def masked_videos(frames_dir: str | Path) -> list[str]:
    """Video ids whose shard carries ``masks`` (from ``index.csv``'s ``has_masks`` when present)."""
    frames_dir = Path(frames_dir)
    index_path = frames_dir / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(f"frame index not found: {index_path} (run: dvc repro extract_frames)")
    index = pd.read_csv(index_path, dtype={"video_id": str})
    if "has_masks" in index.columns:
        return sorted(index.loc[index["has_masks"].fillna(0).astype(int) > 0, "video_id"])
    out = []
    for vid in index["video_id"]:
        with np.load(frames_dir / f"{vid}.npz", allow_pickle=False) as z:
            if "masks" in z.files:
                out.append(vid)
    return sorted(out)


def load_seg_frames(frames_dir: str | Path, video_ids: Sequence[str]) -> SegFrames:
    """Read frames and masks of ``video_ids`` (every one must have masks of the frames' size)."""
    frames_dir = Path(frames_dir)
    frames, masks, video, rows, ids = [], [], [], [], []
    shape = None
    for vid in video_ids:
        path = frames_dir / f"{vid}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"frame shard not found: {path} (run: dvc repro extract_frames)")
        with np.load(path, allow_pickle=False) as z:
            if "masks" not in z.files:
                raise ValueError(f"{path}: no 'masks' array; segmentation needs masked videos")
            f, m = z["frames"], z["masks"]
        if f.shape != m.shape:
            raise ValueError(f"{path}: frames {f.shape} and masks {m.shape} differ in shape")
        if shape is None:
            shape = f.shape[1:]
        elif f.shape[1:] != shape:
            raise ValueError(f"{path}: frame size {f.shape[1:]} differs from {shape}; extract all videos at one size")
        if m.size and m.max() >= N_CLASSES:
            raise ValueError(f"{path}: mask values must be 0..{N_CLASSES - 1}, found {int(m.max())}")
        k = len(ids)
        ids.append(vid)
        frames.append(f.astype(np.uint8))
        masks.append(m.astype(np.uint8))
        video.append(np.full(len(f), k, np.int64))
        rows.append(np.arange(len(f), dtype=np.int32))
    if not ids:
        h, w = (0, 0)
        return SegFrames(np.zeros((0, h, w), np.uint8), np.zeros((0, h, w), np.uint8), np.zeros(0, np.int64),
                         np.zeros(0, np.int32), [])
    return SegFrames(np.concatenate(frames), np.concatenate(masks), np.concatenate(video), np.concatenate(rows), ids)


@dataclass(frozen=True)
class SegAugment:
    """Paper augmentation family (METHODS §3), strengths at the paper's 1.5 setting."""

    p: float = 0.33
    hflip: float = 0.5
    translate: float = 0.15
    degrees: float = 15.0
    shear: float = 4.5
    zoom: tuple[float, float] = (0.55, 1.45)
    contrast: tuple[float, float] = (0.55, 1.45)
    multiply: tuple[float, float] = (0.55, 1.45)
    blur_sigma: float = 0.75
    noise_std: float = 0.015


def augment_batch(image: torch.Tensor, mask: torch.Tensor, cfg: SegAugment = SegAugment(),
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``image`` (B, 1, H, W) in [0, 1] and ``mask`` (B, H, W) together (one warp per sample)."""
    b, _, h, w = image.shape
    size = (h, w)
    m = A.flip_matrix(b, image, cfg.hflip, generator)
    m = m @ A.affine_matrix(b, image, size, translate=cfg.translate, p=cfg.p, generator=generator)
    m = m @ A.affine_matrix(b, image, size, degrees=cfg.degrees, p=cfg.p, generator=generator)
    m = m @ A.affine_matrix(b, image, size, shear=cfg.shear, p=cfg.p, generator=generator)
    m = m @ A.affine_matrix(b, image, size, scale=cfg.zoom, p=cfg.p, generator=generator)
    image, mask = A.warp(image, m, size, mask)
    lo, hi = cfg.contrast
    image = A.brightness_contrast(image, brightness=0.0, contrast=(hi - lo) / 2, p=cfg.p, generator=generator)
    image = A.multiply(image, cfg.multiply[0], cfg.multiply[1], p=cfg.p, generator=generator)
    image = A.gaussian_blur(image, cfg.blur_sigma, p=cfg.p, generator=generator)
    image = A.gaussian_noise(image, cfg.noise_std, p=cfg.p, generator=generator)
    return image, mask


class SegDataset:
    """Training-loop dataset over :class:`SegFrames` (``get_batch`` fast path, optional augmentation)."""

    def __init__(self, data: SegFrames, augment: SegAugment | None = None):
        self.data = data
        self.augment = augment
        self._frames = torch.from_numpy(np.ascontiguousarray(data.frames))
        self._masks = torch.from_numpy(np.ascontiguousarray(data.masks))

    def __len__(self) -> int:
        return len(self.data)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._frames[idx].float().div(255.0)[:, None]
        y = self._masks[idx].long()
        if self.augment is not None:
            x, y = augment_batch(x, y, self.augment)
        return x.mul(2.0).sub(1.0), y


def class_presence(masks: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """(N, n_classes) bool: frame i contains at least one pixel of class c."""
    flat = masks.reshape(len(masks), -1)
    return np.stack([(flat == c).any(axis=1) for c in range(n_classes)], axis=1) if len(masks) else \
        np.zeros((0, n_classes), bool)


class BalancedFrameSampler:
    """``sample_fn(epoch, generator)`` for the training loop: METHODS §3 class-balanced frame draws."""

    def __init__(self, presence: np.ndarray, video: np.ndarray, n_draws: int, cap: int = 50):
        self.n_draws = int(n_draws)
        self.pools: dict[int, list[tuple[np.ndarray, float]]] = {}
        for c in range(presence.shape[1]):
            rows_c = np.flatnonzero(presence[:, c])
            if not len(rows_c):
                continue
            entries = []
            for v in np.unique(video[rows_c]):
                rows = rows_c[video[rows_c] == v]
                entries.append((rows, 0.2 * (min(len(rows), cap) - 1) + 1.0))
            self.pools[c] = entries
        if not self.pools:
            raise ValueError("class-balanced sampling: no training frames")
        self.classes = sorted(self.pools)

    def __call__(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.as_tensor(balanced_frame_indices(self, generator), dtype=torch.long)


def balanced_frame_indices(sampler: BalancedFrameSampler, generator: torch.Generator) -> np.ndarray:
    """One epoch of draws (depends only on ``generator``)."""
    classes = sampler.classes
    cls = torch.randint(len(classes), (sampler.n_draws,), generator=generator).numpy()
    weights = {c: torch.tensor([w for _, w in sampler.pools[c]], dtype=torch.double) for c in classes}
    cursor: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
    out = np.empty(sampler.n_draws, np.int64)
    for i, ci in enumerate(cls):
        c = classes[int(ci)]
        v = int(torch.multinomial(weights[c], 1, generator=generator))
        key = (c, v)
        perm, pos = cursor.get(key, (None, 0))
        rows = sampler.pools[c][v][0]
        if perm is None or pos >= len(perm):
            perm, pos = rows[torch.randperm(len(rows), generator=generator).numpy()], 0
        out[i] = perm[pos]
        cursor[key] = (perm, pos + 1)
    return out
