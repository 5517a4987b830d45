"""Frame probabilities of a set of videos (the aggregator's input) and the checks of a probability table.

:class:`VideoSet` holds the frames of several videos concatenated in temporal order (video after video):
``probs`` (N, C) float64 in [0, 1], ``lengths`` (V,) frames per video, ``labels`` (V,) video scores
(-1 unknown). :func:`check_probability_table` refuses a frame table whose ``p0..p3`` are not softmax
probabilities, naming the file and the first bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lus.labels import PROB_COLUMNS

__all__ = ["PROB_COLUMNS", "VideoSet", "check_probability_table"]


def check_probability_table(frames: pd.DataFrame, source: str, tol: float = 1e-3) -> None:
    """Refuse a frame-probability table with missing/NaN/inf values, values outside [0, 1] or rows whose
    ``p0..p3`` do not sum to 1 (within ``tol``); the message names ``source``, the first bad row
    (0-based, as pandas/pyarrow count) with its video and frame, and what was expected."""
    probs = frames[list(PROB_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    cols = "..".join((PROB_COLUMNS[0], PROB_COLUMNS[-1]))

    def where(i: int) -> str:
        rec = frames.iloc[i]
        ident = ", ".join(f"{k} {rec[k]}" for k in ("video_id", "frame_index") if k in frames.columns)
        return f"{source}: row {i}" + (f" ({ident})" if ident else "")

    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(i)}: {cols} contain NaN or inf ({int(bad.sum())} such row(s)); "
                         "expected finite probabilities")
    bad = ((probs < -tol) | (probs > 1 + tol)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(i)}: {cols} = {np.round(probs[i], 4).tolist()} leave [0, 1] "
                         f"({int(bad.sum())} such row(s))")
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(i)}: {cols} sum to {sums[i]:.4g}, expected 1 (+-{tol:g}; "
                         f"{int(bad.sum())} such row(s)); the columns must be softmax probabilities")


@dataclass
class VideoSet:
    """Frame probabilities of several videos, concatenated in temporal order (video after video)."""

    video_ids: list[str]
    patient_ids: list[str]
    labels: np.ndarray          # (V,) int, -1 = unknown
    lengths: np.ndarray         # (V,) frames per video
    probs: np.ndarray           # (N, C) float64
    # derived structures (the uninorm's reduction plan, :func:`lus.models.uninorm.plan_of`); not an init
    # argument, so a subset or a ``dataclasses.replace`` copy starts empty
    cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.probs = np.asarray(self.probs, dtype=np.float64)
        if not (len(self.video_ids) == len(self.patient_ids) == len(self.labels) == len(self.lengths)):
            raise ValueError("VideoSet: video_ids, patient_ids, labels and lengths differ in length")
        if self.probs.ndim != 2 or self.probs.shape[0] != int(self.lengths.sum()):
            raise ValueError(f"VideoSet: probs must be (sum(lengths), C) = ({int(self.lengths.sum())}, C), "
                             f"got {self.probs.shape}")
        if not np.isfinite(self.probs).all():
            raise ValueError("VideoSet: frame probabilities contain NaN or inf")
        if (self.probs < -1e-6).any() or (self.probs > 1 + 1e-6).any():
            raise ValueError("VideoSet: frame probabilities must lie in [0, 1]")
        self.probs = np.clip(self.probs, 0.0, 1.0)

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def subset(self, mask: np.ndarray | Sequence[bool]) -> "VideoSet":
        mask = np.asarray(mask, dtype=bool)
        frame_mask = np.repeat(mask, self.lengths)
        return VideoSet([v for v, m in zip(self.video_ids, mask) if m], [p for p, m in zip(self.patient_ids, mask) if m],
                        self.labels[mask], self.lengths[mask], self.probs[frame_mask])

    @classmethod
    def from_frames(cls, frames: pd.DataFrame, video_labels: Mapping[str, int] | None = None) -> "VideoSet":
        """Build from a frame table with ``video_id, patient_id, frame_index, p0..p3`` (one row per frame).

        Videos are sorted by ``video_id`` and frames by ``frame_index`` (temporal order). Labels come
        from ``video_labels`` (video_id -> score); videos missing there get -1.
        """
        need = ["video_id", "patient_id", "frame_index", *PROB_COLUMNS]
        missing = [c for c in need if c not in frames.columns]
        if missing:
            raise ValueError(f"frame table lacks column(s) {', '.join(missing)}; expected {', '.join(need)}")
        df = frames[need].copy()
        df["video_id"] = df["video_id"].astype(str)
        df["patient_id"] = df["patient_id"].astype(str)
        df = df.sort_values(["video_id", "frame_index"], kind="mergesort").reset_index(drop=True)
        dup = df.duplicated(["video_id", "frame_index"])
        if dup.any():
            ex = df.loc[dup, ["video_id", "frame_index"]].iloc[0].tolist()
            raise ValueError(f"frame table has repeated (video_id, frame_index), e.g. {ex}; expected one row per frame")
        per_video = df.groupby("video_id", sort=True)
        lengths = per_video.size()
        patients = per_video["patient_id"].agg(["first", "nunique"])
        bad = patients.index[patients["nunique"] > 1].tolist()
        if bad:
            raise ValueError(f"video(s) {', '.join(bad[:5])} have frames of more than one patient_id")
        vids = lengths.index.tolist()
        labels = [int(video_labels.get(v, -1)) if video_labels is not None else -1 for v in vids]
        return cls(vids, patients["first"].tolist(), np.array(labels), lengths.to_numpy(),
                   df[list(PROB_COLUMNS)].to_numpy(np.float64))
