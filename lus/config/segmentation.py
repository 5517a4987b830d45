"""Params section ``segmentation``: the marker-segmentation benchmark (METHODS §3).

Defaults are sized for the fast default pipeline (64x64 shards, 2 CPU cores, ~2.5 min for all three
architectures). The paper's setting (Adam 1e-5, 200 x 100 steps of 32, full-size encoders) is a
``dvc exp run -S`` away: ``segmentation.lr=1e-5 segmentation.epochs=200 segmentation.steps_per_epoch=100 ...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

ARCH_NAMES = ("unet", "unetpp", "deeplabv3plus")
SELECTION_METRICS = ("dice_bin", "dice_cat", "pixel_acc", "loss")


@dataclass(frozen=True)
class SegmentationSection(Section):
    NAME = "segmentation"
    # Foreach list of the train_segmentation stage; the ensemble averages all of them.
    archs: list[str] = listof(list(ARCH_NAMES), ARCH_NAMES, "architectures to train (and to ensemble)")
    # Fold ids of data/splits/folds.json to train/test on; several give mean ± std over folds.
    folds: list[int] = listof([0], doc="folds of the shared split used (each trains one model per arch)")
    encoder: str = "mobilenet_v2"
    encoder_depth: int = bounded(3, 3, 5, "encoder stages used (3 = stride 8: fast on small frames)")
    encoder_weights: str = choice("none", ("none", "imagenet"),
                                  "none = random init, never touches the network; imagenet = offline file "
                                  "when one is installed (mobilenet_v2), else smp's download")
    # U-Net / U-Net++ decoder widths, one per encoder stage (deepest first); DeepLabv3+ uses the first.
    decoder_channels: list[int] = listof([64, 32, 16], doc="decoder widths, len == encoder_depth")
    aspp_rates: list[int] = listof([2, 4, 6], doc="DeepLabv3+ atrous rates (12, 24, 36 suit 200x260 input)")
    aspp_dropout: float = bounded(0.1, 0.0, 0.9, "DeepLabv3+ ASPP dropout (METHODS §3: 0.1)")
    epochs: int = bounded(6, 1, 10_000)
    steps_per_epoch: int = bounded(20, 1, 100_000, "batches per epoch (paper: 100)")
    batch_size: int = bounded(16, 1, 4096, "paper: 32")
    lr: float = bounded(2e-3, 0.0, 1.0, "Adam learning rate (paper: 1e-5 over 20,000 steps)")
    weight_decay: float = bounded(0.0, 0.0, 1.0)
    scheduler: str = choice("none", ("none", "cosine"), "per-epoch learning-rate schedule (paper: none)")
    augment: bool = True
    balanced_sampling: bool = True
    # Validation frames scored after every epoch (a fixed, seeded subset; 0 = all).
    max_val_frames: int = bounded(128, 0, 10**9)
    selection_metric: str = choice("dice_bin", SELECTION_METRICS, "validation metric that picks the epoch")
    boost: list[float] = listof([1.0, 1.0, 2.0, 2.0, 2.0], doc="ensemble class boost (METHODS §3)")
    n_overlays: int = bounded(6, 0, 64, "test frames drawn per overlay picture")
    output_dtype: str = choice("uint8", ("uint8", "float16"), "storage of the test softmax outputs")
    device: str = "auto"
    num_threads: int = bounded(1, 0, 256, "torch CPU threads; 0 = all cores (1: small nets gain little from more, and never oversubscribe)")

    def validate(self) -> None:
        if not self.archs:
            raise ParamsError("params key 'segmentation.archs': list at least one architecture")
        if len(set(self.archs)) != len(self.archs):
            raise ParamsError(f"params key 'segmentation.archs': duplicate names in {self.archs}")
        if not self.folds or any(k < 0 for k in self.folds) or len(set(self.folds)) != len(self.folds):
            raise ParamsError(f"params key 'segmentation.folds': expected distinct fold ids >= 0, got {self.folds}")
        if len(self.decoder_channels) != self.encoder_depth or any(c < 1 for c in self.decoder_channels):
            raise ParamsError(f"params key 'segmentation.decoder_channels': need {self.encoder_depth} positive widths "
                              f"(one per encoder stage, segmentation.encoder_depth), got {self.decoder_channels}")
        if len(self.boost) != 5 or any(b <= 0 for b in self.boost):
            raise ParamsError(f"params key 'segmentation.boost': need 5 positive factors, got {self.boost}")
        if not self.aspp_rates or any(r < 1 for r in self.aspp_rates):
            raise ParamsError(f"params key 'segmentation.aspp_rates': need positive rates, got {self.aspp_rates}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ParamsError(f"params key 'segmentation.device': expected auto, cpu or cuda[:N], got {self.device!r}")
