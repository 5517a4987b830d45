"""Frame labels from masks, simulated annotators and clinician-like video scores.

Why: the aggregator and the agreement analyses need labels that behave like human ones. On the
ICLUS videos, the clinicians' video score matches the most frequent frame score (``mode``, 36 of 58
videos) or the highest score held on a quarter of the frames (``sustained``, 38) more often than the
worst frame (``max``, 33); see scripts/video_rule_study.py. Raters disagree mostly around the
moments the picture changes.
"""

from __future__ import annotations

import numpy as np


def frame_label(mask: np.ndarray) -> int:
    """Severity of a frame = highest region score present in its mask (class c -> score c - 1)."""
    return max(int(mask.max()) - 1, 0)


def simulate_annotators(labels: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """int8 (A, T) ratings of ``n`` raters of the frame labels (T,).

    Each rater places the transitions a few frames early or late (a per-rater shift, so the
    disagreement concentrates near changes) and is off by one on a small share of frames,
    more often within 3 frames of a change.
    """
    t_len = len(labels)
    idx = np.arange(t_len)
    change = np.flatnonzero(np.diff(labels) != 0)
    near = np.zeros(t_len, dtype=bool)
    for c in change:
        near[max(0, c - 2):c + 4] = True
    out = np.empty((n, t_len), dtype=np.int8)
    for a in range(n):
        shift = int(rng.integers(-3, 4))
        rated = labels[np.clip(idx + shift, 0, t_len - 1)].astype(np.int64)
        p = np.where(near, min(0.5, noise * 8 + 0.1), noise)
        flip = rng.random(t_len) < p
        step = rng.choice([-1, 1], size=t_len)
        rated = np.where(flip, np.clip(rated + step, 0, 3), rated)
        out[a] = rated
    return out


def video_score(labels: np.ndarray, rule: str, share: float, noise: float, rng: np.random.Generator) -> int:
    """Video severity from frame labels (T,).

    ``sustained``: the highest score s such that frames with label >= s make up at least ``share``
    of the clip; ``max``: the maximum; ``mode``: the most frequent label (ties -> higher). Then,
    with probability ``noise``, the rater is off by one (clipped to 0..3).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if rule == "max":
        score = int(labels.max())
    elif rule == "mode":
        counts = np.bincount(labels, minlength=4)
        score = int(np.flatnonzero(counts == counts.max()).max())
    elif rule == "sustained":
        score = 0
        for s in (3, 2, 1):
            if np.mean(labels >= s) >= share:
                score = s
                break
    else:
        raise ValueError(f"unknown video_score_rule {rule!r}; expected sustained, max or mode")
    if noise > 0 and rng.random() < noise:
        score = int(np.clip(score + rng.choice([-1, 1]), 0, 3))
    return score
