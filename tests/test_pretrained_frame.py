"""ImageNet MobileNetV2 frame model, its frozen-prefix feature cache, and video-supervised (MIL) training."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lus.config.frame_model import FrameModelSection  # noqa: E402
from lus.data.frame_dataset import FrameTable, write_toy_shards  # noqa: E402
from lus.data.video_sampling import FeatureCache  # noqa: E402
from lus.models.backbones import build_backbone  # noqa: E402
from lus.models.frame_models import FrameModelSpec, build_frame_model  # noqa: E402
from lus.models.imagenet import offline_imagenet_file  # noqa: E402
from lus.models.mil import VideoPooling, mil_loss  # noqa: E402
from lus.train.frame import VideoBags, prefix_extractor, prefix_features  # noqa: E402

SIZE = 32


def _table(n_videos: int = 3, frames: int = 5, seed: int = 0) -> FrameTable:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 255, (n_videos * frames, SIZE, SIZE), dtype=np.uint8))
    video = np.repeat(np.arange(n_videos), frames)
    return FrameTable(images, video, np.tile(np.arange(frames), n_videos), np.full(len(video), -1), video % 4,
                      [f"v{i}" for i in range(n_videos)], [f"p{i}" for i in range(n_videos)])


def _net(train_blocks: int, pretrained: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_frame_model(FrameModelSpec(arch="mobilenet_v2", input_size=SIZE, crop_size=SIZE,
                                            train_blocks=train_blocks, pretrained=pretrained))


def _cache(tmp_path, net, table) -> tuple[FeatureCache, object]:
    key, info, extract = prefix_extractor(net, table.images.shape[-1], 4)
    return FeatureCache(tmp_path, key, info), extract


def _fill(cache: FeatureCache, extract, table: FrameTable) -> np.ndarray:
    out = []
    for v, vid in enumerate(table.video_ids):
        frames = table.images[table.video == v].numpy()
        out.append(cache.get(vid, frames, np.arange(len(frames)), extract))
    return np.concatenate(out)


def test_forward_matches_prefix_then_suffix_and_only_the_last_blocks_train():
    net = _net(train_blocks=3).eval()
    x = torch.rand(2, 1, SIZE, SIZE)
    out = net(x)
    assert out["logits"].shape == (2, 4) and torch.equal(out["theta1"][0], torch.tensor([[1., 0, 0], [0, 1., 0]]))
    torch.testing.assert_close(net.suffix(net.prefix(x)), out["logits"])
    trainable = {n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad and n.startswith("features")}
    assert trainable == {"16", "17", "18"}
    net.train()
    assert not net.features[0].training and net.features[18].training   # frozen BatchNorm keeps ImageNet statistics


def test_prefix_cache_hit_miss_and_invalidation(tmp_path):
    table = _table()
    net = _net(train_blocks=2)
    cache, extract = _cache(tmp_path, net, table)
    first = _fill(cache, extract, table)
    assert (cache.hits, cache.misses) == (0, 3)                       # miss: computed once per video
    cache2, extract2 = _cache(tmp_path, net, table)
    np.testing.assert_array_equal(_fill(cache2, extract2, table), first)
    assert (cache2.hits, cache2.misses) == (3, 0)                     # hit: read back, identical
    # another cut point (which blocks train), another input size, other frozen weights: another key, recomputed
    for other, tbl in ((_net(train_blocks=4), table), (net, FrameTable(
            torch.nn.functional.interpolate(table.images[:, None].float(), size=48).round().to(torch.uint8)[:, 0],
            table.video, table.frame_index, table.labels, table.weak, table.video_ids, table.patient_ids)),
            (_net(train_blocks=2, seed=1), table)):
        c, e = _cache(tmp_path, other, tbl)
        assert c.dir != cache.dir
        _fill(c, e, tbl)
        assert (c.hits, c.misses) == (0, 3)
    # same key, but a video's frames changed (e.g. other extraction settings): that entry is recomputed
    changed = _table()
    changed.images[0] = 255 - changed.images[0]
    c, e = _cache(tmp_path, net, changed)
    _fill(c, e, changed)
    assert (c.hits, c.misses) == (2, 1)
    assert prefix_features(net, table, tmp_path, 4).shape[:1] == (len(table),)


@pytest.mark.skipif(offline_imagenet_file("mobilenet_v2") is None, reason="no offline ImageNet MobileNetV2 file")
def test_frozen_imagenet_prefix_shares_the_probe_and_cnn_lstm_cache(tmp_path):
    table = _table()
    net = _net(train_blocks=0, pretrained=True)
    key, info, extract = prefix_extractor(net, SIZE, 4)
    backbone = build_backbone("mobilenet_v2", "imagenet", SIZE)
    assert key == backbone.key and info == backbone.key_info
    feats = prefix_features(net, table, tmp_path, 4)
    frames = table.images[table.video == 0].numpy()
    np.testing.assert_array_equal(feats[:5].numpy(), backbone.features(frames, 4))
    probe_cache = FeatureCache(tmp_path, backbone.key)
    probe_cache.get("v0", frames, np.arange(5), lambda f: pytest.fail("the probe recomputed a cached video"))
    assert probe_cache.hits == 1
    with torch.no_grad():   # the cached features + the head give the full model's logits
        np.testing.assert_allclose(net.eval().suffix(feats[:5]).numpy(),
                                   net(table.images[:5, None].float() / 255)["logits"].numpy(), atol=1e-4)


def _hidden_label_videos(n_videos: int, frames: int, seed: int):
    """Frames whose class is linearly readable from 8-d features; a video's score is its frames' majority class,
    but 40 % of its frames show a lower class (spared lung), so frame labels differ from the video's."""
    centres = np.random.default_rng(123).normal(0, 1, (4, 8)) * 2.5   # the classes: the same in every draw
    rng = np.random.default_rng(seed)
    scores = np.arange(n_videos) % 4
    labels = []
    for s in scores:
        lab = np.full(frames, s)
        if s:
            other = rng.random(frames) < 0.4
            lab[other] = rng.integers(0, s, other.sum())
        labels.append(lab)
    labels = np.concatenate(labels)
    x = centres[labels] + rng.normal(0, 1, (len(labels), 8))
    return torch.tensor(x, dtype=torch.float32), labels, scores


@pytest.mark.parametrize("pooling, floor", [("mean", 0.85), ("uninorm", 0.75)])
def test_video_supervision_recovers_hidden_frame_labels(pooling, floor):
    frames = 12
    x, labels, scores = _hidden_label_videos(80, frames, seed=0)
    rows = [np.arange(v * frames, (v + 1) * frames) for v in range(len(scores))]
    bags = VideoBags(rows, scores, lambda idx: x[idx], bag_size=8)
    torch.manual_seed(0)
    head, pool = torch.nn.Linear(8, 4), VideoPooling(pooling)
    opt = torch.optim.Adam([*head.parameters(), *pool.parameters()], lr=0.05)
    for step in range(300):
        xb, lengths, y = bags.get_batch(torch.randint(0, len(scores), (16,)))
        loss, _ = mil_loss(head(xb), lengths, y, pool)   # video scores only: the frame labels stay hidden
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_test, labels_test, scores_test = _hidden_label_videos(40, frames, seed=1)   # new videos, same classes
    with torch.no_grad():
        frame_acc = (head(x_test).argmax(1).numpy() == labels_test).mean()
        video = pool(torch.softmax(head(x_test), 1), torch.full((40,), frames)).argmax(1).numpy()
    weak_acc = (np.repeat(scores_test, frames) == labels_test).mean()   # what "frame = its video's score" gets
    assert frame_acc > floor and frame_acc > weak_acc + 0.1, (frame_acc, weak_acc)
    assert (video == scores_test).mean() > 0.8


def test_train_stage_video_supervision_mobilenet_end_to_end(tmp_path):
    """train_frame with a fine-tuned MobileNetV2 tail on cached maps, trained from video scores only; the saved
    weights load into a fresh model (no ImageNet file needed) and predict_frames reads them."""
    import yaml

    import stages.predict_frames as predict_stage
    import stages.train_frame as stage

    paths = write_toy_shards(tmp_path / "toy", n_patients=6, videos_per_patient=2, frames_per_video=8, size=SIZE,
                             with_labels=False)
    folds = json.loads(paths["folds"].read_text())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "frame_model": {
        "arch": "mobilenet_v2", "pretrained": False, "train_blocks": 2, "supervision": "video", "bag_size": 4,
        "input_size": SIZE, "crop_size": SIZE, "epochs": 2, "batch_size": 8, "lr": 0.001, "pictures_per_score": 0}}))
    args = argparse.Namespace(params=str(params), fold=[0], frames=str(paths["frames"]), folds=str(paths["folds"]),
                              manifest=str(paths["manifest"]), out=str(tmp_path / "models"), live="", crops="",
                              no_resume=False, no_progress=True, workers=1, cache=str(tmp_path / "cache"))
    stage.main(args)
    meta = json.loads((tmp_path / "models" / "fold_0" / "meta.json").read_text())
    assert meta["supervision"] == "video" and meta["label_source"].startswith("video scores (multiple-instance")
    assert meta["selection"].startswith("val patients, video accuracy")
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == len(set(folds["folds"][0]["train"]) |
                                                                  set(folds["folds"][0]["val"])) * 2
    sec = FrameModelSection.from_dict(yaml.safe_load(params.read_text())["frame_model"])
    model = predict_stage.load_fold_model(tmp_path / "models", 0, sec)
    assert model(torch.rand(2, 1, SIZE, SIZE))["logits"].shape == (2, 4)


def test_feature_stn_crops_the_prefix_map_and_learns_its_window():
    torch.manual_seed(0)
    net = build_frame_model(FrameModelSpec(arch="mobilenet_v2", input_size=64, crop_size=32, train_blocks=6,
                                           feature_stn=True)).eval()
    x = torch.rand(3, 1, 64, 64)
    out = net(x)
    theta = out["theta1"]
    assert theta.shape == (3, 2, 3)
    torch.testing.assert_close(theta[:, 0, 0], torch.full((3,), 0.75))   # starts at the centred 0.75 window
    torch.testing.assert_close(theta[:, :, 2], torch.zeros(3, 2))
    torch.testing.assert_close(net.suffix(net.prefix(x)), out["logits"])   # the cache path gives the same logits
    net.train()
    net.suffix(net.prefix(x)).sum().backward()
    assert net.stn.loc[-1].weight.grad.abs().sum() > 0                      # the window is learned
    with pytest.raises(Exception, match="feature_stn"):
        FrameModelSection.from_dict({"arch": "mobilenet_v2", "train_blocks": 0, "feature_stn": True})


def test_full_fine_tuning_trains_every_module_on_images_and_picks_cuda_when_present(tmp_path):
    """train_blocks -1 (the GPU mode): no cached prefix, every parameter trains (on CPU here, at a tiny size), and
    the stage records the device that ``device: auto`` resolved to (CUDA when present)."""
    import yaml

    import stages.train_frame as stage
    from lus.runtime import resolve_device
    from lus.train.frame import uses_prefix_cache

    assert all(p.requires_grad for p in _net(train_blocks=-1).parameters())
    assert not uses_prefix_cache(FrameModelSection.from_dict({"arch": "mobilenet_v2", "train_blocks": -1}))
    paths = write_toy_shards(tmp_path / "toy", n_patients=6, videos_per_patient=1, frames_per_video=6, size=SIZE)
    weights = {}
    for lr in (0.0, 0.01):          # lr 0 leaves the stage's own initial weights (same seed, same init)
        params = tmp_path / f"params_{lr}.yaml"
        params.write_text(yaml.safe_dump({"base": {"seed": 0}, "frame_model": {
            "arch": "mobilenet_v2", "pretrained": False, "train_blocks": -1, "input_size": SIZE, "crop_size": SIZE,
            "epochs": 1, "batch_size": 8, "lr": lr, "pictures_per_score": 0}}))
        args = argparse.Namespace(params=str(params), fold=[0], frames=str(paths["frames"]),
                                  folds=str(paths["folds"]), manifest=str(paths["manifest"]),
                                  out=str(tmp_path / f"models_{lr}"), live="", crops="", no_resume=False,
                                  no_progress=True, workers=1, cache=str(tmp_path / "cache"))
        stage.main(args)
        weights[lr] = torch.load(tmp_path / f"models_{lr}" / "fold_0" / "model.pt", weights_only=True)
    assert not list(tmp_path.glob("cache/**/*.npz"))           # trained on images: nothing cached
    names = [n for n in weights[0.0] if n.startswith("features.") and n.endswith("weight")]
    moved = {n.split(".")[1] for n in names if not torch.equal(weights[0.0][n], weights[0.01][n])}
    assert moved == {str(i) for i in range(19)}               # every feature module trained, the first one included
    meta = json.loads((tmp_path / f"models_{lr}" / "fold_0" / "meta.json").read_text())
    assert meta["provenance"]["device"] == str(resolve_device("auto"))
