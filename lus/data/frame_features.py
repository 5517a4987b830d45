"""Frozen features of every frame of a :class:`~lus.data.frame_dataset.FrameTable`, and their video pooling.

Features come per video through a :class:`~lus.data.video_sampling.FeatureCache` (keyed by the backbone's
exact weights and preprocessing, guarded by a hash of the frames), so a rerun, another stage with the same
backbone, or a head-only change costs no backbone pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lus.data.frame_dataset import FrameTable
from lus.data.video_sampling import FeatureCache


def frame_table_features(table: FrameTable, extract: Callable[[np.ndarray], np.ndarray],
                         cache: FeatureCache | None = None, progress: bool = False) -> np.ndarray:
    """(N, D) float32 features of every row of ``table``, computed video by video."""
    iterator = range(len(table.video_ids))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="probe features", leave=False, mininterval=1.0)
    out: np.ndarray | None = None
    for v in iterator:
        rows = np.flatnonzero(table.video == v)
        frames = table.images[rows].numpy()
        positions = np.arange(len(rows), dtype=np.int64)
        vid = table.video_ids[v]
        feats = (cache.get(vid, frames, positions, extract) if cache is not None
                 else np.asarray(extract(frames), np.float32))
        if out is None:
            out = np.zeros((len(table), feats.shape[1]), np.float32)
        out[rows] = feats
    return out if out is not None else np.zeros((0, 0), np.float32)


def pool_mean_std(features: np.ndarray, video: np.ndarray, n_videos: int) -> np.ndarray:
    """(n_videos, 2D): per video the mean and the (population) std of its frames' features."""
    dim = features.shape[1]
    out = np.zeros((n_videos, 2 * dim), np.float64)
    for v in range(n_videos):
        f = features[video == v].astype(np.float64)
        if len(f):
            out[v, :dim] = f.mean(0)
            out[v, dim:] = f.std(0)
    return out
