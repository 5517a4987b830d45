"""Burned-in overlays: preset text, orientation marker and depth ruler, outside the sector.

Why: real clips carry static on-screen text whose layout differs by device and site; it leaks
the source unless the pipeline crops to the sector. The overlay is drawn once per video with
``cv2.putText`` and never changes over time. Each text line is placed where its whole box fits
outside the field of view (in JPEG blocks the sector does not touch, see ``jpeg_keep_out``) - searching down the hospital's preferred corner and
shrinking the font if needed - so text is legible rather than clipped; anything that still
touches the field is erased, so the overlay can never cover the ultrasound image.
"""

from __future__ import annotations

import cv2
import numpy as np

from lus.synth.geometry import Geometry
from lus.synth.style import HospitalStyle

FONT = cv2.FONT_HERSHEY_PLAIN


def _free(keep_out: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """True if the box [x, x+w) x [y, y+h) is inside the image and clear of ``keep_out``."""
    H, W = keep_out.shape
    if x < 0 or y < 0 or x + w > W or y + h > H:
        return False
    return not keep_out[y:y + h, x:x + w].any()


def _place_text(layer: np.ndarray, keep_out: np.ndarray, text: str, scale: float, left: bool,
                cursor: tuple[int, int, int]) -> tuple[int, int, int]:
    """Draw ``text`` in the chosen corner at the first free spot, flowing like a header line.

    ``cursor`` = (row of the current line, x just past the previous text on it (left corner) or
    just before it (right corner), row below the current line). The text first tries to continue
    the current line, then searches downwards from the next row, shrinking the font if needed.
    Returns the updated cursor (unchanged if the text did not fit anywhere).
    """
    H, W = layer.shape
    row, x_edge, next_row = cursor
    for s in (scale, scale * 0.8, scale * 0.65):
        (tw, th), base = cv2.getTextSize(text, FONT, s, 1)
        box_h = th + base + 1
        same_x = x_edge + 4 if left else x_edge - 4 - tw
        corner_x = 1 if left else W - tw - 1
        spots = [(same_x, row)] if x_edge != (0 if left else W) else []
        spots += [(corner_x, y) for y in range(next_row, H - box_h)]
        for x, y in spots:
            if _free(keep_out, x, y, tw + 1, box_h):
                cv2.putText(layer, text, (x, y + th), FONT, s, 200, 1, cv2.LINE_AA)
                return y, (x + tw if left else x), max(next_row, y + box_h + 1)
    return cursor


def jpeg_keep_out(inside: np.ndarray, block: int = 8, margin: int = 2) -> np.ndarray:
    """bool (H, W): pixels an overlay must not use.

    The field of view dilated by ``margin`` pixels and then grown to whole ``block`` x ``block``
    JPEG blocks: MJPG codes each 8x8 luma block on its own, so text sharing a block with the
    changing sector would flicker after decoding (and look like part of the sector to a
    motion-based crop); text in blocks of its own stays byte-stable over time.
    """
    h, w = inside.shape
    grown = cv2.dilate(inside.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    hb, wb = -(-h // block), -(-w // block)
    padded = np.zeros((hb * block, wb * block), dtype=bool)
    padded[:h, :w] = grown
    blocks = padded.reshape(hb, block, wb, block).any(axis=(1, 3))
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:h, :w]


def make_overlay(geom: Geometry, style: HospitalStyle, point: str, depth_cm: float) -> np.ndarray:
    """uint8 (H, W) overlay layer (0 = transparent) for one video."""
    h, w = geom.height, geom.width
    layer = np.zeros((h, w), dtype=np.uint8)
    keep_out = jpeg_keep_out(geom.inside)
    scale = style.font_scale * min(h, w) / 128.0
    left = style.text_corner == "left"
    cursor = (1, 0 if left else w, 1)
    for text in (style.label, f"D{depth_cm:.0f}", point):
        cursor = _place_text(layer, keep_out, text, scale, left, cursor)
    # Orientation marker in the opposite top corner (first free spot).
    for my in range(3, h - 4):
        mx = w - 5 if left else 4
        if _free(keep_out, mx - 3, my - 3, 7, 7):
            cv2.circle(layer, (mx, my), 2, 230, -1, cv2.LINE_AA)
            break
    # Depth ruler: ticks every 1 cm along the image edge.
    rx = 0 if style.ruler_side == "left" else w - 4
    for k in range(int(depth_cm) + 1):
        yy = int(round(geom.top + k * geom.px_per_depth / depth_cm))
        if yy < h:
            cv2.line(layer, (rx, yy), (rx + (2 if k % 5 else 3), yy), 180, 1)
    layer[keep_out] = 0
    return layer
