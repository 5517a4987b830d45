"""Video decoding: one backend (OpenCV's FFmpeg reader) for every container the datasets use.

Why one backend: decoders disagree on frame counts (gif/mpeg/mov in particular), so frame indices,
labels and masks only line up if every stage decodes the same way. OpenCV 4.14's FFmpeg build reads
mp4, avi, mov, mpeg, gif, mkv and webm directly (GIFs included, composed to full frames), so no
per-format fallback is needed.

Frames are streamed one at a time (memory bounded by one frame); the number of decoded frames is
what counts: container metadata (``CAP_PROP_FRAME_COUNT``) is only a hint and is wrong for some
mpeg/mov files. Every failure raises :class:`VideoError` (a ``ValueError``) naming the file, except a
missing file, which raises ``FileNotFoundError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

# Containers FFmpeg-in-OpenCV decodes in this project (checked by tests on real and synthetic files).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mpeg", ".mpg", ".gif", ".mkv", ".webm")


class VideoError(ValueError):
    """A video cannot be decoded (unsupported container, corrupt bytes, no frames); names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata, read without decoding. ``n_frames`` is a hint; trust decoded counts."""

    path: Path
    fps: float  # NaN when the container does not say
    n_frames: int  # 0 when unknown
    width: int
    height: int


def check_video_path(path: str | Path) -> Path:
    """Raise early, with the file name, for a missing file or a container we do not decode."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{path}: unsupported video container '{path.suffix or '(no suffix)'}'; "
                         f"supported: {', '.join(VIDEO_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    return path


def _open(path: Path, threads: int | None) -> cv2.VideoCapture:
    params: list[int] = []
    if threads is not None:
        params = [cv2.CAP_PROP_N_THREADS, int(threads)]
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    except cv2.error as exc:  # pragma: no cover - defensive, OpenCV reports failure via isOpened
        raise VideoError(f"{path}: cannot open video ({exc})") from exc
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open video (corrupt file or not a video)")
    return cap


def _fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and 0 < fps < 1000 else float("nan")


def probe(path: str | Path) -> VideoInfo:
    """Container metadata (fast: no full decode). Used by importers for the manifest's fps/n_frames."""
    path = check_video_path(path)
    cap = _open(path, threads=1)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return VideoInfo(path=path, fps=_fps(cap), n_frames=max(n, 0),
                         width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


class VideoReader:
    """Stream the frames of one video file; the decoded count is known after iteration.

    Usage::

        with VideoReader(path) as reader:
            for index, frame in reader.frames():   # frame: uint8 (H, W, 3) BGR
                ...
        reader.n_decoded                         # frames actually decoded

    :meth:`frames` takes an optional ``want(index) -> bool``: frames it rejects are only *grabbed*
    (decoded but not converted/copied to numpy), which is cheaper when subsampling. Iteration ends at
    the first frame the decoder cannot read (truncated files keep their readable prefix); a video
    with zero readable frames raises :class:`VideoError`. ``threads`` sets FFmpeg's decoder threads
    (``None`` = OpenCV default, one per core; use 1 inside a process pool). ``reuse_buffer=True``
    decodes every frame into the same array (saves an allocation per frame): each yielded frame is
    then overwritten by the next one, so the caller must copy what it keeps.
    """

    def __init__(self, path: str | Path, threads: int | None = None, reuse_buffer: bool = False) -> None:
        self.path = check_video_path(path)
        self._reuse = reuse_buffer
        self._cap = _open(self.path, threads)
        self.fps: float = _fps(self._cap)
        self.n_frames_meta: int = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.n_decoded: int = 0
        self._shape: tuple[int, ...] | None = None

    def frames(self, want: Callable[[int], bool] | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yield ``(index, frame)`` for every decodable frame, in order; ``frame`` is BGR uint8
        (H, W, 3), or None where ``want(index)`` is False (grabbed only)."""
        cap = self._cap
        index = 0
        buf = None
        try:
            while True:
                if want is None or want(index):
                    ok, frame = cap.read(buf) if self._reuse else cap.read()
                    if not ok or frame is None:
                        break
                    if frame.ndim == 2:  # some decoders return grey for single-channel streams
                        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                    buf = frame
                    if self._shape is None:
                        self._shape = frame.shape
                    elif frame.shape != self._shape:
                        raise VideoError(f"{self.path}: frame {index} has shape {frame.shape}, "
                                         f"earlier frames {self._shape}; resolution changes are not supported")
                else:
                    if not cap.grab():
                        break
                    frame = None
                index += 1
                self.n_decoded = index
                yield index - 1, frame
        except cv2.error as exc:
            raise VideoError(f"{self.path}: decoding failed at frame {index} ({exc})") from exc
        if index == 0:
            raise VideoError(f"{self.path}: no frames could be decoded (empty or corrupt video)")

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """(H, W) of the decoded frames; None until one frame has been read (not just grabbed)."""
        return None if self._shape is None else (int(self._shape[0]), int(self._shape[1]))

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_frames(path: str | Path, threads: int | None = None) -> Iterator[np.ndarray]:
    """Generator of BGR uint8 (H, W, 3) frames; its return value (``StopIteration.value``) is the decoded count."""
    with VideoReader(path, threads=threads) as reader:
        for _, frame in reader.frames():
            yield frame
        return reader.n_decoded


def count_frames(path: str | Path, threads: int | None = None) -> int:
    """Number of decodable frames (grab only, no colour conversion); raises :class:`VideoError` if zero."""
    with VideoReader(path, threads=threads) as reader:
        for _ in reader.frames(want=lambda _i: False):
            pass
        return reader.n_decoded


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """All (or the first ``max_frames``) frames as uint8 (T, H, W, 3). For tests and small clips only."""
    out = []
    with VideoReader(path) as reader:
        for i, frame in reader.frames():
            if max_frames is not None and i >= max_frames:
                break
            out.append(frame)
    return np.stack(out)
