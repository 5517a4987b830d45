"""Evenly spaced frames per video and a disk cache of their frozen backbone features (METHODS §4).

Sampling: ``n`` indices ``round(linspace(0, T - 1, n))`` (numpy rounding, half to even); a video with
fewer than ``n`` frames repeats frames, so every sequence has length ``n``.

Cache layout: ``<cache_dir>/<backbone.key>/<video_id>.n<n>.npz`` with ``features`` float32 ``(n, D)``,
``indices`` and ``frames_sha1`` (hash of the sampled uint8 frames). ``backbone.key`` hashes the
backbone name, its exact weights (file digest) and preprocessing, so an entry is reused only when
the same network sees the same pixels: a second run (another fold with an ImageNet backbone, a rerun
after a head-only change) does not recompute, and changed frames or weights never hit a stale entry.
A ``key.json`` next to the entries says in words what the key stands for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lus.io import write_json, write_npz


def sample_indices(n_frames: int, n: int) -> np.ndarray:
    """``round(linspace(0, T - 1, n))`` as int64; ``T`` = ``n_frames`` >= 1."""
    if n_frames < 1:
        raise ValueError(f"cannot sample from a video with {n_frames} frames")
    if n < 1:
        raise ValueError(f"need at least one frame per sequence, got n={n}")
    return np.round(np.linspace(0, n_frames - 1, n)).astype(np.int64)


def load_shard_frames(frames_dir: str | Path, video_id: str) -> np.ndarray:
    """``frames`` uint8 (T, H, W) of one shard ``<frames_dir>/<video_id>.npz``."""
    path = Path(frames_dir) / f"{video_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"frame shard not found: {path} (run: dvc repro extract_frames)")
    with np.load(path, allow_pickle=False) as z:
        return z["frames"]


class FeatureCache:
    """Per-video feature files of one backbone; counts ``hits`` and ``misses`` (computations)."""

    def __init__(self, cache_dir: str | Path, key: str, describe: dict | None = None):
        self.dir = Path(cache_dir) / key
        self.hits = 0
        self.misses = 0
        self._describe = describe or {}

    def _path(self, video_id: str, n: int) -> Path:
        return self.dir / f"{video_id}.n{n}.npz"

    def get(self, video_id: str, frames: np.ndarray, indices: np.ndarray,
            compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Features of ``frames`` (the sampled uint8 frames); computed and stored on a miss."""
        digest = hashlib.sha1(np.ascontiguousarray(frames).tobytes()
                              + np.asarray(frames.shape, np.int64).tobytes()).hexdigest()
        path = self._path(video_id, len(indices))
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["frames_sha1"]) == digest and np.array_equal(z["indices"], indices):
                        self.hits += 1
                        return z["features"]
            except (OSError, KeyError, ValueError):
                pass  # unreadable or old entry: recompute
        feats = np.asarray(compute(frames), np.float32)
        if not self.dir.is_dir() or not (self.dir / "key.json").is_file():
            write_json(self.dir / "key.json", self._describe)
        write_npz(path, features=feats, indices=np.asarray(indices, np.int64), frames_sha1=np.array(digest))
        self.misses += 1
        return feats


def sequence_features(video_ids: Sequence[str], frames_dir: str | Path, n: int, extract: Callable[[np.ndarray], np.ndarray],
                      cache: FeatureCache | None = None, progress: bool = False) -> np.ndarray:
    """``(V, n, D)`` float32 features of ``n`` evenly spaced frames per video (cached when given)."""
    out = []
    ids = list(video_ids)
    iterator = ids
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ids, desc="features", leave=False, mininterval=1.0)
    for vid in iterator:
        frames = load_shard_frames(frames_dir, vid)
        idx = sample_indices(len(frames), n)
        sel = frames[idx]
        out.append(cache.get(vid, sel, idx, extract) if cache is not None else np.asarray(extract(sel), np.float32))
    if not out:
        return np.zeros((0, n, 0), np.float32)
    return np.stack(out)
