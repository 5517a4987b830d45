"""Frame models (shapes, registry, STN init), localisation boxes/coverage, train_frame + predict_frames stages."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lus.config.base import ParamsError
from lus.config.frame_model import FrameModelSection
from lus.models.frame_models import FRAME_MODELS, FrameModelSpec, build_frame_model
from lus.report.localization import box_corners, draw_crop_boxes, inside_crop, marker_coverage

ARCHS = sorted(FRAME_MODELS)
FPV = 16  # toy frames per video
N_PATIENTS = 10


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_of_every_arch(arch):
    torch.manual_seed(0)
    model = build_frame_model(FrameModelSpec(arch=arch, input_size=64, crop_size=32, width=0.125))
    out = model(torch.rand(3, 1, 64, 64))
    assert out["logits"].shape == (3, 4)
    assert out["theta1"].shape == (3, 2, 3) and out["theta2"].shape == (3, 2, 3)
    assert out["scales"].shape == (3, 2)
    if arch in ("reg_stn", "random_crop"):
        assert out["logits2"].shape == (3, 4)
    model.eval()
    assert model(torch.rand(2, 3, 64, 64))["logits"].shape == (2, 4)  # RGB input too


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: cnn, mobilenet_v2, random_crop, reg_stn, resnet18, stn"):
        build_frame_model(FrameModelSpec(arch="vgg"))
    with pytest.raises(ParamsError, match="frame_model.arch"):
        FrameModelSection.from_dict({"arch": "vgg"})
    with pytest.raises(ParamsError, match="crop_size"):
        FrameModelSection.from_dict({"input_size": 48, "crop_size": 64})


@pytest.mark.parametrize("size", [32, 96, 224])
def test_localisation_linear_adapts_to_input_size(size):
    model = build_frame_model(FrameModelSpec(arch="reg_stn", input_size=size, crop_size=32, width=0.125))
    assert model(torch.rand(2, 1, size, size))["logits"].shape == (2, 4)
    full = build_frame_model(FrameModelSpec(arch="reg_stn", input_size=224, crop_size=112, width=1.0))
    assert full.loc.fc[1].in_features == 6272  # the paper's 128 x 7 x 7


def test_reg_stn_initial_transforms():
    x = torch.rand(2, 1, 64, 64)
    learned = build_frame_model(FrameModelSpec(arch="reg_stn", stn_mode="learned", width=0.125)).eval()
    out = learned(x)
    s1, s2 = torch.sigmoid(torch.tensor(0.5)), torch.sigmoid(torch.tensor(0.75))
    assert torch.allclose(out["scales"][0], torch.stack([s1, s2]))
    assert torch.allclose(out["theta1"][:, 0, 0], s1.expand(2)) and torch.allclose(out["theta1"][:, 1, 1], s1.expand(2))
    assert torch.allclose(out["theta1"][:, :, 2], torch.tensor([0.3, 0.3]).expand(2, 2))
    assert torch.allclose(out["theta2"][:, :, 2], out["theta1"][:, :, 2])  # shared translation
    fixed = build_frame_model(FrameModelSpec(arch="reg_stn", stn_mode="fixed_scale", crop2_translation="own",
                                             width=0.125)).eval()
    out = fixed(x)
    assert torch.allclose(out["theta1"][0], torch.tensor([[0.5, 0, 0.3], [0, 0.5, 0.3]]))
    assert torch.allclose(out["theta2"][0], torch.tensor([[0.75, 0, 0.2], [0, 0.75, 0.2]]))
    assert torch.equal(out["scales"], torch.zeros(2, 2))
    stn = build_frame_model(FrameModelSpec(arch="stn", width=0.125)).eval()
    assert torch.allclose(stn(x)["theta1"][0], torch.tensor([[0.5, 0, 0.2], [0, 0.5, 0.2]]))
    cnn = build_frame_model(FrameModelSpec(arch="cnn", width=0.125)).eval()
    assert torch.equal(cnn(x)["theta1"][0], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))


def test_crop_is_sampled_where_theta_points():
    """A bright square in the top-left quadrant fills the crop theta = [[.5,0,-.5],[0,.5,-.5]]."""
    from lus.models.frame_models import affine_crops

    x = torch.zeros(1, 1, 64, 64)
    x[..., :32, :32] = 1.0
    crop = affine_crops(x, torch.tensor([[[0.5, 0, -0.5], [0, 0.5, -0.5]]]), 32)
    assert torch.allclose(crop, torch.ones_like(crop))


def test_box_corners_identity_and_known_maps():
    eye = np.array([1, 0, 0, 0, 1, 0], dtype=float)
    assert np.allclose(box_corners(eye, 48, 64), [[0, 0], [64, 0], [64, 48], [0, 48]])
    theta = np.array([0.5, 0, 0.5, 0, 0.25, -0.25])  # x in [0, 1], y in [-0.5, 0]
    assert np.allclose(box_corners(theta, 64, 64), [[32, 16], [64, 16], [64, 32], [32, 32]])
    shear = np.array([0.5, 0.25, 0, 0, 0.5, 0])
    c = box_corners(shear, 64, 64)
    assert np.allclose(c[0], [(-0.75 + 1) * 32, 16]) and np.allclose(c[2], [(0.75 + 1) * 32, 48])


def test_drawn_boxes_follow_theta():
    frame = np.zeros((64, 64), dtype=np.uint8)
    img = draw_crop_boxes(frame, np.array([0.5, 0, 0.5, 0, 0.25, -0.25]), np.array([1, 0, 0, 0, 1, 0.0]))
    blue = (img[..., 2] == 255) & (img[..., 0] == 0) & (img[..., 1] == 0)
    green = (img[..., 1] == 200) & (img[..., 0] == 0) & (img[..., 2] == 0)
    ys, xs = np.nonzero(blue)
    assert xs.min() == 32 and xs.max() == 63 and ys.min() == 16 and ys.max() == 32
    assert blue[16, 40] and blue[32, 40] and not blue[24, 40]      # top/bottom edges, empty inside
    assert green[0, 10] and green[63, 10] and green[30, 0]         # identity = full frame outline (crop 2)
    big = draw_crop_boxes(frame, np.array([0.5, 0, 0.5, 0, 0.25, -0.25]), None, scale=4)
    assert big.shape == (256, 256, 3) and big[64, 160, 2] == 255


def test_inside_crop_and_marker_coverage():
    theta = np.array([0.5, 0, -0.5, 0, 0.5, -0.5])          # top-left quadrant
    inside = inside_crop(theta, 8, 8)
    assert inside[:4, :4].all() and inside.sum() == 16
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:2, :2] = 3          # marker fully inside
    mask[6:, 6:] = 1          # score-0 region is not a marker
    res = marker_coverage([theta, theta], [mask, np.zeros_like(mask)])
    assert res == {"marker_in_crop1": 1.0, "crop1_area": 0.25, "n_frames": 1.0}


# --------------------------------------------------------------------------------------- stages on toy shards
def _params(tmp_path, **frame):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"base": {"seed": 0}, "frame_model": frame}))
    return str(path)


def _toy(tmp_path):
    from lus.data.frame_dataset import write_toy_shards

    return write_toy_shards(tmp_path / "toy", n_patients=N_PATIENTS, videos_per_patient=2, frames_per_video=FPV, size=48)


def _train_args(paths, params, folds, out, workers=1, live="", crops=""):
    """The stage's arguments: ``folds`` None = every fold; ``out`` gets one fold_<k> folder per fold."""
    return argparse.Namespace(params=params, fold=folds, frames=str(paths["frames"]), folds=str(paths["folds"]),
                              manifest=str(paths["manifest"]), out=str(out), live=live, crops=crops,
                              no_resume=False, no_progress=True, workers=workers, cache=str(out) + "/.feature_cache")


def test_train_stage_never_loads_test_patients(tmp_path, monkeypatch):
    import stages.train_frame as stage
    from lus.data import frame_dataset

    paths = _toy(tmp_path)
    params = _params(tmp_path, arch="cnn", epochs=2, batch_size=16, input_size=48, crop_size=32, width=0.125)
    folds = json.loads(paths["folds"].read_text())["folds"]
    seen_videos: list[str] = []
    val_sizes: list[int] = []
    real_load, real_train = frame_dataset.load_frame_table, stage.train_frame_model

    def spy_load(frames_dir, videos, *a, **k):
        seen_videos.extend(videos["video_id"].tolist())
        return real_load(frames_dir, videos, *a, **k)

    def spy_train(data, *a, **k):
        val_sizes.append(len(data.val_rows))
        return real_train(data, *a, **k)

    monkeypatch.setattr(stage, "load_frame_table", spy_load)
    monkeypatch.setattr(stage, "train_frame_model", spy_train)
    stage.main(_train_args(paths, params, [1], tmp_path))
    manifest = pd.read_csv(paths["manifest"])
    patient_of = dict(zip(manifest["video_id"], manifest["patient_id"]))
    seen_patients = {patient_of[v] for v in seen_videos}
    assert seen_patients == set(folds[1]["train"]) | set(folds[1]["val"])
    assert not seen_patients & set(folds[1]["test"])
    assert val_sizes == [FPV * 2 * len(folds[1]["val"])]   # selection sees exactly the val patients' frames
    meta = json.loads((tmp_path / "fold_1" / "meta.json").read_text())
    assert meta["arch"] == "cnn" and meta["fold"] == 1 and 1 <= meta["selected_epoch"] <= 2
    assert meta["provenance"]["torch"] == torch.__version__
    assert set(pd.read_csv(tmp_path / "fold_1" / "curve.csv")["epoch"]) == {1, 2}
    state = torch.load(tmp_path / "fold_1" / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def test_reg_stn_short_training_beats_chance(tmp_path):
    from lus.data.frame_dataset import load_frame_table
    from lus.train.frame import predict, train_frame_fold

    paths = _toy(tmp_path)
    sec = FrameModelSection.from_dict({"arch": "reg_stn", "epochs": 6, "milestones": [5], "batch_size": 8,
                                       "lr": 3e-3, "input_size": 48, "crop_size": 32})
    fold = json.loads(paths["folds"].read_text())["folds"][0]
    table = load_frame_table(paths["frames"], pd.read_csv(paths["manifest"]), 48)
    tr, va, te = (table.rows_of_patients(fold[p]) for p in ("train", "val", "test"))
    y = table.targets
    model, res = train_frame_fold(table.images[tr], y[tr], table.images[va], y[va], sec, 0, tmp_path / "m",
                                  progress=False)
    acc = (predict(model, table.images[te])["probs"].argmax(1) == y[te]).mean()
    print("reg_stn toy accuracy", acc)
    assert acc > 0.45, acc   # chance: 0.25
    assert res.epochs_run == 6


def test_short_training_beats_chance_and_predict_stage(tmp_path):
    import stages.predict_frames as predict_stage
    import stages.train_frame as train_stage

    paths = _toy(tmp_path)
    params = _params(tmp_path, arch="cnn", epochs=6, milestones=[5], batch_size=16, lr=3e-3, input_size=48,
                     crop_size=32, width=0.25, pictures_per_score=1)
    train_stage.main(_train_args(paths, params, None, tmp_path / "models"))   # every fold
    out = tmp_path / "pred" / "frames.parquet"
    predict_stage.main(argparse.Namespace(
        params=params, frames=str(paths["frames"]), folds=str(paths["folds"]), manifest=str(paths["manifest"]),
        models=str(tmp_path / "models"), out=str(out), metrics=str(tmp_path / "pred" / "metrics.json"),
        confusion=str(tmp_path / "plots" / "confusion.csv"), pictures=str(tmp_path / "plots" / "loc")))
    df = pd.read_parquet(out)
    assert list(df.columns[:10]) == ["video_id", "patient_id", "fold", "frame_index", "label", "weak_label",
                                     "p0", "p1", "p2", "p3"]
    assert len(df) == N_PATIENTS * 2 * FPV and df.groupby("video_id")["frame_index"].apply(
        lambda s: s.is_monotonic_increasing).all()
    folds = json.loads(paths["folds"].read_text())["folds"]
    for k, f in enumerate(folds):   # out-of-fold: every frame comes from the fold where its patient is test
        assert set(df.loc[df["fold"] == k, "patient_id"]) == set(f["test"])
    assert np.allclose(df[["p0", "p1", "p2", "p3"]].sum(1), 1.0, atol=1e-5)
    metrics = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    print("cnn toy oof accuracy", metrics["pooled.regular.accuracy"])
    assert metrics["pooled.regular.accuracy"] > 0.45, metrics["pooled.regular.accuracy"]   # chance: 0.25
    assert {"localization.marker_in_crop1", "localization.crop1_area", "pooled.a3.accuracy"} <= set(metrics)
    assert len(list((tmp_path / "plots" / "loc").glob("*.png"))) == 4
    assert list(pd.read_csv(tmp_path / "plots" / "confusion.csv").columns) == ["actual", "predicted"]


def test_sampling_grid_is_affine_grid():
    """The augmentation's broadcast grid equals F.affine_grid (bit for bit on the project's machines; a CPU whose
    matrix product fuses multiply-adds may differ in the last bit, hence the tolerance)."""
    from torch.nn import functional as F

    from lus.data.augment import sampling_grid

    torch.manual_seed(0)
    theta = torch.randn(16, 2, 3)
    for h, w in ((64, 64), (48, 80)):
        ours, torch_grid = sampling_grid(theta, h, w), F.affine_grid(theta, [16, 1, h, w], align_corners=False)
        assert ours.shape == torch_grid.shape == (16, h, w, 2)
        assert torch.allclose(ours, torch_grid, atol=1e-6, rtol=0)


def test_augment_identity_and_mask_alignment():
    from lus.data.augment import FrameAugment, affine_matrix, frame_train_augment, warp

    torch.manual_seed(0)
    img = torch.rand(4, 1, 32, 32)
    out, _ = warp(img, torch.eye(3).expand(4, 3, 3))
    assert torch.allclose(out, img, atol=1e-6)
    blocks = (torch.rand(4, 4, 5) * 5).long()                      # 8 x 8 pixel blocks of one class
    mask = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    image = mask.unsqueeze(1).float() / 4
    no_jitter = FrameAugment(jitter_p=0.0)
    aug, aug_mask = frame_train_augment(image, no_jitter, mask=mask)
    assert aug.shape == image.shape and aug_mask.shape == mask.shape and aug_mask.dtype == mask.dtype
    # where the bilinear image is exactly a class value, nearest mask agrees with it in most pixels
    agree = ((aug[:, 0] * 4).round().long() == aug_mask).float().mean()
    assert agree > 0.85, agree
    m = affine_matrix(4, image, (32, 40), translate=0.1, degrees=15, shear=4.5, scale=(0.55, 1.45), p=1.0)
    a2, m2 = warp(image, m, mask=mask)
    assert a2.shape == image.shape and set(m2.unique().tolist()) <= set(range(5))


def test_brightness_contrast_jitter_follows_torchvision():
    """x * b per image, then (x - mean) * c + mean per image; p = 0 leaves the batch untouched."""
    from lus.data.augment import brightness_contrast

    torch.manual_seed(0)
    img = 0.2 + 0.4 * torch.rand(64, 1, 16, 16)     # x 1.3 stays inside [0, 1]: no clamping in play
    ratio = (brightness_contrast(img, brightness=0.3, contrast=0.0, p=1.0) / img).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1], atol=1e-5)            # one factor per image
    assert 0.7 - 1e-6 <= ratio.min() and ratio.max() <= 1.3 + 1e-6 and ratio[:, 0].std() > 0.1
    out = brightness_contrast(img, brightness=0.0, contrast=0.3, p=1.0)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    dev_in, dev_out = (img - mean).flatten(1), (out - mean).flatten(1)
    c = (dev_in * dev_out).sum(1) / (dev_in ** 2).sum(1)              # per-image contrast factor
    assert torch.allclose(out.mean(dim=(1, 2, 3)), mean.flatten(), atol=1e-5)  # the mean is kept
    assert torch.allclose(dev_out, c[:, None] * dev_in, atol=1e-5)
    assert 0.7 - 1e-6 <= c.min() and c.max() <= 1.3 + 1e-6 and c.std() > 0.1
    assert torch.equal(brightness_contrast(img, p=0.0), img)


def test_localisation_on_downsampled_frame():
    torch.manual_seed(0)
    spec = FrameModelSpec(arch="reg_stn", input_size=64, crop_size=32, width=0.125, loc_input_size=32)
    model = build_frame_model(spec).eval()
    assert model.loc.size == 32 and model.loc.fc[1].in_features == model.loc.body.out_channels * 1 * 1
    x = torch.rand(3, 1, 64, 64)
    out = model(x)
    assert out["logits"].shape == (3, 4) and out["theta1"].shape == (3, 2, 3)
    # the localisation net sees the area-downsampled frame
    rgb = x.expand(-1, 3, -1, -1)
    small = torch.nn.functional.avg_pool2d(rgb, 2)
    assert torch.allclose(model.loc(rgb), model.loc.fc(model.loc.body(small)), atol=1e-6)
    # 0 or input_size = the paper's localisation on the full frame
    assert build_frame_model(FrameModelSpec(arch="reg_stn", width=0.125, loc_input_size=64)).loc.size == 0
    assert FrameModelSection.from_dict({"loc_input_size": 32}).loc_input_size == 32
    with pytest.raises(ParamsError, match="loc_input_size"):
        FrameModelSection.from_dict({"input_size": 64, "loc_input_size": 96})
    with pytest.raises(ParamsError, match="loc_input_size"):
        FrameModelSection.from_dict({"loc_input_size": 16})


def test_schedule_ema_and_augment_params_reach_the_loop():
    from lus.models.frame_models import model_spec
    from lus.train.frame import augment_config, train_config

    sec = FrameModelSection.from_dict({"scheduler": "warmup_cosine", "warmup_epochs": 1.5, "final_lr_ratio": 0.05,
                                       "ema_decay": 0.98, "crop_scale_min": 0.7, "loc_input_size": 32})
    cfg = train_config(sec, 0, progress=False)
    assert (cfg.scheduler, cfg.warmup_epochs, cfg.final_lr_ratio, cfg.ema_decay) == ("warmup_cosine", 1.5, 0.05, 0.98)
    assert augment_config(sec).crop_scale == (0.7, 1.0)
    assert model_spec(sec).loc_input_size == 32
    assert train_config(FrameModelSection.from_dict({}), 0).scheduler == "multistep"   # default unchanged


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    from lus.metrics.classification import macro_f1

    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.integers(0, 4, 50), rng.integers(0, 3, 50)   # class 3 never predicted
        assert macro_f1(y, p) == f1_score(y, p, average="macro", zero_division=0)
    # the one definition: classes neither true nor predicted are left out (not counted as F1 = 0) ...
    y, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert macro_f1(y, p, 4) == pytest.approx((2 / 3 + 0.8) / 2)
    # ... and a class predicted but never true counts with F1 = 0 (its false positives are not hidden)
    y, p = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert macro_f1(y, p, 4) == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert macro_f1(y, p, 4) == f1_score(y, p, average="macro", zero_division=0)


def test_frame_and_video_metrics_use_the_same_macro_f1():
    from lus.metrics.classification import classification_scores, macro_f1
    from lus.metrics.frame import classification_metrics

    y, p = np.array([0, 0, 1, 1, 3]), np.array([0, 2, 1, 1, 3])
    assert classification_metrics(y, p)["f1_macro"] == macro_f1(y, p, 4)
    assert classification_scores(y, p, ["a", "b", "c", "d"])["f1_macro"] == pytest.approx(macro_f1(y, p, 4), abs=1e-15)


def test_random_crop_is_inside_the_frame_in_training_and_centred_at_eval():
    """CNN+random crop (METHODS §1.6): training crops are scale 0.5 / 0.75 with centres drawn uniformly so the
    crop never leaves the frame; eval crops are the centred ones, identical on every call."""
    torch.manual_seed(0)
    model = build_frame_model(FrameModelSpec(arch="random_crop", input_size=64, crop_size=32, width=0.125))
    x = torch.rand(4000, 3, 1, 1)       # the crops' placement depends only on the batch, not on the pixels
    model.train()
    for theta, s in zip(model.thetas(x)[:2], (0.5, 0.75)):
        assert torch.equal(theta[:, 0, 0], torch.full((4000,), s)) and torch.equal(theta[:, 1, 1], theta[:, 0, 0])
        assert not theta[:, 0, 1].any() and not theta[:, 1, 0].any()
        t = theta[:, :, 2]
        assert (t.abs() + s <= 1 + 1e-6).all()                     # corners t +- s stay in [-1, 1]
        assert (t.abs().amax(0) > 0.97 * (1 - s)).all()            # and reach the frame's edges ...
        assert (t.mean(0).abs() < 0.03).all()                      # ... uniformly: std (1 - s) / sqrt(3)
        assert torch.allclose(t.std(0), torch.full((2,), (1 - s) / 3 ** 0.5), rtol=0.05)
    model.eval()
    frames = torch.rand(8, 1, 64, 64)
    with torch.no_grad():
        out = model(frames)
        assert torch.equal(out["logits"], model(frames)["logits"])
    for theta, s in zip((out["theta1"], out["theta2"]), (0.5, 0.75)):
        assert torch.equal(theta, torch.tensor([[s, 0.0, 0.0], [0.0, s, 0.0]]).expand(8, 2, 3))
