"""Params section ``extract``: frame extraction (decode, sector crop, grey, resize, subsample).

The defaults are the fast pipeline preset (64x64 grey, every frame); paper presets raise the size
(e.g. 224x224 for the Reg-STN frame model). Extraction is deterministic, so it does not read
``base.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice


@dataclass(frozen=True)
class ExtractSection(Section):
    NAME = "extract"
    height: int = bounded(64, 8, 2048, "output frame height in pixels")
    width: int = bounded(64, 8, 2048, "output frame width in pixels")
    stride: int = bounded(1, 1, 10000, "keep every n-th decoded frame (1 = all)")
    target_fps: float = bounded(0.0, 0.0, 1000.0,
                                "keep about this many frames per second of video, by time (0 = off; "
                                "never upsamples; exclusive with stride)")
    max_frames: int = bounded(0, 0, 100000,
                              "at most this many frames per video, spread evenly over the kept ones (0 = all)")
    crop: str = choice("auto", ("auto", "box", "none"),
                       "auto = crop to the detected sector's bounding box and blank what lies outside the "
                       "sector (text in the box corners); box = bounding box only; none = full frame")
    crop_buffer: int = bounded(32, 1, 512, "first frames buffered (in memory) to detect the sector")
    workers: int = bounded(2, 1, 64, "parallel processes over videos")
    on_error: str = choice("fail", ("fail", "skip"),
                           "fail = a bad video stops the stage; skip = it is listed in report.json and left out")

    def validate(self) -> None:
        if self.stride > 1 and self.target_fps > 0:
            raise ParamsError("params keys 'extract.stride' and 'extract.target_fps' are exclusive: "
                              f"got stride={self.stride} and target_fps={self.target_fps}; set stride: 1 "
                              "or target_fps: 0")
