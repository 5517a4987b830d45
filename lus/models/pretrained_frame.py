"""ImageNet MobileNetV2 as a frame severity classifier (frame-model arch ``mobilenet_v2``).

torchvision's MobileNetV2 ``features`` (19 modules: stem, 17 inverted-residual blocks, the final 1x1 conv to
1280 channels) followed by a head ``[global average pool -> dropout -> Linear(1280, 4)]``. The last
``train_blocks`` modules of ``features`` train, the others keep their ImageNet weights and BatchNorm
statistics (they stay in eval mode): 0 = frozen backbone (only the head trains), 19 or -1 = full fine-tuning.

Because the frozen part never changes, its output (the *prefix*) can be computed once per video and cached
(:mod:`lus.train.cached_frame`); training then runs only the trainable *suffix* and the head, which is what
makes fine-tuning on a 2-core CPU affordable. ``forward`` runs the whole network on frames, so prediction,
export and ``lus predict`` treat it like any other frame model.

``feature_stn``: a learned crop of the prefix map (:class:`FeatureMapSTN`) before the trainable blocks.

Input as every frame model: ``x`` (B, 1 or 3, S, S) in [0, 1]; grey is replicated to RGB and normalised with
the ImageNet mean and std inside. No crops: ``theta1``/``theta2`` are the identity (the full frame).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lus.models.imagenet import imagenet_normalise, torchvision_weights

N_FEATURE_MODULES = 19   # len(torchvision.models.mobilenet_v2().features)
FEATURE_DIM = 1280


def n_frozen_modules(train_blocks: int) -> int:
    """How many leading ``features`` modules stay frozen for ``train_blocks`` (-1 = all train)."""
    if train_blocks < 0 or train_blocks >= N_FEATURE_MODULES:
        return 0
    return N_FEATURE_MODULES - train_blocks


class MobileNetV2Frame(nn.Module):
    """MobileNetV2 features (ImageNet when ``spec.pretrained``) + a 4-way head; see the module docstring."""

    def __init__(self, spec: Any) -> None:   # lus.models.frame_models.FrameModelSpec (which imports this module)
        super().__init__()
        from torchvision.models import mobilenet_v2

        net = mobilenet_v2(weights=None)
        self.weights_source = "none"
        if spec.pretrained:
            state, self.weights_source = torchvision_weights("mobilenet_v2", "imagenet", "frame_model.pretrained")
            net.load_state_dict(state)
        self.features = net.features
        self.n_frozen = n_frozen_modules(spec.train_blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(spec.head_dropout),
                                  nn.Linear(FEATURE_DIM, spec.n_classes))
        for p in self.features[:self.n_frozen].parameters():
            p.requires_grad_(False)
        self.stn: FeatureMapSTN | None = None
        if spec.feature_stn:
            if not 0 < self.n_frozen < N_FEATURE_MODULES:
                raise ValueError("frame_model.feature_stn needs a spatial prefix map: train_blocks in 1..18")
            with torch.no_grad():
                channels = self.features[:self.n_frozen](torch.zeros(1, 3, 32, 32)).shape[1]
            self.stn = FeatureMapSTN(channels)

    def train(self, mode: bool = True) -> "MobileNetV2Frame":
        super().train(mode)
        self.features[:self.n_frozen].eval()   # frozen blocks keep their ImageNet BatchNorm statistics
        return self

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the frozen modules for frames ``x`` in [0, 1] (what the feature cache stores)."""
        with torch.no_grad():
            maps = self.features[:self.n_frozen](imagenet_normalise(x))
            return F.adaptive_avg_pool2d(maps, 1).flatten(1) if self.n_frozen == N_FEATURE_MODULES else maps

    def classify(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, crop map theta (B, 2, 3)) from prefix maps (B, C, h, w) or a pooled prefix (B, 1280)."""
        if maps.dim() == 2:
            maps = maps[:, :, None, None]
        if self.stn is not None:
            maps, theta = self.stn(maps)
        else:
            theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=maps.dtype,
                                 device=maps.device).expand(len(maps), 2, 3)
        return self.head(self.features[self.n_frozen:](maps)), theta

    def suffix(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits from the prefix (what trains on the feature cache)."""
        return self.classify(maps)[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z, theta = self.classify(self.prefix(x))   # the frozen part needs no gradient on any path
        return {"logits": z, "scales": z.new_zeros(len(z), 2), "theta1": theta, "theta2": theta}

    def cache_key(self, input_size: int) -> dict[str, Any]:
        """Identity of the prefix output: backbone, weights, input size, preprocessing and cut point.

        Frozen-backbone models (cut after the last module) use exactly the key of
        :func:`lus.models.backbones.build_backbone`'s ``mobilenet_v2`` at the same input size, so the
        frame head, the linear probe and the CNN-LSTM read one another's cached features."""
        key: dict[str, Any] = {"backbone": "mobilenet_v2", "weights": self.weights_source,
                               "input_size": int(input_size), "pre": "rgb-resize-imagenetnorm-v1"}
        if self.n_frozen < N_FEATURE_MODULES:
            key["prefix_modules"] = self.n_frozen   # spatial maps of the first n modules, not pooled features
        return key


class FeatureMapSTN(nn.Module):
    """A spatial transformer on the backbone's feature map (``frame_model.feature_stn``): Reg-STN's idea moved
    from pixels to the frozen prefix, so the crop costs nothing extra on the cache.

    A 1x1 conv + pooled linear layer predicts a scale ``s`` in [0.5, 1] and a translation that keeps the window
    inside the map; the window is resampled to the map's own size (bilinear) and fed to the trainable blocks. It
    starts at the centred 0.75 crop. The affine map is in normalised coordinates of the whole frame (the map
    covers it), so the localisation pictures draw it like Reg-STN's crop 1."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(hidden, 3))
        nn.init.zeros_(self.loc[-1].weight)
        nn.init.zeros_(self.loc[-1].bias)

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.loc(maps)
        s = 0.5 + 0.5 * torch.sigmoid(a[:, 0])
        t = torch.tanh(a[:, 1:]) * (1.0 - s)[:, None]
        zero = torch.zeros_like(s)
        theta = torch.stack([torch.stack([s, zero, t[:, 0]], 1), torch.stack([zero, s, t[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(maps.shape), align_corners=False)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False), theta
