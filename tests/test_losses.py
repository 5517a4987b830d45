"""Frame-model losses against METHODS §1.3 / §2.5 and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lus.models.frame_models import FrameLossSpec, frame_loss
from lus.models.losses import consistency_loss, scale_prior, sord_loss, sord_targets, soft_cross_entropy

TABLE_1_3 = [
    [.880, .119, .0003, .0000],
    [.107, .787, .107, .0003],
    [.0003, .107, .787, .107],
    [.0000, .0003, .119, .880],
]


def test_sord_targets_match_methods_table():
    q = sord_targets(torch.arange(4), 4, m=2.0)
    assert torch.allclose(q.sum(1), torch.ones(4))
    assert torch.allclose(q, torch.tensor(TABLE_1_3), atol=6e-4)
    # exact value of the first row: [1, e^-2, e^-8, e^-18] / sum
    row = torch.tensor([1.0, math.exp(-2), math.exp(-8), math.exp(-18)])
    assert torch.allclose(q[0], row / row.sum(), atol=1e-7)


def test_sord_zero_gap_matches_methods_2_5():
    q = sord_targets([0, 1], 4, m=2.0, zero_gap=0.5)
    assert torch.allclose(q[0], torch.tensor([.989, .011, .000, .000]), atol=6e-4)
    assert torch.allclose(q[1], torch.tensor([.0097, .872, .118, .0003]), atol=6e-4)


def test_sord_targets_reject_bad_labels():
    with pytest.raises(ValueError):
        sord_targets([4], 4)


def test_sord_loss_is_soft_cross_entropy_on_targets():
    z = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([0, 3])
    q = sord_targets(y)
    expected = -(q * torch.log_softmax(z, 1)).sum(1).mean()
    assert sord_loss(z, y).item() == pytest.approx(expected.item())
    assert soft_cross_entropy(z, q).item() == pytest.approx(expected.item())
    # uniform logits -> loss log(4) whatever the target
    assert sord_loss(torch.zeros(1, 4), torch.tensor([2])).item() == pytest.approx(math.log(4))


def test_consistency_is_mse_on_raw_logits():
    z1 = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    z2 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    # squared differences: 1 + 4 + 16 = 21 over 8 entries
    assert consistency_loss(z1, z2).item() == pytest.approx(21 / 8)
    assert consistency_loss(z1, z2, weight=0.5).item() == pytest.approx(21 / 16)


def test_scale_prior_hand_computed():
    s = torch.tensor([[0.5, 0.75], [0.7, 0.55]])
    # row 1: 0; row 2: 0.5 * (0.2 + 0.2) = 0.2 -> mean 0.1
    assert scale_prior(s).item() == pytest.approx(0.1)
    assert scale_prior(s, weight=2.0).item() == pytest.approx(0.2)


def test_frame_loss_parts_per_arch():
    z1 = torch.zeros(2, 4)
    z2 = torch.ones(2, 4)
    y = torch.tensor([1, 2])
    out = {"logits": z1, "logits2": z2, "scales": torch.tensor([[0.5, 0.75], [0.6, 0.75]])}
    total, logs = frame_loss(out, y, FrameLossSpec(), "reg_stn", "learned")
    assert total.item() == pytest.approx(math.log(4) + 1.0 + 0.025)
    assert set(logs) == {"sord", "cons", "prior", "acc"}
    total_fixed, logs_fixed = frame_loss(out, y, FrameLossSpec(), "reg_stn", "fixed_scale")
    assert total_fixed.item() == pytest.approx(math.log(4) + 1.0) and "prior" not in logs_fixed
    total_cnn, _ = frame_loss({"logits": z1}, y, FrameLossSpec(loss="ce"), "cnn")
    assert total_cnn.item() == pytest.approx(math.log(4))
