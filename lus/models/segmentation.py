"""Segmentation architectures of the marker benchmark (METHODS §3), built on segmentation_models_pytorch.

``build_segmentation_model(arch, ...)`` returns a :class:`SegmentationNet`: grey input ``(B, 1, H, W)``
scaled to [-1, 1] (``2x/255 - 1``), logits ``(B, 5, H, W)`` at the input size. The wrapper pads any
H, W up to the encoder's stride multiple (with -1 = black, the sector background) and crops the
logits back, so 64x64 shards and the paper's 200x260 frames both work.

Names (``segmentation.archs``): ``unet``, ``unetpp`` (U-Net++), ``deeplabv3plus`` (alias
``deeplabv3p``, METHODS' name). The encoders are shared, configurable smp encoders rather than the
paper's three different bodies (a 3-level custom U-Net, ResNet-50, MobileNetV2): the benchmark
compares decoders at equal encoder cost, which is what fits the CPU budget. ``encoder_weights='none'``
never touches the network; ``'imagenet'`` loads the offline torchvision MobileNetV2 file when the
encoder is ``mobilenet_v2`` and it is installed (see :mod:`lus.models.backbones`), else smp downloads.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lus.labels import N_SEG_CLASSES as N_CLASSES

ARCH_ALIASES = {"deeplabv3p": "deeplabv3plus", "unet++": "unetpp"}
ARCHS = ("unet", "unetpp", "deeplabv3plus")


def canonical_arch(name: str) -> str:
    arch = ARCH_ALIASES.get(name, name)
    if arch not in ARCHS:
        raise ValueError(f"unknown segmentation architecture '{name}'; expected one of: {', '.join(ARCHS)}")
    return arch


def scale_frames(frames: torch.Tensor | "object") -> torch.Tensor:
    """uint8 grey frames ``(..., H, W)`` -> float in [-1, 1] (METHODS §3: ``2x/255 - 1``)."""
    t = torch.as_tensor(frames)
    return t.float().mul(2.0 / 255.0).sub(1.0)


class SegmentationNet(nn.Module):
    """An smp model plus input padding to the stride multiple; ``forward`` gives logits ``(B, C, H, W)``."""

    def __init__(self, net: nn.Module, divisor: int, arch: str):
        super().__init__()
        self.net = net
        self.divisor = int(divisor)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph = (-h) % self.divisor
        pw = (-w) % self.divisor
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=-1.0)
        out = self.net(x)
        if ph or pw:
            out = out[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]
        return out


def _load_offline_imagenet(net: nn.Module, encoder: str, in_channels: int) -> bool:
    """Load offline ImageNet weights into an smp encoder when a local file exists; True if loaded."""
    from lus.models.imagenet import offline_imagenet_file

    path = offline_imagenet_file(encoder)
    if path is None:
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    first = "features.0.0.weight"
    if in_channels == 1:
        # smp's rule for grey input: sum the RGB filters of the first convolution.
        state[first] = state[first].sum(dim=1, keepdim=True)
    elif in_channels != 3:
        raise ValueError(f"offline ImageNet weights support 1 or 3 input channels, got {in_channels}")
    net.encoder.load_state_dict(state)
    return True


def build_segmentation_model(arch: str, encoder: str = "mobilenet_v2", encoder_depth: int = 3,
                             decoder_channels: Sequence[int] = (64, 32, 16), encoder_weights: str = "none",
                             aspp_rates: Sequence[int] = (2, 4, 6), aspp_dropout: float = 0.1,
                             n_classes: int = N_CLASSES, in_channels: int = 1) -> SegmentationNet:
    """Build one benchmark architecture. Raises ``ValueError`` on unknown names or inconsistent sizes."""
    import segmentation_models_pytorch as smp

    arch = canonical_arch(arch)
    encoders = sorted(smp.encoders.get_encoder_names()) if hasattr(smp.encoders, "get_encoder_names") \
        else sorted(smp.encoders.encoders)
    if encoder not in encoders and not encoder.startswith("tu-"):
        raise ValueError(f"unknown segmentation encoder '{encoder}'; smp offers e.g. "
                         f"{', '.join(e for e in encoders if not e.startswith('timm-'))[:400]}, ... or tu-<timm name>")
    if encoder_weights not in ("none", "imagenet"):
        raise ValueError(f"encoder_weights must be 'none' or 'imagenet', got {encoder_weights!r}")
    if arch != "deeplabv3plus" and len(decoder_channels) != encoder_depth:
        raise ValueError(f"{arch}: need {encoder_depth} decoder widths (one per encoder stage), got {list(decoder_channels)}")
    loaded_offline = False
    smp_weights = None
    if encoder_weights == "imagenet":
        from lus.models.imagenet import offline_imagenet_file

        if offline_imagenet_file(encoder) is None:
            smp_weights = "imagenet"  # smp downloads; only reached when the user asked for it
    common = dict(encoder_name=encoder, encoder_depth=encoder_depth, encoder_weights=smp_weights,
                  in_channels=in_channels, classes=n_classes)
    if arch == "unet":
        net = smp.Unet(decoder_channels=list(decoder_channels), **common)
        divisor = 2 ** encoder_depth
    elif arch == "unetpp":
        net = smp.UnetPlusPlus(decoder_channels=list(decoder_channels), **common)
        divisor = 2 ** encoder_depth
    else:
        # Output stride 16 as in the paper when the encoder is deep enough, else 8 (depth 3).
        stride = 16 if encoder_depth >= 4 else 8
        net = smp.DeepLabV3Plus(decoder_channels=int(decoder_channels[0]), encoder_output_stride=stride,
                                decoder_atrous_rates=tuple(int(r) for r in aspp_rates),
                                decoder_aspp_dropout=float(aspp_dropout), **common)
        divisor = stride
    if encoder_weights == "imagenet" and smp_weights is None:
        loaded_offline = _load_offline_imagenet(net, encoder, in_channels)
    model = SegmentationNet(net, divisor, arch)
    model.weights_source = "offline" if loaded_offline else (smp_weights or "none")  # type: ignore[attr-defined]
    return model


@torch.no_grad()
def predict_probs(model: nn.Module, frames: "object", device: torch.device | str = "cpu",
                  batch_size: int = 64) -> "object":
    """Softmax outputs ``(N, C, H, W)`` float32 numpy for uint8 frames ``(N, H, W)`` (eval mode)."""
    import numpy as np

    model.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        x = scale_frames(np.asarray(frames[start:start + batch_size]))[:, None].to(device)
        out.append(torch.softmax(model(x), dim=1).float().cpu().numpy())
    if not out:
        return np.zeros((0, N_CLASSES) + tuple(np.asarray(frames).shape[1:]), np.float32)
    return np.concatenate(out)
