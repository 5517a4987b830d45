"""Video-supervised (multiple-instance) training of a frame model: ``frame_model.supervision: video``.

When only videos are labelled (COVID-BLUES), giving every frame its video's score teaches the frame model
that a score-3 video's spared frames are score 3. Multiple-instance learning instead scores every frame of
a *bag* (frames of one video), pools the frame probabilities into one video distribution and puts the SORD
loss on the video score, so gradients reach the frames only through the pooling.

Poolings (``frame_model.video_pooling``):

``mean``     mean of the frame softmax vectors: the pipeline's argmax_mean video rule made differentiable.
             Every frame gets a gradient, so training is as stable as frame supervision; a video score is
             whichever score the frames support most on average, which is how the clinicians' merged score
             behaves in ``scripts/video_rule_study.py``.
``uninorm``  the learned uninorm aggregator of METHODS §2 (product t-norm, balanced tree in temporal order)
             with one neutral element per class, learned jointly with the frame model (sigmoid of a free
             parameter, starting at 0.5); the aggregated values are normalised to a distribution.
"""

from __future__ import annotations

import torch
from torch import nn

from lus.models.losses import sord_targets
from lus.models.uninorm import aggregate, build_plan

POOLINGS = ("mean", "uninorm")
_EPS = 1e-6


class VideoPooling(nn.Module):
    """Frame probabilities (N, C), frames of video v consecutive, ``lengths`` (V,) -> video distributions (V, C)."""

    def __init__(self, kind: str = "mean", n_classes: int = 4) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"video pooling '{kind}' unknown; expected one of {', '.join(POOLINGS)}")
        self.kind = kind
        if kind == "uninorm":
            self.neutral_logit = nn.Parameter(torch.zeros(n_classes))

    def neutral(self) -> torch.Tensor | None:
        return torch.sigmoid(self.neutral_logit) if self.kind == "uninorm" else None

    def forward(self, probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(torch.long)
        if self.kind == "mean":
            video = torch.repeat_interleave(torch.arange(len(lengths), device=probs.device), lengths.to(probs.device))
            sums = probs.new_zeros(len(lengths), probs.shape[1]).index_add_(0, video, probs)
            return sums / lengths.to(probs.dtype).clamp_min(1)[:, None]
        o = aggregate(probs, build_plan(lengths.cpu().numpy()), self.neutral())
        return o / o.sum(1, keepdim=True).clamp_min(_EPS)


def mil_loss(logits: torch.Tensor, lengths: torch.Tensor, video_labels: torch.Tensor, pooling: VideoPooling,
             sord_m: float = 2.0, zero_gap: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """SORD soft cross-entropy of the pooled video distribution; returns (loss, video distributions)."""
    video = pooling(torch.softmax(logits.float(), dim=1), lengths)
    q = sord_targets(video_labels, video.shape[1], sord_m, zero_gap).to(video)
    return -(q * video.clamp_min(_EPS).log()).sum(1).mean(), video
