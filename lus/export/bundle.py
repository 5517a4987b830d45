"""On-disk format of the exported models and its loader (the side ``lus predict`` uses).

Layout of an export folder (default ``models/export/``)::

    manifest.json                      what predict needs to rebuild and preprocess (see package.py)
    frame/fold_<k>.pt                  frame severity model of fold k (state dict)
    aggregator.json                    uninorm neutral elements per fold and their mean
    segmentation/<arch>/fold_<k>.pt    segmentation models, only when the data source had masks

Every ``.pt`` file is a plain state dict, loaded with ``torch.load(weights_only=True)`` (no code runs
on load). Models are rebuilt from the settings in ``manifest.json``, never from ``params.yaml``, so a
package works without the project's pipeline outputs.

Ensembles: the frame models of all folds are averaged on their softmax (and their crop transforms,
for drawing) unless one fold is chosen; the aggregator then uses the mean of the folds' neutral
elements (fold k's own with ``fold=k``); segmentation averages the softmax of every exported
architecture and fold, then applies the boosted argmax of the segmentation_ensemble stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from lus.config.extract import ExtractSection
from lus.io import read_json
from lus.labels import SCORES

FORMAT = "lus-export/1"
MANIFEST = "manifest.json"
AGGREGATOR = "aggregator.json"
CLASSES = list(SCORES)


def frame_file(fold: int) -> str:
    return f"frame/fold_{fold}.pt"


def segmentation_file(arch: str, fold: int) -> str:
    return f"segmentation/{arch}/fold_{fold}.pt"


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``; ``weights_only`` refuses anything that is not tensors/containers."""
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: expected a non-empty state dict")
    return state


def build_frame_net(spec: dict[str, Any]) -> nn.Module:
    """A frame model from the manifest's ``frame_model.spec`` (never downloads: weights come from the file)."""
    from lus.models.frame_models import FrameModelSpec, build_frame_model

    return build_frame_model(FrameModelSpec(**{**spec, "pretrained": False}))


def build_segmentation_net(arch: str, build: dict[str, Any]) -> nn.Module:
    """A segmentation model from the manifest's ``segmentation.build`` (random init, then the file's weights)."""
    from lus.models.segmentation import build_segmentation_model

    return build_segmentation_model(arch, build["encoder"], build["encoder_depth"], build["decoder_channels"], "none",
                                    build["aspp_rates"], build["aspp_dropout"])


@dataclass
class FrameEnsemble:
    """Frame severity models of one or more folds; probabilities and crop maps averaged over them."""

    models: list[nn.Module]
    folds: list[int]
    input_size: int
    device: torch.device
    batch_size: int = 256

    def __call__(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``frames`` uint8 (N, H, W) at the extraction size -> ``probs`` (N, 4), ``theta1``/``theta2`` (N, 6).

        Frames are resized to the model input exactly like ``load_frame_table`` does for the pipeline.
        """
        from lus.data.frame_dataset import resize_frames
        from lus.train.frame import predict

        images = resize_frames(frames, self.input_size)
        outs = [predict(m, images, self.batch_size, self.device) for m in self.models]
        if len(outs) == 1:
            return outs[0]
        return {key: np.mean([o[key] for o in outs], axis=0, dtype=np.float64).astype(np.float32)
                for key in ("probs", "theta1", "theta2")}


@dataclass
class SegmentationEnsemble:
    """Segmentation models (archs x folds): mean softmax, boosted argmax (METHODS §3)."""

    models: list[nn.Module]
    names: list[str]
    boost: list[float]
    device: torch.device

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) frames at the extraction size -> class labels uint8 (N, H, W), 0 = background."""
        from lus.metrics.segmentation import ensemble_labels
        from lus.models.segmentation import predict_probs

        return ensemble_labels([predict_probs(m, frames, self.device) for m in self.models], self.boost)


@dataclass
class Bundle:
    """A loaded export: preprocessing settings, frame models, aggregator and optional segmentation."""

    root: Path
    manifest: dict[str, Any]
    extract: ExtractSection
    frame: FrameEnsemble
    neutral: list[float]
    tnorm: str
    off_diagonal: str
    segmentation: SegmentationEnsemble | None

    @property
    def description(self) -> str:
        folds = self.frame.folds
        if len(folds) == 1:
            return f"fold {folds[0]} model"
        return f"fold ensemble (mean softmax of folds {', '.join(map(str, folds))})"


def read_manifest(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root} (make it with: dvc repro export)")
    manifest = read_json(root / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{root / MANIFEST}: not a lus model export (expected format {FORMAT!r}, "
                         f"got {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    return manifest


def _choose_folds(available: Sequence[int], fold: int | None, root: Path) -> list[int]:
    if fold is None:
        return list(available)
    if fold not in available:
        raise ValueError(f"--fold {fold}: {root} holds frame models of folds {', '.join(map(str, available))}")
    return [fold]


def load_bundle(root: str | Path, fold: int | None = None, device: str | torch.device = "cpu",
                with_segmentation: bool = True) -> Bundle:
    """Load an export folder; ``fold=None`` = the fold ensemble, else that fold's frame model and neutral elements."""
    root = Path(root)
    manifest = read_manifest(root)
    device = torch.device(device)
    fm = manifest["frame_model"]
    if not fm.get("applicable", 0):
        raise ValueError(f"{root}: no frame severity model in this export ({fm.get('reason', 'not applicable')})")
    folds = _choose_folds([int(k) for k in fm["folds"]], fold, root)
    models = []
    for k in folds:
        net = build_frame_net(fm["spec"])
        net.load_state_dict(load_state(root / frame_file(k)))
        models.append(net.to(device).eval())
    frame = FrameEnsemble(models, folds, int(fm["spec"]["input_size"]), device)

    agg = read_json(root / AGGREGATOR)
    if not agg.get("applicable", 0):
        raise ValueError(f"{root / AGGREGATOR}: no aggregator in this export ({agg.get('reason', 'not applicable')})")
    neutral = agg["neutral"] if fold is None else agg["neutral_per_fold"][str(fold)]

    seg = None
    sm = manifest.get("segmentation", {})
    if with_segmentation and sm.get("applicable", 0):
        nets, names = [], []
        for arch in sm["archs"]:
            for k in sm["folds"][arch]:
                net = build_segmentation_net(arch, sm["build"])
                net.load_state_dict(load_state(root / segmentation_file(arch, int(k))))
                nets.append(net.to(device).eval())
                names.append(f"{arch}/fold_{k}")
        seg = SegmentationEnsemble(nets, names, [float(b) for b in sm["boost"]], device)
    return Bundle(root, manifest, ExtractSection.from_dict(manifest["extract"]), frame,
                  [float(v) for v in neutral], agg["tnorm"], agg["off_diagonal"], seg)
