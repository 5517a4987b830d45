"""CNN-LSTM head of Barros et al. 2021 (METHODS §4) on cached frozen frame features.

``CnnLstmHead(input_dim, n_classes)``: ``(B, T, D)`` features -> LSTM(512, input dropout 0.4, last
state) -> Dense(1024, ReLU) -> Dense(1024, ReLU) -> logits ``(B, n_classes)`` (the softmax lives in
the loss). The LSTM is parameterised like Keras' ``LSTM`` (one bias vector per gate, not PyTorch's
two), so the paper configuration (20 x 2048 input, 3 classes) has exactly 6,822,915 parameters:
LSTM 4 * (512 * (2048 + 512) + 512) = 5,244,928; dense 525,312 + 1,049,600 + 3,075.
Keras' defaults are reproduced too: gate order i, f, c, o; Glorot-uniform input kernel, orthogonal
recurrent kernel, zero bias with forget-gate bias 1; ``dropout`` = one input mask per sequence,
shared by all time steps.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class KerasLSTM(nn.Module):
    """Single-layer LSTM returning the last hidden state ``(B, hidden)`` for input ``(B, T, D)``."""

    def __init__(self, input_size: int, hidden: int, input_dropout: float = 0.0):
        super().__init__()
        self.input_size, self.hidden, self.input_dropout = int(input_size), int(hidden), float(input_dropout)
        self.kernel = nn.Linear(self.input_size, 4 * self.hidden, bias=True)      # W x + b
        self.recurrent = nn.Linear(self.hidden, 4 * self.hidden, bias=False)      # U h
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.kernel.weight)
        h = self.hidden
        with torch.no_grad():
            w = torch.empty(h, 4 * h)  # Keras: orthogonal init of the whole (h, 4h) recurrent kernel
            nn.init.orthogonal_(w)
            self.recurrent.weight.copy_(w.T)
            self.kernel.bias.zero_()
            self.kernel.bias[h:2 * h] = 1.0  # unit_forget_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if self.training and self.input_dropout > 0:
            keep = 1.0 - self.input_dropout
            mask = torch.bernoulli(x.new_full((b, 1, self.input_size), keep)) / keep
            x = x * mask
        gates_x = self.kernel(x)  # (B, T, 4h): all input projections at once
        h = x.new_zeros(b, self.hidden)
        c = x.new_zeros(b, self.hidden)
        for step in range(t):
            gates = gates_x[:, step] + self.recurrent(h)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return h


class CnnLstmHead(nn.Module):
    """LSTM (last state) -> ReLU dense layers -> class logits.

    Buffers ``feature_mean`` / ``feature_std`` (D,) standardise the input features (identity by default;
    :meth:`set_standardisation` fills them from training videos only); they are saved in the state dict
    so ``model.pt`` is self-contained, and they are not parameters.
    """

    def __init__(self, input_dim: int, n_classes: int, hidden: int = 512, input_dropout: float = 0.4,
                 fc: Sequence[int] = (1024, 1024)):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(input_dim))
        self.register_buffer("feature_std", torch.ones(input_dim))
        self.lstm = KerasLSTM(input_dim, hidden, input_dropout)
        layers: list[nn.Module] = []
        width = hidden
        for w in fc:
            layers += [nn.Linear(width, int(w)), nn.ReLU(inplace=True)]
            width = int(w)
        layers.append(nn.Linear(width, n_classes))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # Keras Dense defaults
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def set_standardisation(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Per-dimension mean/std over all frames of ``features`` (V, T, D) (training videos only)."""
        flat = features.reshape(-1, features.shape[-1]).float()
        self.feature_mean.copy_(flat.mean(0))
        self.feature_std.copy_(flat.std(0, unbiased=False).clamp_min(eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D) features -> logits (B, n_classes)."""
        return self.mlp(self.lstm((x - self.feature_mean) / self.feature_std))


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Softmax (V, n_classes) of the head on feature sequences ``x`` (V, T, D), in eval mode.

    Used by train_cnn_lstm for its test predictions and by ``lus predict``.
    """
    model.eval()
    device = next(model.parameters()).device
    out = [torch.softmax(model(x[i:i + batch].to(device)), 1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
