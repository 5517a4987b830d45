"""Frame severity models of Roy et al. 2020 (METHODS §1.2, §1.6), selected by name.

Registry (``FRAME_MODELS``; :func:`build_frame_model` raises on an unknown name with the valid ones):

=============  ====================================================================================
reg_stn        Reg-STN: localisation CNN -> two affine crops -> one classifier CNN on both crops.
               ``stn_mode`` fixed_scale (translation only, scales 0.5/0.75) | learned (scales through
               a sigmoid + free off-diagonal terms, trained with the scale prior).
               ``crop2_translation`` shared (crop 2 reuses t1: the original code) | own (uses t2).
stn            CNN+STN: one crop from one unconstrained 6-parameter affine, bias [[.5,0,.2],[0,.5,.2]].
random_crop    CNN+random crop: two random crops (scales 0.5/0.75, uniform centres inside the frame)
               while training, the centred crops at test time; SORD on crop 1 + consistency.
cnn            the 6-block CNN body directly on the frame -> GAP -> FC head (loss ce or sord).
resnet18       torchvision ResNet-18, 4-way FC, random init (``pretrained`` loads ImageNet weights).
mobilenet_v2   torchvision MobileNetV2 (``pretrained``: ImageNet, offline file) + 4-way head; the last
               ``train_blocks`` feature modules train, the rest stay frozen (:mod:`lus.models.pretrained_frame`).
=============  ====================================================================================

Every model maps a batch ``x`` (B, 1 or 3, S, S) with values in [0, 1] (grey frames are replicated to
RGB inside; no mean/std normalisation, as in the original) to a dict of tensors:

``logits`` (B, 4) crop 1 (the prediction), ``logits2`` (B, 4) crop 2 (two-crop models only),
``scales`` (B, 2) (s1, s2) in learned mode, zeros otherwise, ``theta1`` / ``theta2`` (B, 2, 3) the
affine maps of the crops in normalised coordinates (grid_sample convention, align_corners=False:
output-grid point c in [-1, 1]^2 samples the input at A c + t). A model without that crop reports the
identity (the full frame).

Size: ``width`` multiplies every channel count (1.0 = paper: 32..128 channels, FC 256) and
``input_size`` / ``crop_size`` set the frame and crop resolution (paper 224 / 112). The localisation
Linear takes its input size from ``input_size`` (the original hard-wires 6272 = 128 x 7 x 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lus.config.frame_model import FrameModelSection
from lus.labels import N_SCORES as N_CLASSES
from lus.models.losses import consistency_loss, scale_prior, sord_loss
from lus.models.pretrained_frame import MobileNetV2Frame

BODY_CHANNELS = (32, 64, 64, 64, 128, 128)
STN_MODES = ("learned", "fixed_scale")
CROP2_TRANSLATION = ("shared", "own")
SCALE_PRIORS = (0.5, 0.75)


@dataclass(frozen=True)
class FrameModelSpec:
    """Plain construction settings (a stage maps ``params.yaml: frame_model`` onto these)."""

    arch: str = "reg_stn"
    stn_mode: str = "learned"
    crop2_translation: str = "shared"
    input_size: int = 64
    crop_size: int = 32
    width: float = 0.25
    n_classes: int = N_CLASSES
    loc_hidden: int = 32
    loc_input_size: int = 0      # localisation net input side (0 = input_size, as in the paper); smaller = cheaper
    pretrained: bool = False
    train_blocks: int = 0        # mobilenet_v2: trailing feature modules that train (0 = head only, -1 = all)
    head_dropout: float = 0.2    # mobilenet_v2: dropout before the linear head (torchvision's classifier value)
    feature_stn: bool = False    # mobilenet_v2: a learned crop of the frozen prefix map (FeatureMapSTN)
    channels_last: bool = True   # conv weights in NHWC: ~1.5x faster training on CPU (oneDNN), same maths


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def body_out_size(size: int) -> int:
    """Spatial side after the body's five 2x max-pools (floor each time: 224 -> 7, 112 -> 3, 64 -> 2)."""
    for _ in range(5):
        size //= 2
    if size < 1:
        raise ValueError("input too small for the 6-block CNN body (needs >= 32 pixels)")
    return size


class ConvBody(nn.Module):
    """6 blocks of conv3x3-BN-ReLU-conv3x3-BN-ReLU; maxpool 2 after blocks 1-5, dropout 0.3 after block 5."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(BODY_CHANNELS):
            c_out = _ch(c, width)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 5:
                layers.append(nn.MaxPool2d(2))
            if i == 4:
                layers.append(nn.Dropout(dropout))
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ClassifierHead(nn.Module):
    """GAP -> Linear(C -> 256 w) -> BN1d -> ReLU -> dropout 0.5 -> Linear(-> n_classes)."""

    def __init__(self, in_channels: int, width: float, n_classes: int) -> None:
        super().__init__()
        hidden = max(16, int(round(256 * width)))
        self.fc = nn.Sequential(nn.Linear(in_channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                nn.Dropout(0.5), nn.Linear(hidden, n_classes))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(feats.mean(dim=(2, 3)))


def _rgb(x: torch.Tensor, channels: int = 3) -> torch.Tensor:
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels != 1 else x


def _identity_theta(batch: int, like: torch.Tensor) -> torch.Tensor:
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=like.dtype, device=like.device)
    return eye.expand(batch, 2, 3)


def affine_crops(x: torch.Tensor, thetas: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops (N, C, size, size) of ``x`` (N, C, H, W) through ``thetas`` (N, 2, 3), zero padding."""
    grid = F.affine_grid(thetas, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _theta(s: torch.Tensor, r_a: torch.Tensor, r_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[[s, r_a, t_x], [r_b, s, t_y]] from (B,) tensors and t (B, 2)."""
    row0 = torch.stack([s, r_a, t[:, 0]], dim=-1)
    row1 = torch.stack([r_b, s, t[:, 1]], dim=-1)
    return torch.stack([row0, row1], dim=1)


class CNNClassifier(nn.Module):
    """CNN+CE / CNN+SORD baseline: body on the whole frame."""

    def __init__(self, spec: FrameModelSpec) -> None:
        super().__init__()
        self.body = ConvBody(3, spec.width)
        self.head = ClassifierHead(self.body.out_channels, spec.width, spec.n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.head(self.body(_rgb(x)))
        eye = _identity_theta(x.shape[0], z)
        return {"logits": z, "scales": z.new_zeros(x.shape[0], 2), "theta1": eye, "theta2": eye}


class ResNet18Classifier(nn.Module):
    """torchvision ResNet-18 with a 4-way FC (random init unless ``pretrained``)."""

    def __init__(self, spec: FrameModelSpec) -> None:
        super().__init__()
        from torchvision.models import ResNet18_Weights, resnet18

        if spec.pretrained:
            try:
                net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
            except Exception as exc:  # offline machines: say what failed
                raise RuntimeError(f"frame_model.pretrained: could not load ImageNet ResNet-18 weights ({exc})") from exc
            net.fc = nn.Linear(net.fc.in_features, spec.n_classes)
        else:
            net = resnet18(weights=None, num_classes=spec.n_classes)
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.net(_rgb(x))
        eye = _identity_theta(x.shape[0], z)
        return {"logits": z, "scales": z.new_zeros(x.shape[0], 2), "theta1": eye, "theta2": eye}


class Localisation(nn.Module):
    """Body on the full frame -> flatten -> Linear(C * s * s -> hidden) -> ReLU = h.

    With ``loc_input_size`` smaller than ``input_size`` the frame is first area-downsampled to that side
    (the crops are still sampled from the full-resolution frame): the localisation body is the most
    expensive part of Reg-STN on CPU and only has to find where to look.
    """

    def __init__(self, spec: FrameModelSpec) -> None:
        super().__init__()
        self.size = spec.loc_input_size if 0 < spec.loc_input_size < spec.input_size else 0
        self.body = ConvBody(3, spec.width)
        side = body_out_size(self.size or spec.input_size)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(self.body.out_channels * side * side, spec.loc_hidden),
                                nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        return self.fc(self.body(x))


def _head(in_features: int, out: int, bias: list[float] | None) -> nn.Linear:
    lin = nn.Linear(in_features, out)
    nn.init.zeros_(lin.weight)
    if bias is None:
        nn.init.normal_(lin.bias, 0.0, 0.1)
    else:
        with torch.no_grad():
            lin.bias.copy_(torch.tensor(bias))
    return lin


class RegSTN(nn.Module):
    """CNN + regularised STN (two crops). See the module docstring for modes and outputs."""

    def __init__(self, spec: FrameModelSpec) -> None:
        super().__init__()
        if spec.stn_mode not in STN_MODES:
            raise ValueError(f"stn_mode '{spec.stn_mode}' unknown; expected one of: {', '.join(STN_MODES)}")
        if spec.crop2_translation not in CROP2_TRANSLATION:
            raise ValueError(f"crop2_translation '{spec.crop2_translation}' unknown; expected one of: "
                             f"{', '.join(CROP2_TRANSLATION)}")
        self.mode, self.crop2 = spec.stn_mode, spec.crop2_translation
        self.crop_size = spec.crop_size
        self.loc = Localisation(spec)
        self.trans = _head(spec.loc_hidden, 4, [0.3, 0.3, 0.2, 0.2])
        if self.mode == "learned":
            self.scale = _head(spec.loc_hidden, 2, [0.5, 0.75])   # sigmoid -> 0.62, 0.68 at init
            self.offdiag = _head(spec.loc_hidden, 4, None)        # bias ~ N(0, 0.1^2), unregularised
        self.body = ConvBody(3, spec.width)
        self.head = ClassifierHead(self.body.out_channels, spec.width, spec.n_classes)

    def thetas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(theta1, theta2, scales) for an RGB batch."""
        h = self.loc(x)
        t = self.trans(h)
        t1 = t[:, 0:2]
        t2 = t1 if self.crop2 == "shared" else t[:, 2:4]
        b = x.shape[0]
        if self.mode == "fixed_scale":
            zero = t.new_zeros(b)
            theta1 = _theta(zero + SCALE_PRIORS[0], zero, zero, t1)
            theta2 = _theta(zero + SCALE_PRIORS[1], zero, zero, t2)
            return theta1, theta2, t.new_zeros(b, 2)
        s = torch.sigmoid(self.scale(h))
        r = self.offdiag(h)
        theta1 = _theta(s[:, 0], r[:, 0], r[:, 1], t1)
        theta2 = _theta(s[:, 1], r[:, 2], r[:, 3], t2)
        return theta1, theta2, s

    def classify(self, x: torch.Tensor, theta1: torch.Tensor, theta2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        crops = affine_crops(torch.cat([x, x]), torch.cat([theta1, theta2]), self.crop_size)  # [crop1 | crop2]
        z = self.head(self.body(crops))
        return z[:b], z[b:]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = _rgb(x)
        theta1, theta2, scales = self.thetas(x)
        z1, z2 = self.classify(x, theta1, theta2)
        return {"logits": z1, "logits2": z2, "scales": scales, "theta1": theta1, "theta2": theta2}


class RandomCropNet(RegSTN):
    """CNN + two random crops (no localisation network); centred crops in eval mode."""

    def __init__(self, spec: FrameModelSpec) -> None:
        nn.Module.__init__(self)
        self.crop_size = spec.crop_size
        self.body = ConvBody(3, spec.width)
        self.head = ClassifierHead(self.body.out_channels, spec.width, spec.n_classes)

    def thetas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        zero = x.new_zeros(b)
        out = []
        for s in SCALE_PRIORS:
            if self.training:  # centre uniform so that the crop stays inside the frame
                t = (torch.rand(b, 2, device=x.device, dtype=x.dtype) * 2 - 1) * (1 - s)
            else:
                t = x.new_zeros(b, 2)
            out.append(_theta(zero + s, zero, zero, t))
        return out[0], out[1], x.new_zeros(b, 2)


class SingleSTN(nn.Module):
    """CNN+STN baseline: one unconstrained affine crop, no prior, no consistency."""

    def __init__(self, spec: FrameModelSpec) -> None:
        super().__init__()
        self.crop_size = spec.crop_size
        self.loc = Localisation(spec)
        self.affine = _head(spec.loc_hidden, 6, [0.5, 0.0, 0.2, 0.0, 0.5, 0.2])
        self.body = ConvBody(3, spec.width)
        self.head = ClassifierHead(self.body.out_channels, spec.width, spec.n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = _rgb(x)
        theta = self.affine(self.loc(x)).view(-1, 2, 3)
        z = self.head(self.body(affine_crops(x, theta, self.crop_size)))
        return {"logits": z, "scales": z.new_zeros(x.shape[0], 2), "theta1": theta,
                "theta2": _identity_theta(x.shape[0], z)}


FRAME_MODELS: dict[str, Callable[[FrameModelSpec], nn.Module]] = {
    "reg_stn": RegSTN,
    "stn": SingleSTN,
    "random_crop": RandomCropNet,
    "cnn": CNNClassifier,
    "resnet18": ResNet18Classifier,
    "mobilenet_v2": MobileNetV2Frame,
}
TWO_CROP_ARCHS = ("reg_stn", "random_crop")


def build_frame_model(spec: FrameModelSpec) -> nn.Module:
    """Instantiate ``spec.arch`` from :data:`FRAME_MODELS`."""
    if spec.arch not in FRAME_MODELS:
        raise ValueError(f"frame model '{spec.arch}' unknown; valid names: {', '.join(sorted(FRAME_MODELS))}")
    if spec.crop_size > spec.input_size:
        raise ValueError(f"crop_size {spec.crop_size} is larger than input_size {spec.input_size}")
    model = FRAME_MODELS[spec.arch](spec)
    return model.to(memory_format=torch.channels_last) if spec.channels_last else model


@dataclass(frozen=True)
class FrameLossSpec:
    """Loss settings: ``loss`` sord | ce on crop 1; consistency for two-crop models; prior in learned mode."""

    loss: str = "sord"
    sord_m: float = 2.0
    sord_zero_gap: float = 0.0
    lambda_cons: float = 1.0
    lambda_stn: float = 1.0


def frame_loss(out: dict[str, torch.Tensor], labels: torch.Tensor | None, spec: FrameLossSpec, arch: str,
               stn_mode: str = "learned", main: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss of METHODS §1.3 for ``arch`` and its parts (detached, for logging).

    ``main`` replaces the SORD/CE term on frame ``labels`` (video supervision passes its MIL loss and no
    labels); the consistency and scale-prior terms apply either way."""
    z1 = out["logits"]
    if main is None:
        main = sord_loss(z1, labels, spec.sord_m, spec.sord_zero_gap) if spec.loss == "sord" else F.cross_entropy(z1, labels)
        logs = {spec.loss: main.detach()}
    else:
        logs = {"mil": main.detach()}
    total = main
    if arch in TWO_CROP_ARCHS and spec.lambda_cons > 0:
        cons = consistency_loss(z1, out["logits2"], spec.lambda_cons)
        total = total + cons
        logs["cons"] = cons.detach()
    if arch == "reg_stn" and stn_mode == "learned" and spec.lambda_stn > 0:
        prior = scale_prior(out["scales"], SCALE_PRIORS, spec.lambda_stn)
        total = total + prior
        logs["prior"] = prior.detach()
    if labels is not None:
        with torch.no_grad():
            logs["acc"] = (z1.argmax(1) == labels).float().mean()
    return total, logs


# the validated params section -> the specs (train_frame, and rebuilding a model from its meta.json)
def model_spec(sec: FrameModelSection) -> FrameModelSpec:
    return FrameModelSpec(arch=sec.arch, stn_mode=sec.stn_mode, crop2_translation=sec.crop2_translation,
                          input_size=sec.input_size, crop_size=sec.crop_size, width=sec.width,
                          loc_input_size=sec.loc_input_size, pretrained=sec.pretrained,
                          train_blocks=sec.train_blocks, feature_stn=sec.feature_stn)


def loss_spec(sec: FrameModelSection) -> FrameLossSpec:
    return FrameLossSpec(loss=sec.loss, sord_m=sec.sord_m, sord_zero_gap=sec.sord_zero_gap,
                         lambda_cons=sec.lambda_cons, lambda_stn=sec.lambda_stn)
