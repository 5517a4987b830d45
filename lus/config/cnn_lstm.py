"""Params section ``cnn_lstm``: Barros et al. 2021 CNN-LSTM video classifier (METHODS §4).

The head defaults are the paper's best configuration (LSTM 512, input dropout 0.4, 2 x Dense 1024).
Optimiser, batch and epochs are project choices (the paper's are unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

TARGETS = ("auto", "diagnosis", "video_score")
BACKBONES = ("frame_model", "mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "densenet121", "vgg16")


@dataclass(frozen=True)
class CnnLstmSection(Section):
    NAME = "cnn_lstm"
    target: str = choice("auto", TARGETS, "auto = diagnosis when every video has one, else video_score")
    seq_len: int = bounded(20, 1, 1000, "frames per video, indices round(linspace(0, T-1, n)); paper best 20")
    # mobilenet_v2 (default) = frozen ImageNet features, as in the paper (which used Xception); frame_model = the
    # same fold's trained frame classifier body (LUS-trained for severity, tiny, no leakage).
    backbone: str = choice("mobilenet_v2", BACKBONES, "frozen per-frame feature extractor")
    # torchvision backbones: imagenet (offline file when installed, else torchvision's download),
    # none (random init, a control), or a path to a state-dict file.
    weights: str = "imagenet"
    input_size: int = bounded(224, 32, 1024, "torchvision backbones: frames resized to this square size")
    hidden: int = bounded(512, 1, 8192, "LSTM units")
    input_dropout: float = bounded(0.4, 0.0, 0.95, "LSTM input dropout (Keras 'dropout')")
    fc: list[int] = listof([1024, 1024], doc="widths of the ReLU dense layers after the LSTM")
    epochs: int = bounded(30, 1, 10_000)
    batch_size: int = bounded(16, 1, 4096)
    lr: float = bounded(3e-4, 0.0, 1.0)
    weight_decay: float = bounded(0.0, 0.0, 1.0)
    balanced_sampling: bool = True
    standardize: bool = True  # per-dimension feature standardisation with training-video statistics
    patience: int = bounded(8, 0, 10_000, "early stopping: epochs without validation improvement (0 = off)")
    selection_metric: str = choice("loss", ("loss", "accuracy"), "validation metric that picks the epoch")
    feature_batch: int = bounded(64, 1, 4096, "frames per backbone forward pass during feature extraction")
    device: str = "auto"
    num_threads: int = bounded(1, 0, 256, "torch CPU threads; 0 = all cores (the small head is fastest on 1)")
    # The head trains in seconds; a checkpoint (weights, best weights, Adam moments) is ~4x model.pt per
    # write, so by default none is written and an interrupted fold simply reruns.
    checkpoint_every: int = bounded(0, 0, 10_000, "write checkpoint.pt every n epochs and at the end (0 = never)")

    def validate(self) -> None:
        if any(w < 1 for w in self.fc):
            raise ParamsError(f"params key 'cnn_lstm.fc': widths must be >= 1, got {self.fc}")
        if self.backbone == "frame_model" and self.weights not in ("imagenet", "none", ""):
            raise ParamsError("params key 'cnn_lstm.weights': the frame_model backbone loads the fold's own "
                              "models/frame/fold_K/model.pt; leave weights at imagenet (ignored)")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ParamsError(f"params key 'cnn_lstm.device': expected auto, cpu or cuda[:N], got {self.device!r}")
