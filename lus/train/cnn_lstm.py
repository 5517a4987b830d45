"""Training the CNN-LSTM head (METHODS §4) on cached feature sequences.

Shared by the ``train_cnn_lstm`` stage (one call per patient-wise fold) and by
``scripts/nested_cv_cnn_lstm.py`` (one call per inner fold and candidate), so a configuration chosen by nested
cross-validation is trained exactly as the pipeline trains it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lus.config.cnn_lstm import CnnLstmSection
from lus.data.manifest import extracted_videos, resolve_target
from lus.data.video_sampling import FeatureCache, sequence_features
from lus.models.backbones import FeatureBackbone, build_backbone
from lus.models.cnn_lstm import CnnLstmHead
from lus.runtime import resolve_device, seed_everything
from lus.train.loop import FitResult, TrainConfig, fit


class SequenceDataset:
    """Cached feature sequences (V, T, D) and labels for the training loop's ``get_batch`` path."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]


def labelled_videos(frames: str | Path, manifest: str | Path, target: str) -> tuple[pd.DataFrame, str, list[str]]:
    """The extracted videos with a ``cnn_lstm.target`` label (column ``y``), in video-id order; the target
    column and its classes."""
    videos = extracted_videos(manifest, Path(frames) / "index.csv").sort_values("video_id").reset_index(drop=True)
    column, classes, y_all = resolve_target(videos, target)
    videos["y"] = y_all.to_numpy()
    return videos[videos["y"] >= 0].reset_index(drop=True), column, classes


def sequence_feature_tensor(cfg: CnnLstmSection, video_ids: list[str], frames: str | Path, cache_dir: str | Path, *,
                            frame_model_dir: str | Path | None = None, fold: int | None = None,
                            progress: bool = False) -> tuple[torch.Tensor, FeatureBackbone, FeatureCache]:
    """``(V, seq_len, D)`` frozen-backbone features of ``video_ids`` (``cfg.backbone`` on ``cfg.device``), read from
    or written to the feature cache under ``cache_dir``; also the backbone and the cache (hit/miss counts).
    ``frame_model_dir``/``fold``: the fold's own frame model for the ``frame_model`` backbone."""
    backbone = build_backbone(cfg.backbone, cfg.weights, cfg.input_size, frame_model_dir=frame_model_dir,
                              fold=fold).to(resolve_device(cfg.device))
    cache = FeatureCache(cache_dir, backbone.key, {"what": "frozen per-frame features", **backbone.key_info})
    feats = sequence_features(video_ids, frames, cfg.seq_len, lambda f: backbone.features(f, cfg.feature_batch),
                              cache, progress=progress)
    return torch.from_numpy(feats), backbone, cache


def fit_head(feats: torch.Tensor, y: torch.Tensor, rows: dict[str, np.ndarray], n_classes: int,
             cfg: CnnLstmSection, seed: int, out: str | Path, *, progress: bool = False, resume: bool = False,
             fingerprint: dict[str, Any] | None = None) -> tuple[CnnLstmHead, FitResult]:
    """Train a head on ``feats[rows['train']]`` (features standardised with those videos' statistics), the
    epoch chosen (and training stopped early) on ``rows['val']`` by ``cfg.selection_metric``; the returned
    model holds the chosen epoch's weights. ``out`` receives the training loop's files (curve, checkpoint)."""
    tr = torch.from_numpy(rows["train"])
    seed_everything(seed)
    model = CnnLstmHead(feats.shape[-1], n_classes, cfg.hidden, cfg.input_dropout, cfg.fc)
    if cfg.standardize:
        model.set_standardisation(feats[tr])
    evaluate_fn = None
    if len(rows["val"]):
        xv, yv = feats[torch.from_numpy(rows["val"])], y[torch.from_numpy(rows["val"])]

        def evaluate_fn(m: torch.nn.Module) -> dict[str, float]:
            logits = m(xv.to(next(m.parameters()).device)).cpu()
            return {"loss": float(F.cross_entropy(logits, yv)),
                    "accuracy": float((logits.argmax(1) == yv).float().mean())}

    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=min(cfg.batch_size, len(tr)), optimizer="adam", lr=cfg.lr,
                       weight_decay=cfg.weight_decay, sampler="balanced" if cfg.balanced_sampling else "shuffle",
                       select_metric=cfg.selection_metric if evaluate_fn else "score",
                       select_mode="min" if cfg.selection_metric == "loss" else "max", patience=cfg.patience,
                       seed=seed, device=cfg.device, progress=progress,
                       checkpoint_every=cfg.checkpoint_every)

    def loss_fn(m, batch):
        x, t = batch
        return F.cross_entropy(m(x), t), {}

    result = fit(model, SequenceDataset(feats[tr], y[tr]), loss_fn, out, tcfg, labels=y[tr].numpy(),
                 evaluate_fn=evaluate_fn, fingerprint=fingerprint or {}, resume=resume)
    return model, result

