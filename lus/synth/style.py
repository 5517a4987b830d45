"""Per-hospital image style (device, preset and operator habits).

Why: real LUS sets differ by site in gain, dynamic range, speckle grain, imaging depth, sector
angle and on-screen overlays; a model can learn the site instead of the lung. Giving each
simulated hospital its own style (scaled by ``style_shift``; 0 = all identical) lets tests
demonstrate that confounding and lets the cropping stage be exercised on varied overlays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HospitalStyle:
    """Rendering style of one hospital; every value is a plain float/int/str (see ``sample_style``)."""

    index: int
    gain_db: float         # overall gain added to every echo, dB
    dynamic_range: float   # display dynamic range, dB (larger = flatter, greyer image)
    gamma: float           # display curve exponent (<1 brighter mid-tones)
    grain: float           # speckle grain (PSF sigma, texture pixels)
    speckle: float         # speckle contrast in [0, 1] (1 = fully developed Rayleigh)
    noise: float           # display noise std (units 0..1), fresh every frame
    noise_floor: float     # receiver noise amplitude before log compression, dB re pleura; fresh
                           # every frame, so shadows and fluid flicker faintly instead of being flat black
    attenuation: float     # residual depth attenuation after TGC, dB over the full depth
    half_angle: float      # convex sector half opening angle, degrees
    apex_ratio: float      # convex r0 / r1
    pleura_depth: float    # typical normalised pleural depth (imaging depth setting)
    wall_db: float         # chest-wall echo level relative to the pleura, dB
    text_corner: str       # "left" | "right": where the preset text block sits
    font_scale: float      # cv2.putText scale (FONT_HERSHEY_PLAIN) of the overlay text at 128 px
    ruler_side: str        # "left" | "right": side of the depth ruler
    label: str             # device / preset name shown in the overlay


DEVICES = ("LX-C5", "PHL C5", "SNX C6", "GE C1", "ESA CX", "MDR C3")


def _around(rng: np.random.Generator, mid: float, half: float, shift: float, lo: float, hi: float) -> float:
    """``mid`` +- ``half`` scaled by ``shift``, clipped to [lo, hi]."""
    return float(np.clip(mid + shift * half * rng.uniform(-1.0, 1.0), lo, hi))


def sample_style(rng: np.random.Generator, index: int, shift: float = 1.0) -> HospitalStyle:
    """Draw the style of hospital ``index``; ``shift`` scales every deviation from the mid style."""
    return HospitalStyle(
        index=index,
        gain_db=_around(rng, -6.0, 3.0, shift, -14.0, 2.0),
        dynamic_range=_around(rng, 52.0, 6.0, shift, 38.0, 70.0),
        gamma=_around(rng, 1.1, 0.15, shift, 0.7, 1.6),
        grain=_around(rng, 1.0, 0.25, shift, 0.6, 1.8),
        speckle=_around(rng, 0.85, 0.1, shift, 0.5, 1.0),
        noise=_around(rng, 0.02, 0.008, shift, 0.005, 0.05),
        noise_floor=_around(rng, -45.0, 3.0, shift, -52.0, -38.0),
        attenuation=_around(rng, 10.0, 5.0, shift, 0.0, 25.0),
        half_angle=_around(rng, 36.0, 6.0, shift, 25.0, 48.0),
        apex_ratio=_around(rng, 0.38, 0.07, shift, 0.25, 0.5),
        pleura_depth=_around(rng, 0.22, 0.04, shift, 0.15, 0.3),
        wall_db=_around(rng, -27.0, 3.0, shift, -34.0, -20.0),
        text_corner=("left", "right")[int(rng.integers(2))],
        font_scale=float(rng.choice([0.6, 0.7, 0.8])),
        ruler_side=("left", "right")[int(rng.integers(2))],
        label=DEVICES[index % len(DEVICES)],
    )
