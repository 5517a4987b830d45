"""Uninorm video-score aggregator (Roy et al. 2020; METHODS.md §2).

A video is a sequence of frame probability vectors p(t) in [0,1]^C in temporal order. Each class row
is reduced to one value o_c by a balanced binary tree of pairwise uninorms U_e with a learnable
neutral element e_c per class; o is used directly as logits.

Uninorm (§2.3), for a pair (a, b) and neutral element e:

* a <= e and b <= e: ``e * T(a/e, b/e)``                    (conjunctive, pulls towards 0)
* a >= e and b >= e: ``e + (1-e) * S((a-e)/(1-e), (b-e)/(1-e))`` (disjunctive, pulls towards 1)
* otherwise: the off-diagonal rule OD(a, b) = min | mean | max.

(T, S) = product (a·b, a+b-a·b), lukasiewicz (max(0,a+b-1), min(1,a+b)) or min (min, max).
Every branch is computed with safe denominators (e and 1-e clamped to at least 1e-6) and the result
is chosen with ``torch.where``, so an unused branch can never inject NaN/inf into gradients.

Tree (§2.4): agg(x0) = x0, agg(x) = U(agg(x[0:T//2]), agg(x[T//2:T])). :func:`build_plan` turns the
lengths of a batch of videos into per-depth gather indices (numpy, vectorised per depth), and
:func:`reduce_rows` evaluates all videos and all rows at once, bottom-up, with one loop iteration per
tree depth (about log2 of the longest video) and no Python work per frame pair.

tnorm = min: the output always equals one of the inputs, so d o / d e = 0 almost everywhere and
Adam would leave e at its initial value. :func:`fit_aggregator` then logs a warning and, with
``min_fit: grid``, chooses e per class by coordinate-wise grid search of the training loss on the
training videos (``min_fit: none`` keeps ``init_neutral``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lus.config.aggregator import N_CLASSES, AggregatorSection

log = logging.getLogger(__name__)

EPS = 1e-6
PROB_COLUMNS = tuple(f"p{c}" for c in range(N_CLASSES))
DTYPE = torch.float64

__all__ = [
    "EPS", "PROB_COLUMNS", "single_thread", "ReductionPlan", "build_plan", "uninorm", "reduce_rows", "aggregate",
    "reference_uninorm", "reference_aggregate", "sord_targets", "class_weights", "video_loss",
    "VideoSet", "FitResult", "fit_aggregator", "predict", "run_fold",
]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch single-threaded inside the block (restored afterwards).

    The reduction works on many small tensors (one tree level at a time); waking a second intra-op
    thread costs more than it saves, and on a loaded machine it costs a scheduler time slice (we
    measured ~8 ms per op on a busy 2-core VM versus ~10 µs single-threaded).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# pairwise operators

def _tnorm(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "product":
        return a * b
    if kind == "lukasiewicz":
        return torch.clamp(a + b - 1.0, min=0.0)
    if kind == "min":
        return torch.minimum(a, b)
    raise ValueError(f"unknown tnorm '{kind}'; expected product, lukasiewicz or min")


def _tconorm(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "product":
        return a + b - a * b
    if kind == "lukasiewicz":
        return torch.clamp(a + b, max=1.0)
    if kind == "min":
        return torch.maximum(a, b)
    raise ValueError(f"unknown tnorm '{kind}'; expected product, lukasiewicz or min")


def _off_diagonal(a: torch.Tensor, b: torch.Tensor, rule: str) -> torch.Tensor:
    if rule == "min":
        return torch.minimum(a, b)
    if rule == "max":
        return torch.maximum(a, b)
    if rule == "mean":
        return 0.5 * (a + b)
    raise ValueError(f"unknown off_diagonal rule '{rule}'; expected min, mean or max")


def uninorm(a: torch.Tensor, b: torch.Tensor, e: torch.Tensor | float, tnorm: str = "product",
            off_diagonal: str = "min") -> torch.Tensor:
    """Elementwise uninorm U_e(a, b); ``a``, ``b``, ``e`` broadcast. Values in [0, 1] stay in [0, 1]."""
    e = torch.as_tensor(e, dtype=a.dtype, device=a.device)
    den_lo = torch.clamp(e, min=EPS)
    den_hi = torch.clamp(1.0 - e, min=EPS)
    # conjunctive branch on [0, e]^2 (inputs clamped so T/S only ever see [0, 1])
    conj = e * _tnorm(torch.clamp(a / den_lo, 0.0, 1.0), torch.clamp(b / den_lo, 0.0, 1.0), tnorm)
    # disjunctive branch on [e, 1]^2
    disj = e + (1.0 - e) * _tconorm(torch.clamp((a - e) / den_hi, 0.0, 1.0),
                                    torch.clamp((b - e) / den_hi, 0.0, 1.0), tnorm)
    od = _off_diagonal(a, b, off_diagonal)
    low = (a <= e) & (b <= e)
    high = (a >= e) & (b >= e)
    return torch.where(low, conj, torch.where(high, disj, od))


# --------------------------------------------------------------------------------------------------
# vectorised balanced-tree reduction

@dataclass(frozen=True)
class ReductionPlan:
    """Gather indices of the balanced binary trees of a batch of videos, deepest depth first.

    Frames of all videos are concatenated (video v occupies ``offsets[v] : offsets[v] + lengths[v]``).
    At each depth, nodes are ordered so that the children of the k-th internal node are nodes 2k and
    2k+1 of the next depth; ``order`` maps each node to its column in ``cat([leaf values, combined
    internal values])``.
    """

    lengths: np.ndarray
    offsets: np.ndarray
    levels: tuple[tuple[torch.Tensor, torch.Tensor, int], ...]  # (leaf frame indices, order, n_internal)

    @property
    def n_videos(self) -> int:
        return int(len(self.lengths))

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())


def build_plan(lengths: Sequence[int] | np.ndarray) -> ReductionPlan:
    """Plan the tree reduction of videos with the given frame counts (each >= 1)."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if len(lengths) == 0:
        raise ValueError("cannot aggregate an empty set of videos")
    if (lengths < 1).any():
        raise ValueError(f"every video needs at least one frame; got lengths {lengths[lengths < 1][:5].tolist()}")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    starts, lens = offsets, lengths
    top_down = []
    while True:
        internal = lens >= 2
        top_down.append((starts, internal))
        if not internal.any():
            break
        s_i, l_i = starts[internal], lens[internal]
        half = l_i // 2
        starts = np.stack([s_i, s_i + half], axis=1).reshape(-1)
        lens = np.stack([half, l_i - half], axis=1).reshape(-1)
    levels = []
    for starts, internal in reversed(top_down):
        leaf_idx = np.flatnonzero(~internal)
        int_idx = np.flatnonzero(internal)
        order = np.empty(len(starts), dtype=np.int64)
        order[leaf_idx] = np.arange(len(leaf_idx))
        order[int_idx] = len(leaf_idx) + np.arange(len(int_idx))
        levels.append((torch.from_numpy(starts[leaf_idx].copy()), torch.from_numpy(order), int(len(int_idx))))
    return ReductionPlan(lengths=lengths, offsets=offsets, levels=tuple(levels))


def reduce_rows(x: torch.Tensor, plan: ReductionPlan, e: torch.Tensor, tnorm: str = "product",
                off_diagonal: str = "min") -> torch.Tensor:
    """Tree-reduce every row of ``x`` (R, N frames) per video with its own neutral element.

    ``e`` has shape (R,) (one neutral element per row). Returns (R, V).
    """
    if x.dim() != 2 or x.shape[1] != plan.n_frames:
        raise ValueError(f"expected x of shape (rows, {plan.n_frames}), got {tuple(x.shape)}")
    e_col = e.reshape(-1, 1).to(x.dtype)
    vals: torch.Tensor | None = None
    for leaf_frames, order, n_internal in plan.levels:
        leaves = x.index_select(1, leaf_frames)
        if n_internal:
            assert vals is not None and vals.shape[1] == 2 * n_internal
            combined = uninorm(vals[:, 0::2], vals[:, 1::2], e_col, tnorm, off_diagonal)
            vals = torch.cat([leaves, combined], dim=1).index_select(1, order)
        else:
            vals = leaves
    assert vals is not None
    return vals


def aggregate(probs: torch.Tensor, plan: ReductionPlan, neutral: torch.Tensor, tnorm: str = "product",
              off_diagonal: str = "min") -> torch.Tensor:
    """Aggregate frame probabilities ``probs`` (N, C) of the planned videos into o (V, C)."""
    return reduce_rows(probs.T, plan, neutral, tnorm, off_diagonal).T


# --------------------------------------------------------------------------------------------------
# naive reference (pure Python floats, used by tests and the benchmark)

def reference_uninorm(a: float, b: float, e: float, tnorm: str = "product", off_diagonal: str = "min") -> float:
    t = {"product": lambda u, v: u * v, "lukasiewicz": lambda u, v: max(0.0, u + v - 1.0), "min": min}[tnorm]
    s = {"product": lambda u, v: u + v - u * v, "lukasiewicz": lambda u, v: min(1.0, u + v), "min": max}[tnorm]
    if a <= e and b <= e:
        d = max(e, EPS)
        return e * t(min(a / d, 1.0), min(b / d, 1.0))
    if a >= e and b >= e:
        d = max(1.0 - e, EPS)
        return e + (1.0 - e) * s(min((a - e) / d, 1.0), min((b - e) / d, 1.0))
    return {"min": min(a, b), "max": max(a, b), "mean": (a + b) / 2.0}[off_diagonal]


def reference_aggregate(x: Sequence[float], e: float, tnorm: str = "product", off_diagonal: str = "min") -> float:
    """Recursive balanced-tree aggregation of one class row, exactly as written in METHODS §2.4."""
    x = list(x)
    if len(x) == 1:
        return float(x[0])
    h = len(x) // 2
    return reference_uninorm(reference_aggregate(x[:h], e, tnorm, off_diagonal),
                             reference_aggregate(x[h:], e, tnorm, off_diagonal), e, tnorm, off_diagonal)


# --------------------------------------------------------------------------------------------------
# targets and loss

def sord_targets(labels: Sequence[int] | np.ndarray, n_classes: int = N_CLASSES, zero_score_gap: float = 0.5,
                 multiplier: float = 2.0) -> np.ndarray:
    """SORD soft targets (§2.5): r_0 = -gap, r_k = k; q = softmax(-m (r_y - r_i)^2). Shape (V, C)."""
    labels = np.asarray(labels, dtype=np.int64)
    pos = np.arange(n_classes, dtype=np.float64)
    pos[0] = -float(zero_score_gap)
    phi = multiplier * (pos[labels][:, None] - pos[None, :]) ** 2
    z = -phi - (-phi).max(axis=1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=1, keepdims=True)


def one_hot_targets(labels: Sequence[int] | np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    return np.eye(n_classes)[np.asarray(labels, dtype=np.int64)]


def class_weights(labels: Sequence[int] | np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``rebalance_scores`` weights from training counts n_k (§2.5); absent classes get weight 1."""
    n = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    w = np.ones(n_classes)
    if n[0] > 0:
        w[0] = n[1:].sum() / n[0] if n[1:].sum() > 0 else 1.0
    top = n[1:].max() if n_classes > 1 else 0.0
    for k in range(1, n_classes):
        if n[k] > 0:
            w[k] = top / n[k]
    return w


def video_loss(o: torch.Tensor, q: torch.Tensor, weights: torch.Tensor | None = None, kind: str = "ce") -> torch.Tensor:
    """Per-video loss of logits ``o`` (..., V, C) against soft targets ``q`` (V, C); returns (..., V)."""
    logp = torch.log_softmax(o, dim=-1)
    if kind == "ce":
        per = -(q * logp).sum(-1)
    elif kind == "kl":
        per = (torch.xlogy(q, q) - q * logp).sum(-1)
    else:
        raise ValueError(f"unknown loss '{kind}'; expected ce or kl")
    if weights is not None:
        per = per * weights
    return per


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


# --------------------------------------------------------------------------------------------------
# data container

@dataclass
class VideoSet:
    """Frame probabilities of several videos, concatenated in temporal order (video after video)."""

    video_ids: list[str]
    patient_ids: list[str]
    labels: np.ndarray          # (V,) int, -1 = unknown
    lengths: np.ndarray         # (V,) frames per video
    probs: np.ndarray           # (N, C) float64
    _plan: ReductionPlan | None = field(default=None, repr=False)

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

    @property
    def plan(self) -> ReductionPlan:
        if self._plan is None:
            self._plan = build_plan(self.lengths)
        return self._plan

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


# --------------------------------------------------------------------------------------------------
# training

@dataclass
class FitResult:
    neutral: list[float]
    init_neutral: list[float]
    method: str                      # adam | grid | fixed
    selected_epoch: int
    train_loss: float
    train_accuracy: float
    curve: list[dict[str, float]]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "neutral": self.neutral, "init_neutral": self.init_neutral, "method": self.method,
            "selected_epoch": self.selected_epoch, "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy, "curve": self.curve, "warnings": self.warnings,
        }


def _targets(videos: VideoSet, cfg: AggregatorSection) -> tuple[torch.Tensor, torch.Tensor | None]:
    if (videos.labels < 0).any() or (videos.labels >= N_CLASSES).any():
        raise ValueError("training videos need a video score 0..3 for every video")
    q = (sord_targets(videos.labels, N_CLASSES, cfg.zero_score_gap, cfg.sord_multiplier) if cfg.use_sord
         else one_hot_targets(videos.labels))
    w = torch.as_tensor(class_weights(videos.labels)[videos.labels], dtype=DTYPE) if cfg.rebalance_scores else None
    return torch.as_tensor(q, dtype=DTYPE), w


def _rows_per_chunk(n_frames: int, budget: int = 2_000_000) -> int:
    """How many rows of ``n_frames`` values to reduce at once (bounds the grid-search memory)."""
    return max(1, budget // max(1, n_frames))


def _min_grid_fit(videos: VideoSet, cfg: AggregatorSection, q: torch.Tensor, w: torch.Tensor | None,
                  e0: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Coordinate-wise grid search of e per class minimising the training loss (tnorm=min)."""
    grid = torch.linspace(0.0, 1.0, cfg.min_grid_points, dtype=DTYPE)
    x = torch.as_tensor(videos.probs.T, dtype=DTYPE)              # (C, N)
    plan = videos.plan
    n_g, n_c = len(grid), N_CLASSES
    # table[g, c, v] = o_c of video v with e_c = grid[g]; rows chunked over the grid to bound memory
    per_chunk = max(1, _rows_per_chunk(plan.n_frames) // n_c)
    parts = []
    with torch.no_grad():
        for g0 in range(0, n_g, per_chunk):
            g = grid[g0:g0 + per_chunk]
            rows = x.repeat(len(g), 1)
            parts.append(reduce_rows(rows, plan, g.repeat_interleave(n_c), "min", cfg.off_diagonal)
                         .reshape(len(g), n_c, -1))
        table = torch.cat(parts, 0)
        e = e0.clone()
        cur = aggregate(torch.as_tensor(videos.probs, dtype=DTYPE), plan, e, "min", cfg.off_diagonal)   # (V, C)
        cur_loss = float(video_loss(cur, q, w, cfg.loss).sum())
        y = torch.as_tensor(videos.labels)
        curve = [{"sweep": 0, "loss": cur_loss, "accuracy": float((cur.argmax(1) == y).double().mean()),
                  **{f"neutral_{c}": float(e[c]) for c in range(n_c)}}]
        for sweep in range(1, 101):
            changed = False
            for c in range(n_c):
                cand = cur.unsqueeze(0).repeat(n_g, 1, 1)
                cand[:, :, c] = table[:, c, :]
                losses = video_loss(cand, q, w, cfg.loss).sum(-1)
                best = int(torch.argmin(losses))
                if float(losses[best]) < cur_loss - 1e-12:
                    e[c] = grid[best]
                    cur = cand[best].clone()
                    cur_loss = float(losses[best])
                    changed = True
            curve.append({"sweep": sweep, "loss": cur_loss, "accuracy": float((cur.argmax(1) == y).double().mean()),
                          **{f"neutral_{c}": float(e[c]) for c in range(n_c)}})
            if not changed:
                break
    return e, curve


class SingleTensorAdam:
    """Adam (default betas and eps, no weight decay) on one tensor, with a MultiStepLR schedule.

    The same operations in the same order as ``torch.optim.Adam``'s single-tensor path and
    ``MultiStepLR``, so the neutral elements come out bit-identical (tested). Why not the torch
    classes: constructing ``torch.optim.Adam`` imports TorchDynamo (~2.3 s), five times per
    ``dvc exp run -S aggregator.tnorm=...``, to optimise four numbers in milliseconds.
    """

    def __init__(self, param: torch.Tensor, lr: float, milestones: Sequence[int] = (), gamma: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param, self.lr, self.gamma, self.eps = param, float(lr), float(gamma), eps
        self.beta1, self.beta2 = betas
        self.milestones = [int(m) for m in milestones]
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update from ``param.grad``, then one scheduler step."""
        grad = self.param.grad
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        step = float(self.steps)
        step_size = self.lr / (1 - self.beta1 ** step)
        denom = (self.exp_avg_sq.sqrt() / ((1 - self.beta2 ** step) ** 0.5)).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-step_size)
        if self.steps in self.milestones:   # MultiStepLR: a repeated milestone applies gamma repeatedly
            self.lr = self.lr * self.gamma ** self.milestones.count(self.steps)


def fit_aggregator(videos: VideoSet, cfg: AggregatorSection, seed: int = 0) -> FitResult:
    """Train the neutral elements on ``videos`` (full batch, losses summed over videos; §2.5-2.6).

    tnorm product/lukasiewicz: Adam on e, clamped to [0, 1] after every step; the curve holds the
    loss/accuracy of the parameters after 0..epochs steps and ``earlystop`` picks one of them
    (last; lowest loss; best accuracy, ties to lower loss then earlier epoch). tnorm min: see the
    module docstring (grid search or fixed e, with a logged warning).
    """
    with single_thread():
        return _fit(videos, cfg, seed)


def _fit(videos: VideoSet, cfg: AggregatorSection, seed: int) -> FitResult:
    if len(videos) == 0:
        raise ValueError("no training videos: the aggregator needs at least one labelled video")
    torch.manual_seed(seed)
    q, w = _targets(videos, cfg)
    y = torch.as_tensor(videos.labels)
    e0 = torch.tensor(cfg.neutral_init(), dtype=DTYPE)
    probs = torch.as_tensor(videos.probs, dtype=DTYPE)
    plan = videos.plan
    warns: list[str] = []

    if cfg.tnorm == "min":
        msg = ("aggregator.tnorm=min: the output selects one input value, so gradients w.r.t. the neutral "
               "elements are zero and Adam cannot move them; ")
        msg += ("choosing e per class by grid search of the training loss on the training videos (min_fit: grid)"
                if cfg.min_fit == "grid" else f"keeping init_neutral {e0.tolist()} (min_fit: none)")
        log.warning(msg)
        warns.append(msg)
        if cfg.min_fit == "grid":
            e, curve = _min_grid_fit(videos, cfg, q, w, e0)
            method, selected = "grid", curve[-1]["sweep"]
        else:
            e, method, selected = e0.clone(), "fixed", 0
        with torch.no_grad():
            o = aggregate(probs, plan, e, "min", cfg.off_diagonal)
            loss = float(video_loss(o, q, w, cfg.loss).sum())
            acc = float((o.argmax(1) == y).double().mean())
        if cfg.min_fit != "grid":
            curve = [{"epoch": 0, "loss": loss, "accuracy": acc, **{f"neutral_{c}": float(e[c]) for c in range(N_CLASSES)}}]
        return FitResult([float(v) for v in e], e0.tolist(), method, int(selected), loss, acc, curve, warns)

    neutral = e0.clone().requires_grad_(True)
    opt = SingleTensorAdam(neutral, cfg.lr, cfg.lr_milestones, cfg.lr_gamma)
    curve: list[dict[str, float]] = []
    states: list[torch.Tensor] = []
    for epoch in range(cfg.epochs + 1):
        # evaluate the parameters after `epoch` steps, then take the next step
        neutral.grad = None
        o = aggregate(probs, plan, neutral, cfg.tnorm, cfg.off_diagonal)
        loss = video_loss(o, q, w, cfg.loss).sum()
        acc = float((o.detach().argmax(1) == y).double().mean())
        curve.append({"epoch": epoch, "loss": float(loss.detach()), "accuracy": acc,
                      "lr": float(opt.lr),
                      **{f"neutral_{c}": float(neutral.detach()[c]) for c in range(N_CLASSES)}})
        states.append(neutral.detach().clone())
        if epoch == cfg.epochs:
            break
        loss.backward()
        if not torch.isfinite(neutral.grad).all():
            raise FloatingPointError(f"non-finite gradient of the neutral elements at epoch {epoch}")
        opt.step()
        with torch.no_grad():
            neutral.clamp_(0.0, 1.0)
    if cfg.earlystop == "last":
        best = len(curve) - 1
    elif cfg.earlystop == "train_loss":
        best = min(range(len(curve)), key=lambda i: (curve[i]["loss"], i))
    else:  # train_acc: best accuracy, ties to the lower loss, then the earlier epoch
        best = min(range(len(curve)), key=lambda i: (-curve[i]["accuracy"], curve[i]["loss"], i))
    e = states[best]
    return FitResult([float(v) for v in e], e0.tolist(), "adam", best, curve[best]["loss"],
                     curve[best]["accuracy"], curve, warns)


def predict(videos: VideoSet, neutral: Sequence[float] | torch.Tensor, tnorm: str = "product",
            off_diagonal: str = "min") -> tuple[np.ndarray, np.ndarray]:
    """Aggregated values o (V, C) and predicted scores argmax o (V,)."""
    with torch.no_grad(), single_thread():
        o = aggregate(torch.as_tensor(videos.probs, dtype=DTYPE), videos.plan,
                      torch.as_tensor(neutral, dtype=DTYPE), tnorm, off_diagonal).numpy()
    return o, o.argmax(axis=1)


def run_fold(train: VideoSet, test: VideoSet, cfg: AggregatorSection, fold: int, seed: int = 0
             ) -> tuple[FitResult, pd.DataFrame]:
    """Train on ``train``, predict ``test`` with the uninorm and every baseline (§2.7-2.8).

    Returns the fit and one row per test video: ``video_id, patient_id, fold, label, n_frames,
    pred_uninorm, pred_<baseline>..., agg_0..agg_3`` (agg_c = uninorm aggregated value o_c).
    """
    from lus.models.video_baselines import baseline_predictions

    fit = fit_aggregator(train, cfg, seed)
    out = pd.DataFrame({"video_id": test.video_ids, "patient_id": test.patient_ids,
                        "fold": np.full(len(test), fold, dtype=np.int64), "label": test.labels,
                        "n_frames": test.lengths})
    if len(test):
        o, pred = predict(test, fit.neutral, cfg.tnorm, cfg.off_diagonal)
        out["pred_uninorm"] = pred
        for name, values in baseline_predictions(test).items():
            out[f"pred_{name}"] = values
        for c in range(N_CLASSES):
            out[f"agg_{c}"] = o[:, c]
    else:
        from lus.models.video_baselines import BASELINES
        for name in ("uninorm", *BASELINES):
            out[f"pred_{name}"] = np.empty(0, dtype=np.int64)
        for c in range(N_CLASSES):
            out[f"agg_{c}"] = np.empty(0)
    return fit, out
