"""Stream a video as chunks of (source frame, preprocessed frame), memory bounded by the chunk size.

Preprocessing is the extraction stage's own (:func:`lus.data.extract.settle_sector`): the sector is
found on the first ``crop_buffer`` frames, then every frame is cropped, turned grey, resized and
blanked outside the sector exactly as the training shards were. Unlike extraction, every decoded
frame is kept (no ``stride``/``target_fps``/``max_frames``): the annotated copy of the video needs a
prediction for each frame. Only the crop buffer and one chunk of frames are ever held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lus.config.extract import ExtractSection
from lus.data.extract import SectorCrop, settle_sector
from lus.data.video import VideoReader


@dataclass
class Chunk:
    """Consecutive frames of one video: ``index`` int (n,), ``originals`` BGR uint8 (n, H, W, 3) as
    decoded, ``small`` uint8 (n, h, w) preprocessed like a training shard."""

    index: np.ndarray
    originals: np.ndarray
    small: np.ndarray
    crop: SectorCrop

    def __len__(self) -> int:
        return len(self.index)


def preprocessed(reader: VideoReader, cfg: ExtractSection, want: Callable[[int], bool] | None = None
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray, SectorCrop]]:
    """``(frame number, BGR frame, preprocessed frame, crop)`` for every decoded frame, in order.

    With ``want``, only the frames it accepts are yielded (the others past the crop buffer are only
    grabbed, not converted): the CNN-LSTM reads just its sampled frames this way.
    """
    n_buffer = cfg.crop_buffer if cfg.crop != "none" else 0
    wanted = want or (lambda _i: True)
    head: list[np.ndarray] = []
    crop: SectorCrop | None = None
    for i, frame in reader.frames(want=None if want is None else (lambda i: i < n_buffer or wanted(i))):
        if frame is None:
            continue
        if crop is None:
            if i < n_buffer:
                head.append(frame)  # the reader hands out a fresh array per frame (no buffer reuse)
                if len(head) < n_buffer:
                    continue
            crop = settle_sector(head, frame.shape[:2], cfg)
            for j, f in enumerate(head):
                if wanted(j):
                    yield j, f, crop.convert(f), crop
            head = []
            if i < n_buffer:
                continue
        yield i, frame, crop.convert(frame), crop
    if crop is None and head:  # clip shorter than the crop buffer
        crop = settle_sector(head, reader.frame_shape, cfg)
        for j, f in enumerate(head):
            if wanted(j):
                yield j, f, crop.convert(f), crop


class VideoStream:
    """One decoding pass over ``path``; ``fps``/``n_frames_hint``/``frame_shape`` describe the container."""

    def __init__(self, path: str | Path, cfg: ExtractSection, chunk_size: int = 32) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
        self.reader = VideoReader(path)
        self.path = self.reader.path
        self.cfg = cfg
        self.chunk_size = chunk_size
        self.fps = self.reader.fps
        self.n_frames_hint = self.reader.n_frames_meta

    @property
    def n_decoded(self) -> int:
        return self.reader.n_decoded

    def chunks(self) -> Iterator[Chunk]:
        index: list[int] = []
        originals: list[np.ndarray] = []
        small: list[np.ndarray] = []
        crop: SectorCrop | None = None
        for i, frame, pre, crop in preprocessed(self.reader, self.cfg):
            index.append(i)
            originals.append(frame)
            small.append(pre)
            if len(index) == self.chunk_size:
                yield Chunk(np.asarray(index), np.stack(originals), np.stack(small), crop)
                index, originals, small = [], [], []
        if index:
            assert crop is not None
            yield Chunk(np.asarray(index), np.stack(originals), np.stack(small), crop)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "VideoStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
