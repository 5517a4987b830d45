"""Pathological findings as vectorised layers on the per-frame probe grids.

Each function takes the frame's depth grid relative to the pleura (``rel``, depth units, > 0
below it) and the lateral grid ``u`` (both float32 (H, W)) and returns float32 (H, W) layers:
a soft weight in [0, 1] (for blending and for the mask) and, where relevant, the bright or dark
echo itself. The renderer decides the order of blending; the mask builder thresholds the same
weights, so what is drawn and what is labelled can never drift apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from lus.synth.plan import PROFILE_U, Consolidation
from lus.synth.texture import gauss, smoothstep


_PROFILE_STEP = float((len(PROFILE_U) - 1) / (PROFILE_U[-1] - PROFILE_U[0]))
BRONCHI_GRID = (96, (-1.2, 1.2), (-0.3, 1.5))   # samples per axis, du range, dd range of the bronchogram map


def profile_at(profile: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample a lateral profile (N_PROFILE,) at lateral positions ``u`` (H, W), linearly, clamped.

    ``cv2.remap`` on a one-row image does the lookup in one C call (np.interp is ~10x slower
    on a full frame); its 1/32-sample weight quantisation is invisible on these smooth profiles.
    """
    x = ((u - PROFILE_U[0]) * _PROFILE_STEP).astype(np.float32)
    src = np.ascontiguousarray(profile, dtype=np.float32).reshape(1, -1)
    return cv2.remap(src, x, np.zeros_like(x), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def bronchogram_map(c: Consolidation) -> np.ndarray:
    """Air bronchograms of ``c`` drawn once in patch coordinates, float32 (N, N).

    Axes: du = lateral offset / half-width over BRONCHI_GRID[1] (columns), dd = depth below the
    pleura / extent over BRONCHI_GRID[2] (rows). Short bright segments, longer along the beam
    and tilted towards the hilum; the renderer samples this map per frame with one remap.
    """
    n, (u0, u1), (d0, d1) = BRONCHI_GRID
    dd, du = np.meshgrid(np.linspace(d0, d1, n, dtype=np.float32), np.linspace(u0, u1, n, dtype=np.float32),
                         indexing="ij")
    out = np.zeros((n, n), np.float32)
    for bu, bd, length in c.bronchi:
        along = dd - bd - 0.15 * (du - bu)
        out += gauss(du - bu, 0.05) * gauss(along, 0.09 * length)
    return out


def bline_columns(u: np.ndarray, rel: np.ndarray, centres: np.ndarray, widths: np.ndarray,
                  amps: np.ndarray, confluent: float) -> tuple[np.ndarray, np.ndarray]:
    """Comet tails from the pleura to the bottom.

    Returns ``(weight, echo)``: weight = max lateral profile (1 at a column centre, flat-topped,
    widening with depth because ``u`` is an angle on a convex probe), echo = brightness that
    fades only slowly with depth (B-lines do not fade like A-lines). ``confluent`` (>= 1)
    widens the columns so neighbours merge at scores 2-3.
    """
    weight = np.zeros_like(u)
    echo = np.zeros_like(u)
    below = smoothstep(rel, 0.006)
    fade = np.clip(1.0 - 0.35 * np.clip(rel, 0.0, None), 0.5, 1.0)
    for c, w, a in zip(centres, widths, amps):
        x = (u - np.float32(c)) * np.float32(1.0 / (w * confluent))
        x *= x                                   # x^2, then x^4 below (cheaper than ** 4)
        prof = 1.0 / (1.0 + x * x)
        np.maximum(weight, prof, out=weight)
        np.maximum(echo, np.float32(a) * prof, out=echo)
    return (weight * below).astype(np.float32), (echo * below * fade).astype(np.float32)


def consolidation_region(u: np.ndarray, rel: np.ndarray, c: Consolidation, scale: float = 1.0) -> np.ndarray:
    """Signed inside-ness of a subpleural patch (> 0 inside), float32 (H, W).

    The patch hangs from the pleura: an ellipse in (lateral, depth-below-pleura) whose deep
    margin is irregular (the "shred sign"); ``scale`` grows it (e.g. while severity rises).
    """
    hw, ext = c.half_width * scale, c.extent * scale
    ext_u = ext * np.clip(1.0 + 0.2 * profile_at(c.border, u), 0.6, 1.5)
    inside = 1.0 - ((u - c.u) / hw) ** 2 - (rel / ext_u) ** 2
    return np.where(rel >= -0.004, inside, -1.0).astype(np.float32)


def consolidation_echo(u: np.ndarray, rel: np.ndarray, c: Consolidation, region: np.ndarray,
                       phase: float = 0.0, bmap: np.ndarray | None = None, bronchi_amp: float = 0.3
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weight, echo, bronchi)`` of a consolidation, echo in linear amplitude (pleura = 1).

    Interior at ``c.level`` (hypoechoic covid patch or tissue-like hepatised lung), a bright
    shredded deep margin, and bright branching air bronchograms of brightness ``bronchi_amp`` if
    the plan has any (pneumonia); ``phase`` (consolidation extents) moves them along the beam
    with breathing (dynamic air bronchograms). ``bronchi`` (H, W) is the bronchogram layer
    inside the consolidation (0 where there is none; ~1 on a bronchogram), for masks and tests.
    ``bmap`` = :func:`bronchogram_map` of ``c`` (computed here if not given; renderers cache it).
    The caller multiplies by the speckle, so the interior gets tissue texture.
    """
    weight = smoothstep(region, 0.08)
    margin = 0.12 * gauss(region, 0.08) * (rel > 0.3 * c.extent)
    echo = c.level + margin
    bronchi = np.zeros_like(weight)
    if len(c.bronchi) and bronchi_amp > 0:
        if bmap is None:
            bmap = bronchogram_map(c)
        n, (u0, u1), (d0, d1) = BRONCHI_GRID
        mx = ((u - c.u) / c.half_width - u0) * ((n - 1) / (u1 - u0))
        my = (rel / c.extent - phase - d0) * ((n - 1) / (d1 - d0))
        bronchi = cv2.remap(bmap, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) * smoothstep(region - 0.1, 0.1)
        echo = echo + bronchi_amp * bronchi
    return weight, (echo * weight).astype(np.float32), bronchi.astype(np.float32)


def effusion_region(u: np.ndarray, d: np.ndarray, eff: tuple[float, float, float]) -> np.ndarray:
    """Soft weight of an anechoic effusion at the base (deep part of the field), float32 (H, W)."""
    ue, hw, top = eff
    floor = top + 0.18 * ((u - ue) / hw) ** 2
    return (smoothstep(d - floor, 0.01) * smoothstep(1.0 - np.abs(u - ue) / hw, 0.08)).astype(np.float32)


def rib_layers(u: np.ndarray, d: np.ndarray, pleura: np.ndarray | float, ribs: tuple[tuple[float, float], ...]
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(shadow, echo)`` of the ribs: a bright curved rib surface slightly above the pleura
    (``pleura``: its depth, scalar or per pixel) and a dark acoustic shadow below it
    (shadow = 1 fully shadowed)."""
    shadow = np.zeros_like(u)
    echo = np.zeros_like(u)
    for ur, hw in ribs:
        x = (u - ur) / hw
        across = smoothstep(1.0 - np.abs(x), 0.15)
        surface = pleura - 0.025 - 0.02 * np.clip(1.0 - x * x, 0.0, 1.0)
        shadow = np.maximum(shadow, across * smoothstep(d - surface - 0.008, 0.006))
        echo = np.maximum(echo, 0.9 * across * gauss(d - surface, 0.006))
    return shadow.astype(np.float32), echo.astype(np.float32)
