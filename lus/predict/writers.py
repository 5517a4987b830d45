"""Streaming writers of predict's outputs: annotated videos and the per-frame CSV.

OpenCV's bundled FFmpeg cannot encode H.264, so videos are MPEG-4 part 2 (``mp4v`` in ``.mp4``,
plays in VLC, browsers vary) or Motion-JPEG (``MJPG`` in ``.avi``, larger, plays almost anywhere).
Both encoders drop an odd last row/column, so frames are padded to even sizes with black instead.
Writers append frame by frame; atomicity comes from the caller building the whole output folder
under a temporary name (``lus.io.atomic_dir``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

VIDEO_FORMATS = {"mp4": ("mp4v", ".mp4"), "avi": ("MJPG", ".avi")}
DEFAULT_FPS = 25.0  # when the container does not say (some GIFs)


def pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)


class VideoSink:
    """An OpenCV video writer opened at the first frame (when the size is known)."""

    def __init__(self, path: Path, video_format: str, fps: float) -> None:
        if video_format not in VIDEO_FORMATS:
            raise ValueError(f"unknown video format {video_format!r}; expected one of {', '.join(VIDEO_FORMATS)}")
        self.fourcc, suffix = VIDEO_FORMATS[video_format]
        self.path = Path(path).with_suffix(suffix)
        self.fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.n_written = 0

    def write(self, frame: np.ndarray) -> None:
        frame = pad_even(frame)
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size, True)
            if not self._writer.isOpened():
                raise OSError(f"cannot open a {self.fourcc} video writer for {self.path}")
            self._size = size
        elif size != self._size:
            raise ValueError(f"{self.path}: frame size changed from {self._size} to {size}")
        self._writer.write(frame)
        self.n_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if not self.path.is_file() or self.path.stat().st_size == 0:
                raise OSError(f"video writer produced no file: {self.path}")


class FrameCsv:
    """``frames.csv``: one row per frame, written chunk by chunk."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(columns)
        self.columns = list(columns)

    def write_rows(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows given column-wise (every column of the header, same length)."""
        cols = [np.asarray(columns[c]) for c in self.columns]
        for row in zip(*cols):
            self._writer.writerow([_cell(v) for v in row])

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _cell(value: object) -> object:
    if isinstance(value, (np.floating, float)):
        return repr(float(value))  # shortest exact text of the float
    if isinstance(value, np.integer):
        return int(value)
    return value
