"""Fitting the uninorm aggregator's neutral elements and the per-fold protocol (METHODS §2.5-2.8).

tnorm product/lukasiewicz: full-batch Adam (:class:`SingleTensorAdam`) on e, losses summed over the
training videos. tnorm = min: the output always equals one of the inputs, so d o / d e = 0 almost
everywhere and Adam would leave e at its initial value. :func:`fit_aggregator` then logs a warning and,
with ``min_fit: grid``, chooses e per class by coordinate-wise grid search of the training loss on the
training videos (``min_fit: none`` keeps ``init_neutral``).

:func:`run_fold` trains on one fold's training videos and predicts its test videos with the uninorm and
every training-free baseline (:mod:`lus.models.video_baselines`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lus.config.aggregator import AggregatorSection
from lus.data.video_set import VideoSet
from lus.labels import N_SCORES as N_CLASSES
from lus.models.losses import sord_targets
from lus.models.uninorm import (DTYPE, aggregate, class_weights, one_hot_targets, plan_of, predict, reduce_rows,
                                single_thread, video_loss)
from lus.models.video_baselines import BASELINES, baseline_predictions

log = logging.getLogger(__name__)

__all__ = ["FitResult", "SingleTensorAdam", "fit_aggregator", "run_fold", "run_folds"]


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
    q = (sord_targets(videos.labels, N_CLASSES, m=cfg.sord_multiplier, zero_gap=cfg.zero_score_gap, dtype=DTYPE)
         if cfg.use_sord else one_hot_targets(videos.labels))
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
    plan = plan_of(videos)
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
    plan = plan_of(videos)
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


def run_fold(train: VideoSet, test: VideoSet, cfg: AggregatorSection, fold: int, seed: int = 0
             ) -> tuple[FitResult, pd.DataFrame]:
    """Train on ``train``, predict ``test`` with the uninorm and every baseline (§2.7-2.8).

    Returns the fit and one row per test video: ``video_id, patient_id, fold, label, n_frames,
    pred_uninorm, pred_<baseline>..., agg_0..agg_3`` (agg_c = uninorm aggregated value o_c).
    """
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
        for name in ("uninorm", *BASELINES):
            out[f"pred_{name}"] = np.empty(0, dtype=np.int64)
        for c in range(N_CLASSES):
            out[f"agg_{c}"] = np.empty(0)
    return fit, out


def run_folds(allv: VideoSet, folds: Mapping[str, Any], configs: Mapping[str, AggregatorSection], seed: int = 0
              ) -> tuple[list[pd.DataFrame], dict[str, list[dict[str, Any]]]]:
    """Train one aggregator per fold and config on ``allv``; return per-fold prediction tables and the fits.

    ``folds``: a folds document (:func:`lus.data.folds.protocol_folds`); its ``group_key``
    (``patient_id``, the default, or ``video_id``) says what the ids in ``train``/``test`` are. Each
    table has ``pred_uninorm_<config>`` and ``agg_<config>_<c>`` columns for every config and the
    baselines' ``pred_<baseline>`` columns once.
    """
    group_key = folds.get("group_key", "patient_id")
    if group_key not in ("patient_id", "video_id"):
        raise ValueError(f"folds: group_key must be patient_id or video_id, got {group_key!r}")
    ids = np.asarray(allv.patient_ids if group_key == "patient_id" else allv.video_ids)
    tables: list[pd.DataFrame] = []
    fits: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for k, fold in enumerate(folds["folds"]):
        train_p = set(fold["train"]) | set(fold.get("val", []))
        test_p = set(fold["test"])
        if train_p & test_p:
            raise ValueError(f"fold {k}: {group_key}s in both train and test: {sorted(train_p & test_p)[:5]}")
        train = allv.subset(np.isin(ids, list(train_p)))
        test = allv.subset(np.isin(ids, list(test_p)))
        table = None
        for name, cfg in configs.items():
            fit, pred = run_fold(train, test, cfg, k, seed)
            fits[name].append({"fold": k, "n_train_videos": len(train), "n_test_videos": len(test), **fit.to_dict()})
            renamed = pred.rename(columns={"pred_uninorm": f"pred_uninorm_{name}",
                                           **{f"agg_{c}": f"agg_{name}_{c}" for c in range(4)}})
            if table is None:
                table = renamed
            else:
                table = table.join(renamed[[f"pred_uninorm_{name}"] + [f"agg_{name}_{c}" for c in range(4)]])
        assert table is not None
        tables.append(table)
    return tables, fits
