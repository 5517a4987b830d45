"""Automatic crop to the ultrasound sector.

Why: most LUS videos carry burned-in text, logos, rulers, colour bars or UI borders around the
image, which differ by hospital and device and would let a model recognise the source instead of
the lung. What separates the sector from overlays is *time*: speckle, lung sliding, breathing and
probe motion change the sector from frame to frame, while overlays are static. The sector is taken
as the largest connected region of temporally varying pixels (over a short buffer of frames),
closed morphologically; its bounding box is the crop. If the clip has (almost) no motion, the
bounding box of the largest non-black region is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropBox:
    """Pixel box ``[x0, x1) x [y0, y1)`` in the source frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    def apply(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y0:self.y1, self.x0:self.x1]

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


def _largest_component_box(mask: np.ndarray) -> tuple[CropBox, int] | None:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = stats[best]
    return CropBox(int(x), int(y), int(x + w), int(y + h)), int(area)


def _clean(mask: np.ndarray, size: int) -> np.ndarray:
    k = max(3, size | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, (k // 2) | 1),) * 2)
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, small)


def find_sector(frames: np.ndarray, min_area_share: float = 0.05) -> CropBox:
    """Crop box of the ultrasound sector from grey frames ``(N, H, W)`` uint8 (N >= 1)."""
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError("find_sector expects grey frames of shape (N, H, W) with N >= 1")
    n, h, w = frames.shape
    full = CropBox(0, 0, w, h)
    size = max(3, int(round(0.02 * max(h, w))))
    floor = min_area_share * h * w
    if n >= 2:
        spread = frames.max(axis=0) - frames.min(axis=0)  # uint8: max >= min, no wrap-around
        thresh = max(4.0, 0.12 * float(np.percentile(spread, 99)))
        found = _largest_component_box(_clean(spread > thresh, size))
        if found is not None and found[1] >= floor:
            return found[0]
    # Still image or almost no motion: fall back to the largest non-black region of the mean frame.
    mean = frames.mean(axis=0)
    found = _largest_component_box(_clean(mean > max(8.0, 0.05 * float(mean.max())), size))
    if found is not None and found[1] >= floor:
        return found[0]
    return full
