"""Segmentation pictures: frames with true and predicted marker masks overlaid (plots/segmentation/archs/<arch>/, plots/segmentation/ensemble/).

One PNG per picture: a row per frame, columns [frame | ground truth | prediction]; classes in fixed
colours (1 = score-0 region green, 2 = score 1 yellow, 3 = score 2 orange, 4 = score 3 red;
background uncoloured) with a legend. Written atomically (``lus.io.atomic_path``), matplotlib's Agg
backend only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lus.io import atomic_path

CLASS_NAMES = ("background", "score 0", "score 1", "score 2", "score 3")
CLASS_COLOURS = np.array([[0, 0, 0], [46, 204, 64], [255, 220, 0], [255, 133, 27], [255, 40, 40]], np.float32) / 255.0


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB float (H, W, 3) in [0, 1]: grey ``frame`` with class colours blended where ``mask`` > 0."""
    grey = np.asarray(frame, np.float32) / 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    mask = np.asarray(mask)
    fg = mask > 0
    colours = CLASS_COLOURS[np.clip(mask, 0, len(CLASS_COLOURS) - 1)]
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colours[fg]
    return rgb


def pick_frames(masks: np.ndarray, n: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """``n`` frame rows to show: frames with the most marker classes (then largest annotated area) first,
    one per group (video) while unused groups remain, ties broken by a seeded draw."""
    if n <= 0 or not len(masks):
        return np.zeros(0, np.int64)
    flat = masks.reshape(len(masks), -1)
    n_cls = np.stack([(flat == c).any(1) for c in range(1, 5)], 1).sum(1)
    area = (flat > 0).mean(1)
    jitter = np.random.default_rng(seed).random(len(masks))
    order = np.lexsort((jitter, -area, -n_cls))
    groups = np.arange(len(masks)) if groups is None else np.asarray(groups)
    chosen: list[int] = []
    used: set = set()
    for row in order:  # first pass: distinct groups
        if groups[row] not in used:
            chosen.append(int(row))
            used.add(groups[row])
            if len(chosen) == n:
                break
    for row in order:  # then fill up when there are fewer groups than pictures
        if len(chosen) >= n:
            break
        if int(row) not in chosen:
            chosen.append(int(row))
    return np.sort(np.asarray(chosen, np.int64))


def save_overlay_grid(path: str | Path, frames: np.ndarray, true_masks: np.ndarray, pred_masks: np.ndarray,
                      titles: Sequence[str] | None = None, suptitle: str = "") -> None:
    """Write a [frame | truth | prediction] grid PNG for ``frames`` (N, H, W) and masks (N, H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = len(frames)
    if n == 0:
        save_message(path, suptitle or "no frames to show")
        return
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n + 0.6), squeeze=False)
    for i in range(n):
        panels = [np.repeat(frames[i][..., None] / 255.0, 3, axis=2), overlay(frames[i], true_masks[i]),
                  overlay(frames[i], pred_masks[i])]
        for j, img in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(("frame", "ground truth", "prediction")[j], fontsize=9)
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i], fontsize=7)
    handles = [Patch(color=CLASS_COLOURS[c], label=CLASS_NAMES[c]) for c in range(1, 5)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97 if suptitle else 1))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def save_message(path: str | Path, text: str) -> None:
    """A small PNG carrying only ``text`` (e.g. 'not applicable: no masks in this data source')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
