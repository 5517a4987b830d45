"""Video decoding with one backend (OpenCV) for every container the project accepts.

Frames are streamed as grey uint8 arrays (H, W) so memory is bounded by what the caller keeps.
The decoded frame count is the truth: container metadata (CAP_PROP_FRAME_COUNT) is often wrong for
GIF, MPEG and variable-frame-rate files, so nothing downstream trusts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

SUPPORTED_SUFFIXES = (".mp4", ".avi", ".mov", ".mpeg", ".mpg", ".gif", ".m4v")


class VideoError(ValueError):
    """A video cannot be used: missing, unsupported container, unreadable/corrupt, or no frames."""


def check_video_path(path: Path) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise VideoError(f"{path}: unsupported container '{path.suffix}'; expected one of "
                         f"{', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")


def open_video(path: Path) -> cv2.VideoCapture:
    check_video_path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot be opened as a video (corrupt file or unknown codec)")
    return cap


def probe(path: Path) -> tuple[float, int]:
    """Container metadata ``(fps, frame_count)``; cheap, but only a hint (see module docstring)."""
    cap = open_video(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    return fps, count


def to_grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _fps_of(cap: cv2.VideoCapture, default: float = 25.0) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if fps > 0 and np.isfinite(fps) else default


def open_grey_stream(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    """``(fps, frames)`` from one open of the file: fps from the container (25 if unknown) and a
    generator of grey uint8 (H, W) frames that raises :class:`VideoError` if none decodes."""
    cap = open_video(path)
    return _fps_of(cap), _grey_frames(cap, path)


def iter_grey_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield every decoded frame as grey uint8 (H, W); raise :class:`VideoError` if none decodes."""
    return _grey_frames(open_video(path), path)


def _grey_frames(cap: cv2.VideoCapture, path: Path) -> Iterator[np.ndarray]:
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield to_grey(frame)
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{path}: no frame could be decoded (empty or corrupt video)")

