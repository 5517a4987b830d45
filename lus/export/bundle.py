"""On-disk format of the exported models and its loader (the side ``lus predict`` uses).

Layout of an export folder (default ``models/export/``)::

    manifest.json                      what predict needs to rebuild and preprocess (see package.py)
    frame/fold_<k>.pt                  frame severity model of fold k (state dict)
    aggregator.json                    uninorm neutral elements per fold and their mean
    segmentation/<arch>/fold_<k>.pt    segmentation models, only when the data source had masks
    cnn_lstm/fold_<k>.pt               CNN-LSTM head of fold k (its feature_mean/feature_std buffers are the
                                       standardisation statistics of fold k's training videos)
    cnn_lstm/backbone_*.pt             the CNN-LSTM's torchvision backbone, only when it is not ImageNet
                                       (weights ``none`` or a user file); the ``frame_model`` backbone of fold k
                                       is ``frame/fold_<k>.pt``, ImageNet weights come from the offline file

Every ``.pt`` file is a plain state dict, loaded with ``torch.load(weights_only=True)`` (no code runs
on load). Models are rebuilt from the settings in ``manifest.json``, never from ``params.yaml``, so a
package works without the project's pipeline outputs.

Ensembles: the frame models of all folds are averaged on their softmax (and their crop transforms,
for drawing) unless one fold is chosen; the aggregator then uses the mean of the folds' neutral
elements (fold k's own with ``fold=k``); segmentation averages the softmax of every exported
architecture and fold, then applies the boosted argmax of the segmentation_ensemble stage; the
CNN-LSTM averages the softmax of its fold models (each with its own backbone), or fold k's alone.

Every part is optional: a package of a data source without severity labels (POCUS) holds only the
CNN-LSTM, and a package made before the CNN-LSTM was exported (no ``cnn_lstm`` entry) only the
severity parts.
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


def cnn_lstm_file(fold: int) -> str:
    return f"cnn_lstm/fold_{fold}.pt"


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


def build_cnn_lstm_head(head: dict[str, Any], feature_dim: int, n_classes: int) -> nn.Module:
    """A CNN-LSTM head from the manifest's ``cnn_lstm.head`` (random init, then the file's weights)."""
    from lus.models.cnn_lstm import CnnLstmHead

    return CnnLstmHead(int(feature_dim), int(n_classes), int(head["hidden"]), float(head["input_dropout"]),
                       [int(w) for w in head["fc"]])


def build_cnn_lstm_backbone(root: Path, cnn: dict[str, Any], fold: int, frame_spec: dict[str, Any] | None
                            ) -> tuple[str, nn.Module]:
    """``(id, FeatureBackbone)`` of fold ``fold``'s CNN-LSTM, rebuilt as train_cnn_lstm built it.

    ``id`` names the weights, so folds sharing a backbone (ImageNet) share its features.
    """
    from lus.models.backbones import build_backbone, frame_net_backbone

    bb = cnn["backbone"]
    entry = bb["per_fold"][str(fold)]
    if bb["name"] == "frame_model":
        if frame_spec is None:
            raise ValueError(f"{root / MANIFEST}: the CNN-LSTM reads fold {fold}'s frame model, which this export lacks")
        net = build_frame_net(frame_spec)
        net.load_state_dict(load_state(root / entry["file"]))
        return entry["file"], frame_net_backbone(net, int(frame_spec["input_size"]), entry["key_info"])
    if entry.get("file"):  # random-init or user weights, stored in the package
        backbone = build_backbone(bb["name"], "none", int(bb["input_size"]))
        backbone.net.load_state_dict(load_state(root / entry["file"]))
        return entry["file"], backbone
    backbone = build_backbone(bb["name"], "imagenet", int(bb["input_size"]))
    want, got = entry["key_info"].get("weights"), backbone.key_info.get("weights")
    if got != want:
        raise ValueError(f"{root / MANIFEST}: the CNN-LSTM of fold {fold} was trained on {bb['name']} weights {want}, "
                         f"but this machine's ImageNet file gives {got}; install the same weights file")
    return str(want), backbone


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
class CnnLstmEnsemble:
    """CNN-LSTM fold models (backbone + head): per video, the mean of the folds' softmax."""

    heads: list[nn.Module]
    folds: list[int]
    backbone_ids: list[str]               # per fold: which entry of ``backbones`` it reads
    backbones: dict[str, nn.Module]       # FeatureBackbone by weights id
    classes: list[str]
    target: str
    seq_len: int
    feature_batch: int

    def __call__(self, frames: np.ndarray) -> dict[str, Any]:
        """``frames`` uint8 (seq_len, h, w), the sampled frames preprocessed like the shards ->
        ``probs`` (n_classes,) fold mean and ``per_fold`` {fold: probs}.

        Same steps as train_cnn_lstm: backbone features (``FeatureBackbone.features``), then the head,
        which standardises them with its stored training statistics (``predict_probs``).
        """
        from lus.models.cnn_lstm import predict_probs

        feats = {bid: torch.from_numpy(self.backbones[bid].features(frames, self.feature_batch))[None]
                 for bid in dict.fromkeys(self.backbone_ids)}
        per_fold = {k: predict_probs(head, feats[bid])[0]
                    for k, head, bid in zip(self.folds, self.heads, self.backbone_ids)}
        probs = np.mean(list(per_fold.values()), axis=0, dtype=np.float64)
        return {"probs": probs, "per_fold": per_fold}


@dataclass
class Bundle:
    """A loaded export: preprocessing settings and whichever parts the package holds (at least one of
    the frame models, with their aggregator, and the CNN-LSTM)."""

    root: Path
    manifest: dict[str, Any]
    extract: ExtractSection
    frame: FrameEnsemble | None
    neutral: list[float] | None
    tnorm: str | None
    off_diagonal: str | None
    segmentation: SegmentationEnsemble | None
    cnn_lstm: CnnLstmEnsemble | None = None

    @property
    def description(self) -> str:
        folds = (self.frame or self.cnn_lstm).folds  # type: ignore[union-attr]
        if len(folds) == 1:
            return f"fold {folds[0]} model"
        return f"fold ensemble (mean softmax of folds {', '.join(map(str, folds))})"

    @property
    def missing_cnn_lstm(self) -> str:
        """Why there is no diagnosis ('' when the package has the CNN-LSTM)."""
        if self.cnn_lstm is not None:
            return ""
        return (self.manifest.get("cnn_lstm") or {}).get("reason", "the package predates CNN-LSTM export")


def read_manifest(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root} (make it with: dvc repro export)")
    manifest = read_json(root / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{root / MANIFEST}: not a lus model export (expected format {FORMAT!r}, "
                         f"got {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    return manifest


def _choose_folds(available: Sequence[int], fold: int | None, root: Path, what: str = "frame models") -> list[int]:
    if fold is None:
        return list(available)
    if fold not in available:
        raise ValueError(f"--fold {fold}: {root} holds {what} of folds {', '.join(map(str, available))}")
    return [fold]


def load_cnn_lstm(root: Path, manifest: dict[str, Any], fold: int | None, device: torch.device
                  ) -> CnnLstmEnsemble | None:
    """The package's CNN-LSTM (fold ensemble, or fold ``fold``), or None when it has none."""
    cnn = manifest.get("cnn_lstm") or {}
    if not cnn.get("applicable", 0):
        return None
    folds = _choose_folds([int(k) for k in cnn["folds"]], fold, root, "CNN-LSTM models")
    frame = manifest.get("frame_model") or {}
    frame_spec = frame.get("spec") if frame.get("applicable", 0) else None
    heads, ids, backbones = [], [], {}
    for k in folds:
        bid, backbone = build_cnn_lstm_backbone(root, cnn, k, frame_spec)
        backbones.setdefault(bid, backbone.to(device))
        head = build_cnn_lstm_head(cnn["head"], cnn["backbone"]["feature_dim"], len(cnn["classes"]))
        head.load_state_dict(load_state(root / cnn_lstm_file(k)))
        heads.append(head.to(device).eval())
        ids.append(bid)
    return CnnLstmEnsemble(heads, folds, ids, backbones, list(cnn["classes"]), str(cnn["target"]),
                           int(cnn["seq_len"]), int(cnn["feature_batch"]))


def load_bundle(root: str | Path, fold: int | None = None, device: str | torch.device = "cpu",
                with_segmentation: bool = True) -> Bundle:
    """Load an export folder; ``fold=None`` = the fold ensembles, else fold ``fold``'s models and neutral elements.

    Parts the package lacks are None; a package with neither frame models nor a CNN-LSTM is refused.
    """
    root = Path(root)
    manifest = read_manifest(root)
    device = torch.device(device)
    fm = manifest["frame_model"]
    cnn_lstm = load_cnn_lstm(root, manifest, fold, device)
    frame, neutral, tnorm, off_diagonal = None, None, None, None
    if fm.get("applicable", 0):
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
        neutral = [float(v) for v in (agg["neutral"] if fold is None else agg["neutral_per_fold"][str(fold)])]
        tnorm, off_diagonal = agg["tnorm"], agg["off_diagonal"]
    elif cnn_lstm is None:
        raise ValueError(f"{root}: no frame severity model in this export ({fm.get('reason', 'not applicable')}) "
                         "and no CNN-LSTM: nothing to predict with")

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
    return Bundle(root, manifest, ExtractSection.from_dict(manifest["extract"]), frame, neutral, tnorm, off_diagonal,
                  seg, cnn_lstm)
