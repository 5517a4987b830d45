"""Frame shards: one ``<video_id>.npz`` per video plus ``index.csv`` (contract in docs/ARCHITECTURE.md).

Why one file per video: DVC hashes and moves a few hundred files quickly but crawls with one
image per frame, and a whole video is what the training code loads anyway (frames of a video
are correlated and always stay in the same fold).

Shard arrays (T = kept frames):

==============  ================  ==============================================================
``frames``      uint8 (T, H, W)   grey, sector-cropped, resized frames
``frame_index`` int32 (T,)        source frame numbers (0-based, in decoding order, increasing)
``labels``      int8 (T,)         optional per-frame severity 0..3, -1 = unknown
``annotators``  int8 (A, T)       optional per-annotator labels, -1 = unknown
``masks``       uint8 (T, H, W)   optional pixel classes 0 background, 1..4 = region of score 0..3
==============  ================  ==============================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lus.io import write_npz

# index.csv: shard relative to data/frames; n_frames kept, n_decoded decoded; fps of the source file;
# crop box [x0, x1) x [y0, y1) in source pixels; has_labels / has_masks 0 or 1.
INDEX_COLUMNS = ["video_id", "shard", "n_frames", "n_decoded", "fps", "crop_x0", "crop_y0", "crop_x1", "crop_y1",
                 "has_labels", "has_masks"]
SHARD_KEYS = ("frames", "frame_index", "labels", "annotators", "masks")
LABEL_RANGE = (-1, 3)
MASK_CLASSES = 5


def check_shard(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``arrays`` break the shard contract above."""
    unknown = sorted(set(arrays) - set(SHARD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown shard array(s) {', '.join(unknown)}; allowed: {', '.join(SHARD_KEYS)}")
    for key in ("frames", "frame_index"):
        if key not in arrays:
            raise ValueError(f"{where}: shard lacks the '{key}' array")
    frames, index = arrays["frames"], arrays["frame_index"]
    if frames.dtype != np.uint8 or frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"{where}: 'frames' must be uint8 (T, H, W) with T >= 1, got {frames.dtype} {frames.shape}")
    t = len(frames)
    if index.dtype != np.int32 or index.shape != (t,):
        raise ValueError(f"{where}: 'frame_index' must be int32 ({t},), got {index.dtype} {index.shape}")
    if t > 1 and np.any(np.diff(index) <= 0):
        raise ValueError(f"{where}: 'frame_index' must be strictly increasing")
    if "labels" in arrays:
        lab = arrays["labels"]
        if lab.dtype != np.int8 or lab.shape != (t,):
            raise ValueError(f"{where}: 'labels' must be int8 ({t},), got {lab.dtype} {lab.shape}")
    if "annotators" in arrays:
        ann = arrays["annotators"]
        if ann.dtype != np.int8 or ann.ndim != 2 or ann.shape[1] != t:
            raise ValueError(f"{where}: 'annotators' must be int8 (A, {t}), got {ann.dtype} {ann.shape}")
    if "masks" in arrays:
        masks = arrays["masks"]
        if masks.dtype != np.uint8 or masks.shape != frames.shape:
            raise ValueError(f"{where}: 'masks' must be uint8 {frames.shape}, got {masks.dtype} {masks.shape}")


def write_shard(path: str | Path, durable: bool = True, **arrays: np.ndarray) -> None:
    """Check ``arrays`` against the contract and write them atomically as an uncompressed ``.npz``
    (``durable=False``: without the fsync, see :func:`lus.io.atomic_path`)."""
    check_shard(arrays, str(path))
    write_npz(path, durable=durable, **arrays)


def read_shard(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of a shard into memory (small: a 64x64 video of 400 frames is 1.6 MB)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame shard not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable frame shard ({exc})") from exc
    check_shard(arrays, str(path))
    return arrays
