"""Speckle textures and smooth random profiles.

Why: ultrasound texture is multiplicative speckle whose grain follows the beam (longer laterally
than axially), and it moves *with the tissue*. Building one Rayleigh texture per video in probe
coordinates (depth x lateral) and sampling it through the per-frame (depth, lateral) grids with
``cv2.remap`` gives tissue-locked speckle, lung sliding (a lateral offset below the pleura) and
probe motion for the price of one remap per frame.
"""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise_1d(rng: np.random.Generator, n: int, corr: float) -> np.ndarray:
    """Zero-mean, unit-std random profile of length ``n`` with correlation length ``corr`` samples."""
    raw = rng.standard_normal(n + 8 * int(corr + 1)).astype(np.float32)
    k = max(1, int(round(corr)))
    kernel = np.exp(-0.5 * (np.arange(-3 * k, 3 * k + 1) / k) ** 2).astype(np.float32)
    sm = np.convolve(raw, kernel / kernel.sum(), mode="same")
    off = (len(sm) - n) // 2
    out = sm[off:off + n]
    out = out - out.mean()
    std = float(out.std())
    return out / std if std > 1e-8 else out


class SpeckleField:
    """Fully developed speckle in probe coordinates, shape (n_depth, n_lat + 2 * margin), mean 1.

    Built as the magnitude of a blurred complex Gaussian field, so the amplitude is Rayleigh
    distributed (as for many unresolved scatterers per resolution cell) and its grain is set by
    the blur, i.e. by the point-spread function: ``grain_lat`` / ``grain_ax`` are its sigmas in
    texture pixels (lateral longer than axial for a focused beam; a large axial sigma gives the
    vertical streaks of B-lines, a large lateral one the layered look of the chest wall).
    ``contrast`` in [0, 1] mixes towards a flat field (1 = pure Rayleigh, std/mean ~ 0.52).
    ``margin`` columns on each side let the texture slide laterally (lung sliding, jitter).
    """

    def __init__(self, rng: np.random.Generator, n_depth: int, n_lat: int, grain_lat: float,
                 grain_ax: float, contrast: float = 1.0, margin: int = 48) -> None:
        self.n_depth, self.n_lat, self.margin = n_depth, n_lat, margin
        shape = (n_depth, n_lat + 2 * margin)
        re = rng.standard_normal(shape).astype(np.float32)
        im = rng.standard_normal(shape).astype(np.float32)
        kw = dict(sigmaX=float(grain_lat), sigmaY=float(grain_ax), borderType=cv2.BORDER_REFLECT)
        re = cv2.GaussianBlur(re, (0, 0), **kw)
        im = cv2.GaussianBlur(im, (0, 0), **kw)
        amp = np.sqrt(re * re + im * im)
        amp /= max(float(amp.mean()), 1e-6)
        self.tex = ((1.0 - contrast) + contrast * amp).astype(np.float32)

    def sample(self, depth: np.ndarray, lateral: np.ndarray, lat_shift: np.ndarray | float = 0.0) -> np.ndarray:
        """Speckle at normalised ``depth`` / ``lateral`` (float32 (H, W)), shifted by ``lat_shift`` (lateral units)."""
        rows = depth * (self.n_depth - 1)
        cols = (lateral + lat_shift + 1.0) * 0.5 * (self.n_lat - 1) + self.margin
        return cv2.remap(self.tex, cols.astype(np.float32), rows.astype(np.float32),
                         interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def gauss(x: np.ndarray, width: float) -> np.ndarray:
    """exp(-x^2 / (2 w^2)) as float32, the basic line profile."""
    return np.exp(-0.5 * (x / width) ** 2).astype(np.float32)


def smoothstep(x: np.ndarray, edge: float) -> np.ndarray:
    """Soft step from 0 (x <= -edge) to 1 (x >= edge); used for soft region borders."""
    t = np.clip((x + edge) / (2 * edge), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)
