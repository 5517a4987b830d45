"""Params section ``frame_model`` (stages train_frame and predict_frames; METHODS §1).

The defaults are a CPU preset (64 x 64 frames, 32 x 32 crops, a quarter of the paper's channels, a short
schedule with a higher learning rate) so that five folds train in a few minutes on two cores. The
paper's setting is in ``presets/paper_frame.yaml`` (224 input, 112 crops, full width, Adam 1e-4,
120 epochs, milestone 70, batch 64).
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

ARCHS = ("reg_stn", "stn", "random_crop", "cnn", "resnet18", "mobilenet_v2")
SUPERVISION = ("frame", "video")
VIDEO_POOLINGS = ("mean", "uninorm")


@dataclass(frozen=True)
class FrameModelSection(Section):
    NAME = "frame_model"

    arch: str = choice("reg_stn", ARCHS, "frame model (registry lus.models.frame_models.FRAME_MODELS)")
    stn_mode: str = choice("learned", ("learned", "fixed_scale"), "reg_stn: learned scales + shear, or fixed 0.5/0.75")
    crop2_translation: str = choice("shared", ("shared", "own"), "reg_stn: crop 2 reuses t1 (original) or its own t2")
    loss: str = choice("sord", ("sord", "ce"), "loss on crop-1 logits")
    sord_m: float = bounded(2.0, 0.0, None, "SORD multiplier m")
    sord_zero_gap: float = bounded(0.0, 0.0, None, "SORD: class 0 placed at -gap (0 = plain positions)")
    lambda_cons: float = bounded(1.0, 0.0, None, "weight of the crop-1/crop-2 logit consistency (two-crop archs)")
    lambda_stn: float = bounded(1.0, 0.0, None, "weight of the scale prior (reg_stn learned)")
    input_size: int = bounded(64, 32, 1024, "frame side in pixels (paper 224)")
    crop_size: int = bounded(32, 32, 1024, "STN crop side in pixels (paper 112)")
    loc_input_size: int = bounded(0, 0, 1024, "localisation-net input side; 0 = input_size (paper); smaller is cheaper")
    width: float = bounded(0.25, 0.05, 4.0, "channel multiplier of the CNN bodies (paper 1.0)")
    pretrained: bool = False
    train_blocks: int = bounded(0, -1, 19, "mobilenet_v2: trailing feature modules that train (0 = frozen backbone, "
                                          "head only; -1 or 19 = all: full fine-tuning, meant for CUDA)")
    feature_stn: bool = False
    supervision: str = choice("frame", SUPERVISION, "frame: SORD on frame labels (else the weak video label) | video: "
                                                    "multiple-instance learning, SORD on the pooled video score")
    video_pooling: str = choice("mean", VIDEO_POOLINGS, "supervision video: frame probabilities -> video (lus.models.mil)")
    bag_size: int = bounded(16, 0, 100000, "supervision video: frames drawn per video and step (0 = all its frames)")
    epochs: int = bounded(14, 1, 10000)
    batch_size: int = bounded(64, 2, 4096)
    lr: float = bounded(5e-3, 0.0, 10.0, "Adam learning rate (paper 1e-4)")
    weight_decay: float = bounded(1e-4, 0.0, 1.0)
    scheduler: str = choice("multistep", ("multistep", "warmup_cosine"),
                            "multistep (paper: MultiStepLR per epoch) | warmup_cosine (per batch: linear warm-up, cosine decay)")
    milestones: list[int] = listof([12], doc="MultiStepLR milestones in epochs (paper [70])")
    gamma: float = bounded(0.1, 0.0, 1.0)
    warmup_epochs: float = bounded(0.0, 0.0, None, "warmup_cosine: linear warm-up length in epochs")
    final_lr_ratio: float = bounded(0.0, 0.0, 1.0, "warmup_cosine: final lr as a share of lr")
    ema_decay: float = bounded(0.0, 0.0, 0.9999, "EMA of the weights used for validation and the saved model (0 = off)")
    sampler: str = choice("balanced", ("balanced", "shuffle"), "class-balanced sampling with replacement or shuffling")
    augment: bool = True
    rotation_deg: float = bounded(23.0, 0.0, 180.0, "augmentation rotation range (paper 23)")
    crop_scale_min: float = bounded(0.9, 0.05, 1.0, "RandomResizedCrop smallest area share (paper 0.9)")
    device: str = "auto"
    num_threads: int = bounded(1, 0, 256, "torch CPU threads; 0 = all cores (1: small nets gain little from more, and never oversubscribe)")
    eval_batch_size: int = bounded(256, 1, 65536)
    pictures_per_score: int = bounded(3, 0, 100, "localisation pictures per true score")

    def validate(self) -> None:
        if self.crop_size > self.input_size:
            raise ParamsError(f"params key 'frame_model.crop_size': {self.crop_size} exceeds input_size {self.input_size}")
        if self.loc_input_size and not 32 <= self.loc_input_size <= self.input_size:
            raise ParamsError(f"params key 'frame_model.loc_input_size': {self.loc_input_size} must be 0 or in "
                              f"32..input_size ({self.input_size})")
        if self.feature_stn and not (self.arch == "mobilenet_v2" and 1 <= self.train_blocks <= 18):
            raise ParamsError("params key 'frame_model.feature_stn': needs arch mobilenet_v2 with train_blocks in 1..18 "
                              "(the crop acts on the frozen part's spatial feature map)")
        if any(m < 0 for m in self.milestones):
            raise ParamsError("params key 'frame_model.milestones': epochs must be >= 0")
