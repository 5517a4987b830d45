"""Losses of the frame model (METHODS §1.3): SORD soft labels, crop logit consistency, scale prior.

SORD (soft ordinal labels): class positions r_i = i (r_0 = -zero_gap when a zero-score gap is used,
METHODS §2.5), distance phi(y, i) = m * (r_y - r_i)^2 and soft target q = softmax(-phi). With m = 2
and no gap, y = 0 gives q = [.880, .119, .0003, .0000]. Shapes: logits (B, C), labels (B,) ints 0..C-1.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F


def sord_targets(labels: torch.Tensor | Sequence[int], n_classes: int = 4, m: float = 2.0,
                 zero_gap: float = 0.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Soft ordinal targets q (B, n_classes), rows sum to 1; ``zero_gap`` moves class 0 to -zero_gap.

    The one SORD implementation: the frame loss uses it in float32 without a gap, the uninorm aggregator
    (``lus.train.aggregator``) in float64 with ``aggregator.zero_score_gap`` (METHODS §2.5)."""
    y = torch.as_tensor(labels, dtype=torch.long)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"sord_targets: labels must lie in 0..{n_classes - 1}")
    pos = torch.arange(n_classes, dtype=dtype, device=y.device)
    pos[0] = -float(zero_gap)
    phi = m * (pos[y].unsqueeze(-1) - pos.unsqueeze(0)) ** 2
    return torch.softmax(-phi, dim=-1)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_i q_i log softmax(z)_i."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def sord_loss(logits: torch.Tensor, labels: torch.Tensor, m: float = 2.0, zero_gap: float = 0.0) -> torch.Tensor:
    """SORD loss of one set of logits (the frame model applies it to crop 1 only)."""
    q = sord_targets(labels.to(logits.device), logits.shape[-1], m, zero_gap).to(logits.dtype)
    return soft_cross_entropy(logits, q)


def consistency_loss(z1: torch.Tensor, z2: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """lambda_cons * mean over batch and classes of (z1 - z2)^2, on raw logits (both crops get gradients)."""
    return weight * ((z1 - z2) ** 2).mean()


def scale_prior(scales: torch.Tensor, priors: Sequence[float] = (0.5, 0.75), weight: float = 1.0) -> torch.Tensor:
    """lambda_stn * mean over batch of 1/2 (|s1 - 0.5| + |s2 - 0.75|); ``scales`` is (B, 2)."""
    target = torch.as_tensor(priors, dtype=scales.dtype, device=scales.device)
    return weight * (scales - target).abs().sum(dim=-1).mul(0.5).mean()
