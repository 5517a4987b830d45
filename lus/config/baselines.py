"""Params section ``baselines``: the chance levels and the linear probe every result table is read against.

The linear probe is the "simple transfer" reference: frozen ImageNet features of every frame, pooled over a
video's frames (mean and std), and a logistic regression fitted on the fold's training patients with its
regularisation chosen on the fold's validation patients. A model that does not beat it has not learned
more from the data than a generic feature extractor plus a linear read-out.
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

PROBE_BACKBONES = ("mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "densenet121")


@dataclass(frozen=True)
class BaselinesSection(Section):
    NAME = "baselines"
    backbone: str = choice("mobilenet_v2", PROBE_BACKBONES, "frozen ImageNet feature extractor of the linear probe")
    # imagenet (offline file; mobilenet_v2 ships with the install), none (random init, a control) or a state-dict path
    weights: str = "imagenet"
    input_size: int = bounded(112, 32, 1024, "frames resized to this square size before the backbone")
    c_grid: list[float] = listof([0.001, 0.01, 0.1, 1.0], doc="inverse L2 strengths tried; chosen on validation patients")
    max_iter: int = bounded(500, 10, 100_000, "logistic-regression solver iterations")
    max_train_frames: int = bounded(3000, 100, 10_000_000, "frame task: at most this many training frames, evenly per video")
    chance_draws: int = bounded(500, 10, 1_000_000, "random guesses averaged for the frequency-matched chance level")
    feature_batch: int = bounded(64, 1, 4096, "frames per backbone forward pass")
    device: str = "auto"
    num_threads: int = bounded(0, 0, 256, "torch CPU threads for feature extraction; 0 = all cores")

    def validate(self) -> None:
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ParamsError(f"params key 'baselines.c_grid': expected positive values, got {self.c_grid}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ParamsError(f"params key 'baselines.device': expected auto, cpu or cuda[:N], got {self.device!r}")
