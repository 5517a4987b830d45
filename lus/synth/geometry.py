"""Probe geometry: precomputed (depth, lateral) grids of the image field of view.

Why: every anatomical layer is defined in probe coordinates - normalised depth ``d`` (0 at the
skin, 1 at the deepest sample) and lateral position ``u`` (-1 left edge .. 1 right edge of the
field). Computing the two grids once per video lets a frame be rendered with a few vectorised
numpy expressions, and the same grids make the convex fan (apex above the image, concentric
arcs) and the linear rectangle look right without special cases elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Field of view of one video.

    Attributes:
        height, width: image size in pixels.
        probe: ``"convex"`` or ``"linear"``.
        depth: float32 (H, W) normalised depth from the skin, valid inside the field.
        lateral: float32 (H, W) lateral position in [-1, 1] inside the field.
        inside: bool (H, W) pixels that belong to the ultrasound field (black elsewhere).
        px_per_depth: pixels per unit of normalised depth (along a scan line).
        top: pixel row of the skin line at the centre of the field.
        apex: (x, y) of the convex apex in pixels (above the image), or None for linear.
        radii: (r0, r1) skin and deepest radius in pixels (convex), or None.
        half_angle: half opening angle in radians (convex), or None.
    """

    height: int
    width: int
    probe: str
    depth: np.ndarray
    lateral: np.ndarray
    inside: np.ndarray
    px_per_depth: float
    top: int
    apex: tuple[float, float] | None = None
    radii: tuple[float, float] | None = None
    half_angle: float | None = None

    def depth_to_row(self, d: float) -> float:
        """Pixel row of normalised depth ``d`` on the central scan line."""
        return self.top + d * self.px_per_depth


def convex_geometry(height: int, width: int, half_angle_deg: float, apex_ratio: float,
                    top_frac: float = 0.14, side_margin: int = 8) -> Geometry:
    """Fan sector of a curvilinear probe.

    The skin line starts ``top_frac`` of the height below the image top (a header band for
    burned-in text, as on real scanners; 18 px at 128 px = two JPEG block rows + margin, so
    the compressed text blocks never share a block with the changing sector).
    The virtual apex sits above the image at ``top - r0``; ``apex_ratio = r0 / r1`` sets how
    sharply the fan is truncated (real convex probes: about 0.3-0.5). As on many scanners the fan
    may be wider than the screen: it is then clipped by vertical sides ``side_margin`` pixels from
    the image border (room for the depth ruler); the skin arc spans at most 60 % of the width.
    """
    if height < 32 or width < 32:
        raise ValueError(f"image {width}x{height} too small for a sector (need >= 32 px each side)")
    top = max(2, int(round(top_frac * height)))
    bottom = height - 2
    r1 = (bottom - top) / (1.0 - apex_ratio)
    r0 = apex_ratio * r1
    cx, cy = (width - 1) / 2.0, top - r0
    # The skin arc (radius r0) spans at most ~60 % of the width, leaving the top corners free
    # for burned-in text as on real scanners.
    max_half = np.arcsin(min(1.0, 0.3 * width / r0))
    half = float(min(np.deg2rad(half_angle_deg), max_half))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dx, dy)
    depth = ((r - r0) / (r1 - r0)).astype(np.float32)
    lateral = (theta / half).astype(np.float32)
    inside = (depth >= 0) & (depth <= 1) & (np.abs(lateral) <= 1)
    inside &= (xx >= side_margin) & (xx <= width - 1 - side_margin)
    return Geometry(height, width, "convex", depth, lateral, inside, float(r1 - r0), top,
                    apex=(cx, cy), radii=(r0, r1), half_angle=half)


def linear_geometry(height: int, width: int, margin_frac: float = 0.16, top_frac: float = 0.14) -> Geometry:
    """Rectangle of a linear probe (narrower than the image so overlays fit at the sides)."""
    top = max(2, int(round(top_frac * height)))
    bottom = height - 2
    x0 = int(round(margin_frac * width))
    x1 = width - 1 - x0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = ((yy - top) / (bottom - top)).astype(np.float32)
    lateral = ((xx - (x0 + x1) / 2.0) / ((x1 - x0) / 2.0)).astype(np.float32)
    inside = (depth >= 0) & (depth <= 1) & (np.abs(lateral) <= 1)
    return Geometry(height, width, "linear", depth, lateral, inside, float(bottom - top), top)


def make_geometry(height: int, width: int, probe: str, half_angle_deg: float = 35.0,
                  apex_ratio: float = 0.4) -> Geometry:
    """Geometry for ``probe`` (``convex`` | ``linear``)."""
    if probe == "convex":
        return convex_geometry(height, width, half_angle_deg, apex_ratio)
    if probe == "linear":
        return linear_geometry(height, width)
    raise ValueError(f"unknown probe {probe!r}; expected convex or linear")
