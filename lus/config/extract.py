"""Params section ``extract``: frame extraction (decode, sector crop, grey, resize, subsample)."""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import Section, bounded, choice


@dataclass(frozen=True)
class ExtractSection(Section):
    NAME = "extract"
    height: int = bounded(64, 16, 1024, "output frame height in pixels")
    width: int = bounded(64, 16, 1024, "output frame width in pixels")
    stride: int = bounded(1, 1, 1000, "keep every n-th decoded frame")
    target_fps: float = bounded(0.0, 0.0, 240.0, "keep frames at about this rate (0 = off; applied after stride)")
    crop_buffer: int = bounded(32, 2, 1000, "first frames buffered to find the sector crop")
    workers: int = bounded(2, 1, 64, "parallel processes over videos")
    on_error: str = choice("fail", ("fail", "skip"), "a bad video stops the stage (fail) or is recorded and skipped")
