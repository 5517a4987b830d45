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

Fitting the neutral elements (Adam, or the grid search for tnorm = min) and the fold protocol live in
:mod:`lus.train.aggregator`; the data container in :mod:`lus.data.video_set`; SORD targets in
:mod:`lus.models.losses`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from lus.data.video_set import VideoSet
from lus.labels import N_SCORES as N_CLASSES

EPS = 1e-6
DTYPE = torch.float64

__all__ = [
    "EPS", "DTYPE", "single_thread", "ReductionPlan", "build_plan", "uninorm", "reduce_rows", "aggregate",
    "reference_uninorm", "reference_aggregate", "one_hot_targets", "class_weights", "video_loss", "plan_of", "predict",
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


def plan_of(videos: VideoSet) -> ReductionPlan:
    """The reduction plan of ``videos``' lengths, built once per set (cached in ``videos.cache``)."""
    plan = videos.cache.get("reduction_plan")
    if plan is None:
        plan = videos.cache["reduction_plan"] = build_plan(videos.lengths)
    return plan


def predict(videos: VideoSet, neutral: Sequence[float] | torch.Tensor, tnorm: str = "product",
            off_diagonal: str = "min") -> tuple[np.ndarray, np.ndarray]:
    """Aggregated values o (V, C) and predicted scores argmax o (V,)."""
    with torch.no_grad(), single_thread():
        o = aggregate(torch.as_tensor(videos.probs, dtype=DTYPE), plan_of(videos),
                      torch.as_tensor(neutral, dtype=DTYPE), tnorm, off_diagonal).numpy()
    return o, o.argmax(axis=1)
