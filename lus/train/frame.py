"""Frame-model training and inference on in-memory frames (used by stages train_frame / predict_frames).

:func:`train_frame_fold` trains one fold with :func:`lus.train.loop.fit`: training rows = frames of the
fold's *train* patients, epoch selection on frames of its *val* patients (accuracy of crop 1 against the
training target: frame label, else weak video label). Test patients are never loaded by the stage.
:func:`predict` returns crop-1 softmax and both crop transforms for any frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from lus.config.frame_model import FrameModelSection
from lus.data.augment import FrameAugment
from lus.data.frame_dataset import FrameDataset, to_input
from lus.metrics.classification import macro_f1
from lus.models.frame_models import build_frame_model, frame_loss, loss_spec, model_spec
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


def train_frame_fold(train_images: torch.Tensor, train_targets: np.ndarray, val_images: torch.Tensor,
                     val_targets: np.ndarray, sec: FrameModelSection, seed: int, out_dir: str | Path,
                     fingerprint: Mapping[str, Any] | None = None, resume: bool = True,
                     progress: bool = True, log: EpochLog | None = None,
                     on_validation: Callable[[nn.Module], None] | None = None,
                     on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> tuple[nn.Module, FitResult]:
    """Train one fold; frames are uint8 (N, S, S) at ``sec.input_size``, targets int 0..3 (-1 = unusable).

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
