"""The CNN-LSTM's diagnosis of one video for ``lus predict``: which frames it reads, and its classes.

The CNN-LSTM was trained on ``seq_len`` frames sampled from each training *shard*, i.e. from the
frames extraction kept. A new video is therefore read the same way: the frames extraction would keep
(:func:`lus.data.extract.frame_selector` for ``stride``/``target_fps``, then
:func:`lus.data.extract.spread` for ``max_frames``), then :func:`lus.data.video_sampling.sample_indices`
over them. Those frames are preprocessed by the stream's own converter (sector crop settled on the
first ``crop_buffer`` frames) and fed to :class:`lus.export.bundle.CnnLstmEnsemble`.

Two cheap passes over the file before the frame pass: one counting frames (grab only, the sample
depends on the length), one decoding only the crop buffer and the sampled frames. Memory holds just
``seq_len`` frames, and the diagnosis is known before the annotated video is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lus.config.extract import ExtractSection
from lus.data.extract import frame_selector, spread
from lus.data.video import VideoError, VideoReader
from lus.data.video_sampling import sample_indices
from lus.export.bundle import CnnLstmEnsemble
from lus.predict.stream import preprocessed


def sampled_frame_numbers(n_decoded: int, fps: float, cfg: ExtractSection, seq_len: int, name: str = "video"
                          ) -> np.ndarray:
    """Source frame numbers (int64, length ``seq_len``) the CNN-LSTM reads from a video of ``n_decoded`` frames."""
    keep = frame_selector(cfg, fps, name)
    kept = np.asarray([i for i in range(n_decoded) if keep(i)], np.int64)
    kept = kept[spread(len(kept), cfg.max_frames)]
    return kept[sample_indices(len(kept), seq_len)]


def read_sampled_frames(path: str | Path, cfg: ExtractSection, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 (seq_len, h, w) preprocessed like a shard, their source frame numbers)``."""
    with VideoReader(path) as reader:
        for _ in reader.frames(want=lambda _i: False):
            pass
        n_decoded, fps = reader.n_decoded, reader.fps
    numbers = sampled_frame_numbers(n_decoded, fps, cfg, seq_len, str(path))
    wanted = set(numbers.tolist())
    with VideoReader(path) as reader:
        small = {i: pre for i, _frame, pre, _crop in preprocessed(reader, cfg, want=wanted.__contains__)}
    missing = sorted(wanted - set(small))
    if missing:
        raise VideoError(f"{path}: frames {missing[:5]} counted in a first pass could not be decoded again")
    return np.stack([small[int(i)] for i in numbers]), numbers


def diagnose(path: str | Path, model: CnnLstmEnsemble, cfg: ExtractSection) -> dict[str, Any]:
    """``video.json``'s ``diagnosis`` entry: class probabilities (fold mean), predicted class, frames read."""
    frames, numbers = read_sampled_frames(path, cfg, model.seq_len)
    out = model(frames)
    probs = out["probs"]
    best = int(np.argmax(probs))
    return {
        "predicted": model.classes[best],
        "probabilities": {c: float(p) for c, p in zip(model.classes, probs)},
        "per_fold": {str(k): {c: float(p) for c, p in zip(model.classes, v)} for k, v in out["per_fold"].items()},
        "target": model.target, "classes": model.classes, "folds": model.folds,
        "frames_read": [int(i) for i in numbers],
        "model": "CNN-LSTM (Barros et al. 2021)" + (f", fold {model.folds[0]}" if len(model.folds) == 1 else
                                                    f", mean softmax of folds {', '.join(map(str, model.folds))}"),
    }
