"""Weakly supervised localisation of the Reg-STN crops (METHODS §1.5): boxes, pictures, marker coverage.

Convention (the one ``F.affine_grid``/``grid_sample`` use with ``align_corners=False``): crop k's output
grid point c in [-1, 1]^2 samples the frame at p = A_k c + t_k (theta = [A | t], flattened row-major as
``theta_0..5`` = a11, a12, tx, a21, a22, ty). Normalised -1 / +1 are the outer *edges* of the first / last
pixel, so a frame point p maps to continuous pixel coordinates x = (p_x + 1) / 2 * W, y = (p_y + 1) / 2 * H
(pixel i spans [i, i + 1], its centre is i + 0.5). The crop box is the image of the four corners
(+-1, +-1): an axis-aligned rectangle in fixed-scale mode, a parallelogram in learned mode.

Marker coverage (synthetic data, shards with ``masks``; classes 2, 3, 4 = regions of score 1-3): per
pathological frame (at least one marker pixel), the share of marker pixels whose centre lies inside
crop 1, against the share of all frame pixels inside crop 1; both averaged over frames ->
``localization.marker_in_crop1`` vs ``localization.crop1_area``. A crop that finds the markers has the
first clearly above the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])   # (x, y), clockwise on screen
MARKER_CLASSES = (2, 3, 4)
BLUE = (0, 0, 255)    # RGB
GREEN = (0, 200, 0)


def _as_theta(theta: np.ndarray) -> np.ndarray:
    t = np.asarray(theta, dtype=np.float64)
    return t.reshape(2, 3)


def box_corners(theta: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel coordinates (4, 2) as (x, y) of the crop corners (-1,-1), (1,-1), (1,1), (-1,1)."""
    t = _as_theta(theta)
    p = CORNERS @ t[:, :2].T + t[:, 2]
    return np.stack([(p[:, 0] + 1) / 2 * width, (p[:, 1] + 1) / 2 * height], axis=1)


def inside_crop(theta: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (H, W): pixel centres inside the crop (c = A^-1 (p - t) within [-1, 1]^2)."""
    t = _as_theta(theta)
    a, b = t[:, :2], t[:, 2]
    if abs(np.linalg.det(a)) < 1e-12:
        return np.zeros((height, width), dtype=bool)
    xs = (2 * np.arange(width) + 1) / width - 1
    ys = (2 * np.arange(height) + 1) / height - 1
    px, py = np.meshgrid(xs, ys)
    pts = np.stack([px.ravel() - b[0], py.ravel() - b[1]], axis=0)
    c = np.linalg.solve(a, pts)
    return (np.abs(c) <= 1.0).all(axis=0).reshape(height, width)


def marker_coverage(thetas: Iterable[np.ndarray], masks: Iterable[np.ndarray],
                    marker_classes: tuple[int, ...] = MARKER_CLASSES) -> dict[str, float]:
    """Mean share of marker pixels inside crop 1 and mean crop-1 area share over pathological frames."""
    cov, area = [], []
    for theta, mask in zip(thetas, masks):
        marker = np.isin(mask, marker_classes)
        if not marker.any():
            continue
        inside = inside_crop(theta, *mask.shape)
        cov.append(float(inside[marker].mean()))
        area.append(float(inside.mean()))
    if not cov:
        return {"n_frames": 0.0}
    return {"marker_in_crop1": float(np.mean(cov)), "crop1_area": float(np.mean(area)), "n_frames": float(len(cov))}


def draw_crop_boxes(frame: np.ndarray, theta1: np.ndarray | None, theta2: np.ndarray | None = None,
                    scale: int = 1, thickness: int = 1) -> np.ndarray:
    """RGB uint8 (H*scale, W*scale, 3) of a grey/RGB frame with crop 1 (blue) and crop 2 (green) outlines."""
    import cv2

    img = np.asarray(frame)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    if scale != 1:
        img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    img = np.ascontiguousarray(img.astype(np.uint8))
    H, W = img.shape[:2]
    for theta, colour in ((theta2, GREEN), (theta1, BLUE)):
        if theta is None:
            continue
        pts = box_corners(theta, H, W)
        # continuous edge coordinate x -> the pixel containing it, kept on the canvas
        pts = np.clip(np.floor(pts), 0, [W - 1, H - 1]).astype(np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], isClosed=True, color=colour, thickness=thickness)
    return img


def crop_panel(frame: np.ndarray, theta1: np.ndarray, theta2: np.ndarray, side: int = 192) -> np.ndarray:
    """[frame with boxes | crop 1 | crop 2], each ``side`` px (crops resampled as the model sees them)."""
    import cv2
    import torch
    from torch.nn import functional as F

    h, w = frame.shape[:2]
    scale = max(1, int(np.ceil(side / max(h, w))))
    boxed = cv2.resize(draw_crop_boxes(frame, theta1, theta2, scale=scale, thickness=max(1, scale // 2)), (side, side),
                       interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.asarray(frame, dtype=np.float32))[None, None]
    thetas = torch.tensor(np.stack([_as_theta(theta1), _as_theta(theta2)]), dtype=torch.float32)
    grid = F.affine_grid(thetas, [2, 1, side, side], align_corners=False)
    crops = F.grid_sample(x.expand(2, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    crops = crops[:, 0].clamp(0, 255).numpy().astype(np.uint8)
    tiles = [boxed] + [np.repeat(c[:, :, None], 3, axis=2) for c in crops]
    sep = np.full((side, 4, 3), 255, dtype=np.uint8)
    return np.concatenate([tiles[0], sep, tiles[1], sep, tiles[2]], axis=1)


def epoch_crop_grid(columns: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]], title: str,
                    side: int = 96) -> np.ndarray:
    """METHODS §1.5 picture of one epoch: per column (e.g. ``train``, ``validation``) one row per frame of
    [frame with boxes | crop 1 | crop 2]; rows are (frame, theta1, theta2, caption). RGB uint8."""
    import cv2

    def text(img: np.ndarray, s: str, x: int, y: int) -> None:
        cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)

    gap, head, cap = 12, 36, 14
    width = 3 * side + 8
    n_rows = max((len(rows) for rows in columns.values()), default=0)
    grid = np.full((head + n_rows * (side + cap), len(columns) * (width + gap) - gap, 3), 255, dtype=np.uint8)
    text(grid, title, 2, 14)
    for c, (name, rows) in enumerate(columns.items()):
        x0 = c * (width + gap)
        text(grid, name, x0 + 2, head - 6)
        for r, (frame, t1, t2, caption) in enumerate(rows):
            y0 = head + r * (side + cap)
            text(grid, caption, x0 + 2, y0 + cap - 3)
            grid[y0 + cap:y0 + cap + side, x0:x0 + width] = crop_panel(frame, t1, t2, side)
    return grid


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    import cv2

    from lus.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"could not write {path}")


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 90) -> None:
    """JPEG for the many per-epoch sheets (a quarter of the PNG's size; deterministic bytes)."""
    import cv2

    from lus.io import atomic_path

    with atomic_path(path, suffix=".jpg") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise ValueError(f"could not write {path}")


def pick_frames(scores: np.ndarray, videos: np.ndarray, per_score: int, seed: int = 0) -> list[int]:
    """Row indices: up to ``per_score`` frames per score, from different videos where possible (seeded)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for s in sorted(set(int(v) for v in scores if v >= 0)):
        rows = np.flatnonzero(scores == s)
        vids = sorted(set(videos[rows].tolist()))
        rng.shuffle(vids)
        picked = []
        for v in vids[:per_score]:
            vr = rows[videos[rows] == v]
            picked.append(int(vr[len(vr) // 2]))
        extra = [int(r) for r in rows if int(r) not in picked]
        rng.shuffle(extra)
        chosen += (picked + extra)[:per_score]
    return chosen
