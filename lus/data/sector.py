"""Automatic crop to the ultrasound sector (the fan or rectangle that holds the image).

Why: many LUS videos carry burned-in text, logos, rulers, depth scales, colour bars or UI borders
around the image. They differ by hospital and device, so a model that sees them can recognise the
source (and, through it, the label) instead of the lung.

What separates the sector from overlays is *time*: speckle, lung sliding, breathing and probe
motion change every sector pixel from frame to frame, while overlays are static. So:

1. up to 16 frames spread over the first N (the caller's bounded buffer, e.g. 32, about a
   second of video) are point-sampled to a working size (longest side <= 256 px; detection
   does not need full resolution);
2. the per-pixel temporal standard deviation marks "live" pixels (threshold relative to the
   clip's own variation, with an absolute floor so compression flicker does not count);
3. a small opening drops isolated flicker (e.g. a frame counter's edges), a closing scaled to the
   frame joins the sector across dark, quiet patches (rib shadows, effusions);
4. the largest connected component, together with any other live region of comparable size (a
   fan can be split by a deep band without echo signal), is the sector; it is grown into the
   weakly varying pixels touching it (dim, deep parts of the fan), and its bounding box, mapped
   back to full resolution, is the crop;
5. the region's convex hull is kept too: the corners of a fan's bounding box lie outside the fan
   and may hold text or markers, so extraction blanks pixels outside the hull (``crop: auto``).

Fallbacks, in order, so a crop is never empty: when the clip barely moves (a single frame, a still
GIF, frozen frames) the largest bright region of the mean frame after an opening that erases thin
strokes (text, ruler ticks); if that is tiny too, the whole frame. Every box keeps at least
``min_area_fraction`` of the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

WORK_SIZE = 256  # longest side of the detection image (pixels)
MAX_SAMPLES = 16  # frames (spread over the buffer) that enter the temporal statistics
MIN_AREA_FRACTION = 0.04  # a detected region smaller than this share of the frame is not a sector
_STD_STRONG = 2.0  # grey levels: seed pixels vary more than this ...
_STD_RELATIVE = 0.12  # ... and more than this share of the clip's 99th-percentile variation
_STD_WEAK = 1.0  # grey levels: pixels varying more than this may extend the seed (dim, deep sector)
_PART_OF_LARGEST = 0.1  # live regions at least this share of the largest one are also sector
_DARK_FLOOR = 12.0  # grey levels: intensity fallback treats darker mean pixels as background


@dataclass(frozen=True)
class CropBox:
    """Pixel box ``[x0, x1) x [y0, y1)`` in source-frame coordinates (x = column, y = row)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def apply(self, image: np.ndarray) -> np.ndarray:
        """View of ``image`` (H, W[, C]) inside the box (no copy)."""
        return image[self.y0:self.y1, self.x0:self.x1]


@dataclass(frozen=True)
class Sector:
    """Result of :func:`find_sector`.

    ``box``: the crop; ``method``: how it was found (``motion|intensity|full``); ``hull``: convex
    polygon (K, 2) int32 of (x, y) full-resolution points around the detected region, or None for
    ``full``. Corners of a fan's bounding box lie outside the fan and can still hold text or
    markers; extraction blanks them with :meth:`inside_mask`.
    """

    box: CropBox
    method: str
    hull: np.ndarray | None = None

    def inside_mask(self, height: int, width: int) -> np.ndarray:
        """uint8 (height, width) mask of the full frame: 1 inside the hull (everything for ``full``)."""
        if self.hull is None:
            return np.ones((height, width), np.uint8)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(mask, self.hull, 1)
        return mask


def temporal_stats(frames: Sequence[np.ndarray], factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and standard deviation over time, float32 (h, w), at 1/``factor`` resolution.

    Frames are *point-sampled* every ``factor`` pixels (nearest neighbour, no averaging), so a
    pixel's temporal std is that of a full-resolution pixel whatever the working scale and the
    absolute thresholds keep their meaning for every frame size; sums are accumulated with
    ``cv2.accumulate``/``accumulateSquare``, so no (N, H, W) float stack is ever built.
    """
    h, w = frames[0].shape[:2]
    hh, ww = h // factor, w // factor
    # float32 sums of squares stay exact up to 2**24 / 255**2 = 258 frames (find_sector passes <= 16).
    total = np.zeros((hh, ww), np.float32)
    squares = np.zeros((hh, ww), np.float32)
    for frame in frames:
        if frame.shape[:2] != (h, w):
            raise ValueError(f"find_sector: frames differ in size ({frame.shape[:2]} vs {(h, w)})")
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if factor > 1:
            grey = cv2.resize(grey[: hh * factor, : ww * factor], (ww, hh), interpolation=cv2.INTER_NEAREST)
        cv2.accumulate(grey, total)
        cv2.accumulateSquare(grey, squares)
    n = len(frames)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    return mean, std


def _kernel(size: int) -> np.ndarray:
    size = max(3, size | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def motion_masks(std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strong and weak boolean (h, w) masks of pixels whose temporal ``std`` marks them as live.

    Strong: clearly live (speckle, tissue motion); relative to the clip's own variation because
    contrast differs a lot between devices. Weak: anything above compression flicker, which is
    what the deep, dark part of a fan shows (electronic noise but little signal).
    """
    # Percentile of a 1-in-4 pixel subsample: the same statistic at a quarter of the cost.
    strong = std > max(_STD_STRONG, _STD_RELATIVE * float(np.percentile(std[::2, ::2], 99)))
    return strong, std > _STD_WEAK


def _motion_region(std: np.ndarray, min_area: float) -> np.ndarray | None:
    """uint8 (h, w) region: the sizeable strong regions, grown by the weak regions touching them."""
    side = max(std.shape)
    strong, weak = motion_masks(std)
    open3 = _kernel(3)
    strong = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_OPEN, open3)
    strong = cv2.morphologyEx(strong, cv2.MORPH_CLOSE, _kernel(round(0.04 * side)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.max() < min_area:
        return None
    # Every sizeable live region belongs to the image: a deep band with no echo signal can split
    # a fan into two parts. Small live specks (a clock, a blinking cursor) stay out.
    lut = np.zeros(n, bool)
    lut[1:] = areas >= _PART_OF_LARGEST * areas.max()
    seed = lut[labels]
    weak = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_OPEN, open3)
    weak = cv2.morphologyEx(weak, cv2.MORPH_CLOSE, _kernel(round(0.02 * side)))
    n_weak, wlabels = cv2.connectedComponents(weak, connectivity=8)
    touching = np.zeros(n_weak, bool)
    touching[wlabels[seed]] = True
    touching[0] = False
    return (seed | touching[wlabels]).astype(np.uint8)


def _bright_region(mask: np.ndarray, open_size: int, close_size: int, min_area: float) -> np.ndarray | None:
    """uint8 (h, w): the largest component of ``mask`` after an opening and a closing, if big enough."""
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _kernel(open_size))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _kernel(close_size))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_area:
        return None
    return (labels == best).astype(np.uint8)


def find_sector(frames: Sequence[np.ndarray] | np.ndarray, work_size: int = WORK_SIZE,
                min_area_fraction: float = MIN_AREA_FRACTION) -> Sector:
    """Locate the ultrasound sector in the first frames of a clip.

    ``frames``: N >= 1 frames of one video, grey (H, W) or BGR (H, W, 3) uint8, as a sequence or an
    (N, H, W[, 3]) array; callers pass a bounded buffer (about 32 frames is plenty, motion over
    ~1 s of video). Returns the crop box in full-resolution pixels, the method that produced it
    and the region's convex hull (never an empty box: at worst the whole frame, method ``full``).
    """
    if len(frames) == 0:
        raise ValueError("find_sector needs at least one frame")
    h, w = frames[0].shape[:2]
    full = CropBox(0, 0, w, h)
    factor = max(1, math.ceil(max(h, w) / work_size))
    if len(frames) > MAX_SAMPLES:  # the buffer sets the time span; 16 samples spread over it suffice
        frames = [frames[int(i)] for i in np.round(np.linspace(0, len(frames) - 1, MAX_SAMPLES))]
    mean, std = temporal_stats(frames, factor)
    wh, ww = mean.shape
    min_area = min_area_fraction * wh * ww
    side = max(wh, ww)

    region, method = None, "full"
    if len(frames) >= 2:
        region = _motion_region(std, min_area)
        method = "motion"
    if region is None:
        bright = mean > max(_DARK_FLOOR, 0.1 * float(np.percentile(mean[::2, ::2], 99)))
        # The opening (~2% of the frame, >= 3 px) erases text strokes and ruler ticks before the
        # largest-region step, so a caption touching the sector cannot drag the box outwards.
        region = _bright_region(bright, open_size=max(3, round(0.02 * side)), close_size=round(0.04 * side),
                                min_area=min_area)
        method = "intensity"
    if region is None:
        return Sector(full, "full")

    x, y, bw, bh = cv2.boundingRect(region)
    # Back to full resolution, rounding outwards, plus one working pixel of margin for resampling.
    x0 = max(0, (x - 1) * factor)
    y0 = max(0, (y - 1) * factor)
    x1 = min(w, (x + bw + 1) * factor)
    y1 = min(h, (y + bh + 1) * factor)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return Sector(full, "full")
    # Hull of the region's pixel squares (corners), one working pixel larger, in full-resolution pixels.
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    points = np.concatenate([c.reshape(-1, 2) for c in contours])
    corners = np.concatenate([points + (dx, dy) for dx in (-1, 2) for dy in (-1, 2)])
    hull = cv2.convexHull((corners * factor).astype(np.int32)).reshape(-1, 2)
    hull[:, 0] = hull[:, 0].clip(0, w - 1)
    hull[:, 1] = hull[:, 1].clip(0, h - 1)
    return Sector(CropBox(x0, y0, x1, y1), method, hull)
