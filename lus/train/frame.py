"""Frame-model training and inference on in-memory frames (used by stages train_frame / predict_frames).

:func:`train_frame_fold` trains one fold with :func:`lus.train.loop.fit`: training rows = frames of the
fold's *train* patients, epoch selection on frames of its *val* patients (accuracy of crop 1 against the
training target: frame label, else weak video label). Test patients are never loaded by the stage.
:func:`predict` returns crop-1 softmax and both crop transforms for any frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from lus.config.frame_model import FrameModelSection
from lus.data.augment import FrameAugment
from lus.data.frame_dataset import FrameDataset, FrameTable, to_input
from lus.data.frame_features import frame_table_features
from lus.data.video_sampling import FeatureCache
from lus.metrics.classification import macro_f1
from lus.models.backbones import build_backbone
from lus.models.frame_models import build_frame_model, frame_loss, loss_spec, model_spec
from lus.models.mil import VideoPooling, mil_loss
from lus.models.pretrained_frame import N_FEATURE_MODULES, MobileNetV2Frame, n_frozen_modules
from lus.io import write_torch
from lus.train.distributed import dist_env
from lus.train.live import EpochLog
from lus.train.loop import FitResult, TrainConfig, fit, unwrap


def train_config(sec: FrameModelSection, seed: int, progress: bool = True) -> TrainConfig:
    return TrainConfig(epochs=sec.epochs, batch_size=sec.batch_size, optimizer="adam", lr=sec.lr,
                       weight_decay=sec.weight_decay, scheduler=sec.scheduler, milestones=tuple(sec.milestones),
                       gamma=sec.gamma, warmup_epochs=sec.warmup_epochs, final_lr_ratio=sec.final_lr_ratio,
                       ema_decay=sec.ema_decay, sampler=sec.sampler, drop_last=True, select_metric="accuracy",
                       select_mode="max", seed=seed, device=sec.device, progress=progress)


def augment_config(sec: FrameModelSection) -> FrameAugment | None:
    return FrameAugment(rotation=sec.rotation_deg, crop_scale=(sec.crop_scale_min, 1.0)) if sec.augment else None


@torch.no_grad()
def predict(model: nn.Module, images_u8: torch.Tensor, batch_size: int = 256,
            device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Crop-1 probabilities (N, C) and flattened crop maps ``theta1``/``theta2`` (N, 6) for uint8 frames (N, S, S)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    probs, t1, t2 = [], [], []
    for start in range(0, len(images_u8), batch_size):
        x = to_input(images_u8[start:start + batch_size]).to(device)
        out = model(x)
        probs.append(torch.softmax(out["logits"].float(), dim=1).cpu())
        t1.append(out["theta1"].reshape(len(x), 6).float().cpu())
        t2.append(out["theta2"].reshape(len(x), 6).float().cpu())
    model.train(was_training)
    if not probs:
        return {"probs": np.zeros((0, 4), np.float32), "theta1": np.zeros((0, 6), np.float32),
                "theta2": np.zeros((0, 6), np.float32)}
    return {"probs": torch.cat(probs).numpy(), "theta1": torch.cat(t1).numpy(), "theta2": torch.cat(t2).numpy()}


def make_evaluate_fn(images_u8: torch.Tensor, targets: np.ndarray, batch_size: int,
                     on_call: Callable[[], None] | None = None) -> Callable[[nn.Module], dict[str, float]]:
    """Validation accuracy and macro-F1 of crop 1 on the given (validation) frames."""
    keep = np.asarray(targets) >= 0
    images_u8, y = images_u8[torch.from_numpy(keep)], np.asarray(targets)[keep]

    def evaluate(model: nn.Module) -> dict[str, float]:
        if on_call is not None:
            on_call()
        device = next(model.parameters()).device
        pred = predict(model, images_u8, batch_size, device)["probs"].argmax(1)
        return {"accuracy": float((pred == y).mean()) if len(y) else float("nan"),
                "f1_macro": macro_f1(y, pred) if len(y) else float("nan")}

    return evaluate


@dataclass
class FoldFrames:
    """The frames one fold trains on: a table of its *train* and *val* patients' frames and the rows of each.

    Row targets are ``table.targets`` (frame label, else the weak video label; -1 = none); the target of video
    supervision is the video's score (``table.weak``)."""

    table: FrameTable
    train_rows: np.ndarray
    val_rows: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        return self.table.targets

    @property
    def video_targets(self) -> np.ndarray:
        """(V,) the score of every video of the table (-1 = none)."""
        out = np.full(len(self.table.video_ids), -1, np.int64)
        out[self.table.video] = self.table.weak
        return out


class RowDataset:
    """Rows of ``inputs`` (cached prefix features: no image augmentation; ``hflip`` mirrors spatial maps)."""

    def __init__(self, inputs: torch.Tensor, targets: np.ndarray, hflip: bool = False) -> None:
        self.inputs, self.hflip = inputs, hflip and inputs.dim() == 4
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.inputs[idx].float()
        if self.hflip:   # the map of a mirrored frame is close to the mirrored map (convolutions commute with it)
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rows(idx), self.targets[idx]


class VideoBags:
    """Video-supervision items: video i = a bag of up to ``bag_size`` of its rows (random, in temporal order).

    ``get_batch`` returns ``(inputs of all bags' rows, bag lengths, video targets)``; ``rows(idx)`` is the
    row source (a :class:`RowDataset` or :class:`FrameDataset` ``get_batch``'s input part)."""

    def __init__(self, rows_of_video: list[np.ndarray], targets: np.ndarray, rows: Callable[[torch.Tensor], torch.Tensor],
                 bag_size: int) -> None:
        self.rows_of_video = [torch.as_tensor(r, dtype=torch.long) for r in rows_of_video]
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        self.rows, self.bag_size = rows, bag_size

    def __len__(self) -> int:
        return len(self.targets)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        picked = []
        for v in idx.tolist():
            r = self.rows_of_video[v]
            if self.bag_size and len(r) > self.bag_size:
                r = r[torch.randperm(len(r))[:self.bag_size].sort().values]
            picked.append(r)
        lengths = torch.tensor([len(r) for r in picked], dtype=torch.long)
        return self.rows(torch.cat(picked)), lengths, self.targets[idx]


class PrefixTrainable(nn.Module):
    """The trainable part of a :class:`MobileNetV2Frame` (its modules, shared) on cached prefix inputs."""

    def __init__(self, net: MobileNetV2Frame) -> None:
        super().__init__()
        self.net = net

    def forward(self, prefix: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net.suffix(prefix)}


def prefix_extractor(net: MobileNetV2Frame, input_size: int, batch: int
                     ) -> tuple[str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """(cache key, its description, extract) of the frozen prefix of ``net`` for uint8 frames at ``input_size``.

    ``extract`` gives (n, 1280) pooled features of a frozen backbone, else (n, C * h * w) flattened maps. A frozen
    ImageNet backbone goes through :func:`lus.models.backbones.build_backbone`, i.e. the very extractor (key and
    arithmetic) of the linear probe and the CNN-LSTM: the same frames then share cache entries."""
    device = next(net.parameters()).device
    if net.n_frozen == N_FEATURE_MODULES and net.weights_source.startswith("imagenet"):
        backbone = build_backbone("mobilenet_v2", "imagenet", input_size).to(device)
        return backbone.key, backbone.key_info, lambda frames: backbone.features(frames, batch)
    key_info = net.cache_key(input_size)
    if not net.weights_source.startswith("imagenet"):   # random or file weights: key them by their values
        digest = hashlib.sha1()
        for name, t in net.features[:net.n_frozen].state_dict().items():
            digest.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
        key_info["frozen_sha1"] = digest.hexdigest()
    key = hashlib.sha256(json.dumps(key_info, sort_keys=True).encode()).hexdigest()[:16]

    def extract(frames: np.ndarray) -> np.ndarray:
        net.eval()
        out = [net.prefix(to_input(torch.from_numpy(frames[i:i + batch])).to(device)).float().flatten(1).cpu().numpy()
               for i in range(0, len(frames), batch)]
        return np.concatenate(out)

    return key, key_info, extract


def prefix_features(net: MobileNetV2Frame, table: FrameTable, cache_dir: str | Path | None, batch: int,
                    progress: bool = False) -> torch.Tensor:
    """The frozen prefix of every row of ``table``, computed once per video through the feature cache
    (:class:`lus.data.video_sampling.FeatureCache`: keyed by backbone, weights, input size, preprocessing and
    cut point, and guarded by a hash of each video's frames). (N, 1280) or spatial maps (N, C, h, w)."""
    size = table.images.shape[-1]
    key, key_info, extract = prefix_extractor(net, size, batch)
    cache = FeatureCache(cache_dir, key, {"what": "frozen per-frame features", **key_info}) if cache_dir else None
    feats = torch.from_numpy(frame_table_features(table, extract, cache, progress=progress))
    if net.n_frozen == N_FEATURE_MODULES:
        return feats
    shape = net.prefix(torch.zeros(1, 1, size, size, device=next(net.parameters()).device)).shape[1:]
    return feats.reshape(len(feats), *shape)


def video_rows(data: FoldFrames, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Positions in ``rows`` of each video's frames, for the videos of ``rows`` with a video target."""
    video, targets = data.table.video[rows], data.video_targets
    vids = [v for v in np.unique(video) if targets[v] >= 0]
    return [np.flatnonzero(video == v) for v in vids], targets[np.asarray(vids, np.int64)]


def train_frame_fold(train_images: torch.Tensor, train_targets: np.ndarray, val_images: torch.Tensor,
                     val_targets: np.ndarray, sec: FrameModelSection, seed: int, out_dir: str | Path,
                     fingerprint: Mapping[str, Any] | None = None, resume: bool = True,
                     progress: bool = True, log: EpochLog | None = None,
                     on_validation: Callable[[nn.Module], None] | None = None,
                     on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> tuple[nn.Module, FitResult]:
    """Train one fold with frame supervision on images; frames are uint8 (N, S, S) at ``sec.input_size``,
    targets int 0..3 (-1 = unusable). :func:`train_frame_model` covers every arch and supervision.

    ``log``: per-epoch metrics for DVC's tools (:mod:`lus.train.live`). ``on_validation(model)`` runs after
    each epoch's validation, on the weights validation saw (EMA), in eval mode without gradients; it must not
    draw random numbers. ``on_epoch_end(epoch, row)`` runs after the epoch's checkpoint (1-based epoch)."""
    torch.manual_seed(seed)
    keep = np.asarray(train_targets) >= 0
    if not keep.any():
        raise ValueError("train_frame: no training frame has a frame label or a video score")
    spec, lspec = model_spec(sec), loss_spec(sec)
    model = build_frame_model(spec)
    data = FrameDataset(train_images[torch.from_numpy(keep)], np.asarray(train_targets)[keep], augment_config(sec))

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        return frame_loss(m(x), y, lspec, spec.arch, spec.stn_mode)

    evaluate_fn = None
    if len(val_images) and (np.asarray(val_targets) >= 0).any():
        validate = make_evaluate_fn(val_images, val_targets, sec.eval_batch_size)

        def evaluate_fn(m: nn.Module) -> dict[str, float]:
            scores = validate(m)
            if on_validation is not None:
                on_validation(m)
            return scores

    result = fit(model, data, loss_fn, out_dir, train_config(sec, seed, progress), labels=data.targets.numpy(),
                 evaluate_fn=evaluate_fn, fingerprint=fingerprint, resume=resume, log=log, on_epoch_end=on_epoch_end)
    return model, result


def supervision_label(sec: FrameModelSection, n_frame_labels: int, n_rows: int) -> str:
    """What the frame model learned from, in words (meta.json ``label_source``; the report prints it)."""
    if sec.supervision == "video":
        return f"video scores (multiple-instance learning, {sec.video_pooling} pooling of the frame probabilities)"
    return ("frame labels" if n_frame_labels == n_rows else "weak video labels" if n_frame_labels == 0
            else "frame labels, weak video labels where missing")


def uses_prefix_cache(sec: FrameModelSection) -> bool:
    """Does this frame model train on cached frozen-prefix features (no image augmentation)?"""
    return sec.arch == "mobilenet_v2" and n_frozen_modules(sec.train_blocks) > 0


def train_frame_model(data: FoldFrames, sec: FrameModelSection, seed: int, out_dir: str | Path,
                      cache_dir: str | Path | None = None, fingerprint: Mapping[str, Any] | None = None,
                      resume: bool = True, progress: bool = True, log: EpochLog | None = None,
                      on_validation: Callable[[nn.Module], None] | None = None,
                      on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> tuple[nn.Module, FitResult]:
    """Train one fold's frame model for any arch and ``sec.supervision``; returns the full model (images in).

    Frame supervision on images is :func:`train_frame_fold`. Otherwise the model trains either on images
    (augmented as there) or, for a MobileNetV2 with frozen modules, on their cached output
    (:func:`prefix_features`; mirrored maps as the only augmentation). Video supervision draws bags of a
    video's frames (``bag_size``; ``batch_size // bag_size`` videos per step), pools their probabilities
    (:class:`lus.models.mil.VideoPooling`) and puts SORD on the video score; the epoch is then chosen by
    video accuracy of the validation patients' videos."""
    tr, va = data.train_rows, data.val_rows
    if sec.supervision == "frame" and not uses_prefix_cache(sec):
        images = data.table.images
        return train_frame_fold(images[torch.from_numpy(tr)], data.targets[tr], images[torch.from_numpy(va)],
                                data.targets[va], sec, seed, out_dir, fingerprint=fingerprint, resume=resume,
                                progress=progress, log=log, on_validation=on_validation, on_epoch_end=on_epoch_end)
    torch.manual_seed(seed)
    spec, lspec = model_spec(sec), loss_spec(sec)
    model = build_frame_model(spec)
    if uses_prefix_cache(sec):
        inputs = prefix_features(model, data.table, cache_dir, sec.eval_batch_size, progress)
        trainable: nn.Module = PrefixTrainable(model)
        train_src, val_src = RowDataset(inputs[tr], data.targets[tr], sec.augment), RowDataset(inputs[va], data.targets[va])
        arch = "mobilenet_v2"
    else:
        trainable = model
        train_src = FrameDataset(data.table.images[torch.from_numpy(tr)], data.targets[tr], augment_config(sec))
        val_src = FrameDataset(data.table.images[torch.from_numpy(va)], data.targets[va])
        arch = spec.arch
    # video supervision trains through its pooling; frame supervision still reports the validation videos'
    # accuracy under the mean (argmax_mean) rule
    pooling = VideoPooling(sec.video_pooling if sec.supervision == "video" else "mean")
    if sec.supervision == "video":
        trainable = MILTrainable(trainable, pooling)
        bags_tr, y_tr = video_rows(data, tr)
        if not bags_tr:
            raise ValueError("train_frame: supervision video needs video scores; no training video has one")
        dataset: Any = VideoBags(bags_tr, y_tr, lambda idx: train_src.get_batch(idx)[0], sec.bag_size)
        labels = y_tr
        per_step = max(1, sec.batch_size // max(1, sec.bag_size or int(np.median([len(b) for b in bags_tr]))))

        def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
            x, lengths, y = batch
            out = m(x)
            main, video = mil_loss(out["logits"], lengths, y, unwrap(m).pooling, lspec.sord_m, lspec.sord_zero_gap)
            total, logs = frame_loss(out, None, lspec, arch, spec.stn_mode, main=main)
            with torch.no_grad():
                logs["video_acc"] = (video.argmax(1) == y).float().mean()
            return total, logs
    else:
        keep = data.targets[tr] >= 0
        if not keep.any():
            raise ValueError("train_frame: no training frame has a frame label or a video score")
        dataset = RowDataset(train_src.inputs[torch.from_numpy(keep)], data.targets[tr][keep], sec.augment) \
            if isinstance(train_src, RowDataset) else train_src
        labels, per_step = dataset.targets.numpy(), sec.batch_size

        def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
            x, y = batch
            return frame_loss(m(x), y, lspec, arch, spec.stn_mode)

    val_bags, val_y = video_rows(data, va)
    val_inputs = val_src.inputs if isinstance(val_src, RowDataset) else val_src.images

    def evaluate_fn(m: nn.Module) -> dict[str, float]:
        frame_model = m.inner if isinstance(m, MILTrainable) else m
        probs = torch.cat([torch.softmax(frame_model(_batch_input(val_inputs[i:i + sec.eval_batch_size]))["logits"].float(), 1)
                           for i in range(0, len(val_inputs), sec.eval_batch_size)]) if len(val_inputs) else torch.zeros(0, 4)
        scores: dict[str, float] = {}
        y = data.targets[va]
        if (y >= 0).any():
            pred = probs.argmax(1).numpy()
            scores.update(accuracy=float((pred[y >= 0] == y[y >= 0]).mean()), f1_macro=macro_f1(y[y >= 0], pred[y >= 0]))
        if val_bags:
            order = torch.from_numpy(np.concatenate(val_bags))
            lengths = torch.tensor([len(b) for b in val_bags])
            scores["video_accuracy"] = float((pooling(probs[order], lengths).argmax(1).numpy() == val_y).mean())
        if on_validation is not None:
            on_validation(model)
        return scores

    config = train_config(sec, seed, progress)
    config = dataclasses.replace(config, batch_size=per_step, drop_last=len(dataset) >= per_step,
                                 select_metric="video_accuracy" if sec.supervision == "video" else "accuracy")
    has_val = len(va) and (sec.supervision == "frame" and (data.targets[va] >= 0).any() or val_bags)
    result = fit(trainable, dataset, loss_fn, out_dir, config, labels=labels,
                 evaluate_fn=evaluate_fn if has_val else None, fingerprint=fingerprint, resume=resume, log=log,
                 on_epoch_end=on_epoch_end)
    if trainable is not model and dist_env().is_main:
        # fit saved the wrapper (trainable part + pooling); model.pt is the whole frame model, images in
        write_torch(Path(out_dir) / config.best_name, model.state_dict())
    return model, result


def _batch_input(x: torch.Tensor) -> torch.Tensor:
    """Validation rows as model input: uint8 frames -> [0, 1] (images), cached features as they are."""
    return to_input(x) if x.dtype == torch.uint8 else x.float()


class MILTrainable(nn.Module):
    """A frame model (or its trainable part) with the video pooling, trained together under video supervision."""

    def __init__(self, inner: nn.Module, pooling: VideoPooling) -> None:
        super().__init__()
        self.inner, self.pooling = inner, pooling

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.inner(x)
