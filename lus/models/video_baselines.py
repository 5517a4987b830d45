"""Training-free video-score baselines (METHODS.md §2.8), vectorised over all videos of a set.

=====================  ===========================================================================
argmax_mean            argmax_c mean_t p_c(t)
max_argmax             max_t argmax_c p_c(t)  (the worst frame decides)
majority               most frequent frame argmax; ties go to the higher score
threshold_count_<tau>  highest class that is the frame argmax on at least tau % of the frames
=====================  ===========================================================================

Frame argmax ties (equal probabilities) resolve to the lower class, as ``numpy.argmax`` does.
"""

from __future__ import annotations

import numpy as np

from lus.data.video_set import VideoSet

THRESHOLDS = (5, 10, 15)
BASELINES = ("argmax_mean", "max_argmax", "majority", *(f"threshold_count_{t}" for t in THRESHOLDS))


def _video_index(lengths: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(lengths)), lengths)


def frame_counts(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(V, C) number of frames of each video whose argmax is class c."""
    n_classes = probs.shape[1]
    flat = _video_index(lengths) * n_classes + probs.argmax(axis=1)
    return np.bincount(flat, minlength=len(lengths) * n_classes).reshape(len(lengths), n_classes)


def _highest_true(mask: np.ndarray) -> np.ndarray:
    """Index of the last True per row (rows without any True give the last column)."""
    n = mask.shape[1]
    return n - 1 - np.argmax(mask[:, ::-1], axis=1)


def argmax_mean(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    means = np.add.reduceat(probs, offsets, axis=0) / lengths[:, None]
    return means.argmax(axis=1)


def max_argmax(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.maximum.reduceat(probs.argmax(axis=1), offsets)


def majority(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    counts = frame_counts(probs, lengths)
    return _highest_true(counts == counts.max(axis=1, keepdims=True))


def threshold_count(probs: np.ndarray, lengths: np.ndarray, tau_percent: float) -> np.ndarray:
    counts = frame_counts(probs, lengths)
    # counts / T >= tau / 100, compared exactly in integers/floats without division
    ok = counts * 100.0 >= tau_percent * lengths[:, None]
    # with tau <= 100/C some class always qualifies; otherwise fall back to the majority class
    return np.where(ok.any(axis=1), _highest_true(ok), majority(probs, lengths))


def baseline_predictions(videos: "VideoSet") -> dict[str, np.ndarray]:
    """Predictions of every baseline in :data:`BASELINES` for the videos of a :class:`VideoSet`."""
    probs, lengths = videos.probs, videos.lengths
    if len(lengths) == 0:
        return {name: np.empty(0, dtype=np.int64) for name in BASELINES}
    out = {
        "argmax_mean": argmax_mean(probs, lengths),
        "max_argmax": max_argmax(probs, lengths),
        "majority": majority(probs, lengths),
    }
    for tau in THRESHOLDS:
        out[f"threshold_count_{tau}"] = threshold_count(probs, lengths, tau)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
