"""CNN-LSTM: frame sampling, feature cache, Keras-equivalent head, metrics, fold hygiene and a tiny run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["LUS_OFFLINE"] = "1"  # a backbone without a local weights file must fail, never download

from lus.data.video_sampling import FeatureCache, sample_indices, sequence_features  # noqa: E402
from lus.io import write_csv, write_json, write_npz  # noqa: E402
from lus.metrics.classification import classification_scores, summarise_cnn_lstm  # noqa: E402
from lus.models.backbones import build_backbone, file_digest, offline_imagenet_file  # noqa: E402
from lus.models.cnn_lstm import CnnLstmHead, KerasLSTM, count_parameters  # noqa: E402

DIAG = ("covid", "pneumonia", "healthy")


# ------------------------------------------------------------------------------------------- fake data
def write_video_dataset(root: Path, n_patients: int = 12, frames: int = 30, size: int = 32, seed: int = 0,
                        diagnosis: bool = True) -> dict[str, Path]:
    """Shards whose texture depends on the diagnosis: covid vertical lines, pneumonia a dark blob, healthy
    horizontal lines; every patient has 2 videos; 3 folds of 4 patients (val = 2 of the rest)."""
    rng = np.random.default_rng(seed)
    man, idx = [], []
    for p in range(n_patients):
        d = p % 3
        for v in range(2):
            vid = f"vid_p{p:02d}_{v}"
            img = rng.normal(70, 15, (frames, size, size))
            if d == 0:
                img[:, :, ::5] += 90
            elif d == 1:
                img[:, size // 3: 2 * size // 3, size // 3: 2 * size // 3] = 5
            else:
                img[:, ::5, :] += 90
            write_npz(root / "frames" / f"{vid}.npz", frames=np.clip(img, 0, 255).astype(np.uint8),
                      frame_index=np.arange(frames, dtype=np.int32))
            idx.append({"video_id": vid, "shard": f"{vid}.npz", "n_frames": frames, "has_labels": 0, "has_masks": 0})
            man.append({"video_id": vid, "path": f"v/{vid}.avi", "patient_id": f"P{p:02d}", "hospital": "h",
                        "probe": "convex", "fps": 10.0, "n_frames": frames, "video_score": d,
                        "diagnosis": DIAG[d] if diagnosis else "", "covid_positive": "", "frame_labels": "",
                        "masks": ""})
    write_csv(root / "frames" / "index.csv", pd.DataFrame(idx))
    write_csv(root / "manifest.csv", pd.DataFrame(man))
    pats = [f"P{p:02d}" for p in range(n_patients)]
    folds = []
    for k in range(3):
        test = pats[4 * k: 4 * k + 4]
        rest = [p for p in pats if p not in test]
        folds.append({"train": rest[2:], "val": rest[:2], "test": test})
    write_json(root / "folds.json", {"seed": 0, "group_key": "patient_id", "folds": folds})
    return {"frames": root / "frames", "manifest": root / "manifest.csv", "folds": root / "folds.json"}


def write_frame_model(folder: Path, fold: int, seed: int, arch: str = "cnn", size: int = 32) -> Path:
    """A (random-init) frame model folder as train_frame writes it: model.pt + meta.json with params."""
    from lus.config.frame_model import FrameModelSection
    from lus.models.frame_models import model_spec
    from lus.models.frame_models import build_frame_model

    sec = FrameModelSection.from_dict({"arch": arch, "input_size": size, "crop_size": 32, "width": 0.25})
    torch.manual_seed(seed)
    model = build_frame_model(model_spec(sec))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    write_json(folder / "meta.json", {"arch": arch, "fold": fold, "params": sec.to_dict(), "classes": [0, 1, 2, 3]})
    return folder


def write_params(path: Path, **cnn) -> Path:
    import yaml

    section = {"backbone": "frame_model", "seq_len": 6, "hidden": 32, "fc": [32, 32], "epochs": 40, "batch_size": 8,
               "lr": 3e-3, "patience": 0, "num_threads": 1}
    section.update(cnn)
    path.write_text(yaml.safe_dump({"base": {"seed": 0}, "cnn_lstm": section}))
    return path


def run_fold(tmp_path: Path, paths: dict, fold: int, frame_model: Path, out: Path, params: Path) -> dict:
    """The stage on one fold; ``frame_model`` is linked in as fold ``fold`` of its --frame-models folder and
    ``out`` (a ``fold_<fold>`` folder) gets the outputs. Returns its meta.json."""
    import hashlib

    import stages.train_cnn_lstm as st

    assert out.name == f"fold_{fold}"
    # one folder per linked model, so a rerun with the same model sees the same paths (meta.json records them)
    models = tmp_path / "frame_models" / hashlib.sha1(f"{Path(frame_model).resolve()}:{fold}".encode()).hexdigest()[:8]
    if not (models / f"fold_{fold}").exists():
        models.mkdir(parents=True, exist_ok=True)
        (models / f"fold_{fold}").symlink_to(Path(frame_model).resolve())
    args = st.build_parser().parse_args([
        "--fold", str(fold), "--params", str(params), "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
        "--manifest", str(paths["manifest"]), "--frame-models", str(models), "--cache", str(tmp_path / "cache"),
        "--out", str(out.parent), "--no-progress"])
    st.main(args)
    return json.loads((out / "meta.json").read_text())


# ------------------------------------------------------------------------------------------- sampling
def test_sample_indices():
    assert sample_indices(100, 20).tolist() == np.round(np.linspace(0, 99, 20)).astype(int).tolist()
    idx = sample_indices(100, 20)
    assert idx[0] == 0 and idx[-1] == 99 and len(idx) == 20 and np.all(np.diff(idx) > 0)
    assert sample_indices(5, 8).tolist() == [0, 1, 1, 2, 2, 3, 3, 4]   # short video: frames repeat
    assert sample_indices(1, 3).tolist() == [0, 0, 0]
    assert sample_indices(20, 20).tolist() == list(range(20))
    with pytest.raises(ValueError):
        sample_indices(0, 5)


# ------------------------------------------------------------------------------------------- head
def test_paper_head_has_keras_parameter_count():
    keras_lstm = 4 * (512 * (2048 + 512) + 512)           # Keras: one bias per gate
    dense = (512 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 3 + 3)
    assert keras_lstm + dense == 6_822_915
    head = CnnLstmHead(2048, 3, hidden=512, input_dropout=0.4, fc=(1024, 1024))
    assert count_parameters(head) == 6_822_915
    assert count_parameters(head.lstm) == keras_lstm
    assert head(torch.zeros(2, 20, 2048)).shape == (2, 3)


def test_lstm_input_dropout_in_training_mode_only():
    """Keras LSTM(dropout=0.4): in training one input mask per sequence (shared by every time step), kept
    inputs scaled by 1/0.6; in eval no dropout at all."""
    torch.manual_seed(0)
    lstm = KerasLSTM(64, 8, input_dropout=0.4)
    seen = []
    lstm.kernel.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    x = torch.rand(50, 5, 64) + 0.5                      # no zero inputs: a zero in the kernel input is a drop
    lstm.train()
    lstm(x)
    ratio = seen[-1] / x                                 # (B, T, D): 0 (dropped) or 1/0.6 (kept, rescaled)
    dropped = ratio == 0
    assert torch.allclose(ratio[~dropped], torch.full_like(ratio[~dropped], 1 / 0.6))
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))   # the same mask at every time step
    assert 0.35 < dropped[:, 0].float().mean() < 0.45                # about 40 % of the inputs
    assert not torch.equal(dropped[0, 0], dropped[1, 0])             # a new mask per sequence
    lstm.eval()
    out = lstm(x)
    assert torch.equal(seen[-1], x) and torch.equal(out, lstm(x))


def test_keras_lstm_equals_torch_lstm_with_single_bias():
    torch.manual_seed(0)
    ours = KerasLSTM(7, 5).eval()
    ref = torch.nn.LSTM(7, 5, batch_first=True)
    with torch.no_grad():   # PyTorch's gate order i, f, g, o equals Keras' i, f, c, o
        ref.weight_ih_l0.copy_(ours.kernel.weight)
        ref.weight_hh_l0.copy_(ours.recurrent.weight)
        ref.bias_ih_l0.copy_(ours.kernel.bias)
        ref.bias_hh_l0.zero_()
    x = torch.randn(3, 9, 7)
    assert torch.allclose(ours(x), ref(x)[0][:, -1], atol=1e-6)
    assert torch.all(ours.kernel.bias[5:10] == 1)  # unit forget bias


# ------------------------------------------------------------------------------------------- cache
def test_feature_cache_reuse(tmp_path):
    paths = write_video_dataset(tmp_path, n_patients=3)
    ids = [f"vid_p{p:02d}_{v}" for p in range(3) for v in range(2)]
    calls = []

    def extract(frames):
        calls.append(len(frames))
        return frames.reshape(len(frames), -1)[:, :4].astype(np.float32)

    cache = FeatureCache(tmp_path / "cache", "k1")
    a = sequence_features(ids, paths["frames"], 5, extract, cache)
    assert a.shape == (6, 5, 4) and len(calls) == 6 and cache.misses == 6
    cache2 = FeatureCache(tmp_path / "cache", "k1")
    b = sequence_features(ids, paths["frames"], 5, extract, cache2)
    assert len(calls) == 6 and cache2.hits == 6 and cache2.misses == 0 and np.array_equal(a, b)
    # another frame count or changed pixels never hit a stale entry
    sequence_features(ids[:1], paths["frames"], 7, extract, FeatureCache(tmp_path / "cache", "k1"))
    assert len(calls) == 7
    z = dict(np.load(paths["frames"] / f"{ids[1]}.npz"))
    z["frames"] = 255 - z["frames"]
    write_npz(paths["frames"] / f"{ids[1]}.npz", **z)
    cache3 = FeatureCache(tmp_path / "cache", "k1")
    sequence_features(ids, paths["frames"], 5, extract, cache3)
    assert cache3.misses == 1 and cache3.hits == 5
    # another backbone key is a separate cache
    cache4 = FeatureCache(tmp_path / "cache", "k2")
    sequence_features(ids[:2], paths["frames"], 5, extract, cache4)
    assert cache4.misses == 2


# ------------------------------------------------------------------------------------------- backbones
def test_torchvision_backbones_offline():
    bb = build_backbone("resnet18", weights="none", input_size=64)
    assert bb(np.zeros((2, 40, 30), np.uint8)).shape == (2, 512)
    if offline_imagenet_file("mobilenet_v2") is not None:
        mb = build_backbone("mobilenet_v2", weights="imagenet", input_size=64)
        assert mb.dim == 1280 and mb.key_info["weights"].startswith("imagenet:b0353104")
        assert mb(np.full((1, 32, 32), 128, np.uint8)).shape == (1, 1280)
    if offline_imagenet_file("resnet50") is None:   # offline and no local file: a clear error, no download
        with pytest.raises(FileNotFoundError, match="offline"):
            build_backbone("resnet50", weights="imagenet")
    with pytest.raises(ValueError, match="valid names"):
        build_backbone("xception")


def test_frame_model_backbone_features(tmp_path):
    d = write_frame_model(tmp_path / "fold_0", 0, seed=1, arch="reg_stn")
    bb = build_backbone("frame_model", frame_model_dir=d, fold=0)
    feats = bb(np.zeros((3, 48, 48), np.uint8))
    assert feats.shape == (3, bb.dim) and bb.dim == 3 * 32   # full-frame localisation body + two crops, 32 ch each
    assert bb.key_info["weights"] == f"file:{file_digest(d / 'model.pt')}"


# ------------------------------------------------------------------------------------------- metrics
def test_classification_metrics_hand_values(tmp_path):
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    s = classification_scores(y_true, y_pred, DIAG)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["covid.precision"] == 1.0 and s["covid.recall"] == pytest.approx(2 / 3)
    assert s["covid.specificity"] == 1.0                           # TN 3, FP 0
    assert s["pneumonia.precision"] == 0.5 and s["pneumonia.recall"] == 0.5
    assert s["pneumonia.specificity"] == pytest.approx(3 / 4)      # TN 3, FP 1
    assert s["healthy.f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    # summary over two folds: population std
    for k, (t, p) in enumerate([(y_true, y_pred), (y_true, y_true)]):
        d = tmp_path / f"fold_{k}"
        write_json(d / "meta.json", {"classes": list(DIAG)})
        write_csv(d / "predictions.csv", pd.DataFrame({"video_id": [f"v{i}" for i in range(6)], "patient_id": "p",
                                                       "actual": [DIAG[i] for i in t],
                                                       "predicted": [DIAG[i] for i in p]}))
    out, rows = summarise_cnn_lstm([tmp_path / "fold_0", tmp_path / "fold_1"])
    assert out["accuracy_mean"] == pytest.approx((4 / 6 + 1) / 2)
    assert out["accuracy_std"] == pytest.approx(np.std([4 / 6, 1.0]))   # ddof = 0
    assert out["fold_1.accuracy"] == 1.0 and out["pooled.accuracy"] == pytest.approx(10 / 12)
    assert list(rows.columns) == ["actual", "predicted"] and len(rows) == 12
    assert all(isinstance(v, float) for v in out.values())


# ------------------------------------------------------------------------------------------- stage
def test_stage_beats_chance_reuses_cache_and_uses_its_own_fold(tmp_path, capsys):
    paths = write_video_dataset(tmp_path)
    fm = {k: write_frame_model(tmp_path / "frame" / f"fold_{k}", k, seed=10 + k) for k in range(3)}
    params = write_params(tmp_path / "params.yaml")
    meta = run_fold(tmp_path, paths, 1, fm[1], tmp_path / "out" / "fold_1", params)
    assert meta["target"] == "diagnosis" and meta["classes"] == list(DIAG)
    assert "cache 0 hits / 24 computed" in capsys.readouterr().out
    # fold 1 ran on fold 1's frame model only
    assert meta["backbone"]["weights"] == f"file:{file_digest(fm[1] / 'model.pt')}"
    assert meta["backbone"]["fold"] == 1
    m = json.loads((tmp_path / "out" / "fold_1" / "metrics.json").read_text())
    assert m["accuracy"] > 0.6           # chance is 1/3 (8 test videos)
    preds = pd.read_csv(tmp_path / "out" / "fold_1" / "predictions.csv")
    assert set(preds["patient_id"]) == {"P04", "P05", "P06", "P07"}   # fold 1's test patients only
    # default checkpoint_every 0: no checkpoint (the head trains in seconds); a stale one is removed
    assert not (tmp_path / "out" / "fold_1" / "checkpoint.pt").exists()
    (tmp_path / "out2" / "fold_1").mkdir(parents=True)
    (tmp_path / "out2" / "fold_1" / "checkpoint.pt").write_bytes(b"stale")
    # second run: every feature comes from the cache
    meta2 = run_fold(tmp_path, paths, 1, fm[1], tmp_path / "out2" / "fold_1", params)
    assert "cache 24 hits / 0 computed" in capsys.readouterr().out
    assert meta2 == meta     # same inputs, same meta.json (no run-dependent fields), cached features or not
    assert not (tmp_path / "out2" / "fold_1" / "checkpoint.pt").exists()
    # checkpoint_every > 0 writes the usual resumable checkpoint
    run_fold(tmp_path, paths, 1, fm[1], tmp_path / "out4" / "fold_1",
             write_params(tmp_path / "params_ckpt.yaml", checkpoint_every=10))
    ckpt = torch.load(tmp_path / "out4" / "fold_1" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 40 and "optimizer" in ckpt
    # another fold's frame model has seen fold 1's test patients: refused
    with pytest.raises(ValueError, match="leak"):
        run_fold(tmp_path, paths, 1, fm[0], tmp_path / "out3" / "fold_1", params)


def test_standardisation_uses_training_videos_only(tmp_path):
    """The feature mean/std saved in model.pt come from fold 1's training videos: changing the val and test
    patients' frames leaves them unchanged, changing a training video's frames does not."""
    import shutil

    base = write_video_dataset(tmp_path / "base")
    held_p = ["P00", "P01", "P04", "P05", "P06", "P07"]
    folds = json.loads(base["folds"].read_text())["folds"][1]
    assert set(held_p) == set(folds["val"]) | set(folds["test"]) and "P10" in folds["train"]

    def variant(name: str, patients: list[str]) -> dict[str, Path]:
        shutil.copytree(tmp_path / "base", tmp_path / name)
        paths = {k: tmp_path / name / v.relative_to(tmp_path / "base") for k, v in base.items()}
        for p in patients:
            for v in range(2):
                shard = paths["frames"] / f"vid_p{p[1:]}_{v}.npz"
                with np.load(shard) as z:
                    arrays = dict(z)
                arrays["frames"] = (255 - arrays["frames"]).astype(np.uint8)    # invert the frames
                write_npz(shard, **arrays)
        return paths

    fm = write_frame_model(tmp_path / "frame" / "fold_1", 1, seed=11)
    params = write_params(tmp_path / "params.yaml", epochs=1)
    stats = {}
    for name, patients in (("same", []), ("held_out_changed", held_p), ("train_changed", ["P10"])):
        paths = base if name == "same" else variant(name, patients)
        run_fold(tmp_path / name, paths, 1, fm, tmp_path / name / "out" / "fold_1", params)
        state = torch.load(tmp_path / name / "out" / "fold_1" / "model.pt", weights_only=True)
        stats[name] = (state["feature_mean"], state["feature_std"])
    assert not torch.equal(stats["same"][1], torch.ones_like(stats["same"][1]))     # standardisation is on
    assert all(torch.equal(a, b) for a, b in zip(stats["same"], stats["held_out_changed"]))
    assert not torch.equal(stats["same"][0], stats["train_changed"][0])


def test_target_falls_back_to_video_score(tmp_path):
    from lus.data.manifest import resolve_target

    paths = write_video_dataset(tmp_path, n_patients=3, diagnosis=False)
    man = pd.read_csv(paths["manifest"])
    col, classes, y = resolve_target(man, "auto")
    assert col == "video_score" and classes == ["score0", "score1", "score2", "score3"]
    assert y.tolist() == man["video_score"].tolist()
    man["diagnosis"] = [DIAG[i % 3] for i in range(len(man))]
    assert resolve_target(man, "auto")[0] == "diagnosis"
    assert resolve_target(man, "video_score")[0] == "video_score"


def test_shared_backbone_features_are_cached_before_the_folds_with_the_same_results(tmp_path, capsys):
    """An ImageNet backbone is the same in every fold: with two workers the stage computes each video's features
    once (split over the workers) before the folds start, and every fold ends as with one worker and no warm-up."""
    import stages.train_cnn_lstm as st

    paths = write_video_dataset(tmp_path)
    params = write_params(tmp_path / "params.yaml", backbone="mobilenet_v2", weights="imagenet", input_size=32,
                          epochs=3)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        st.main(st.build_parser().parse_args([
            "--params", str(params), "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
            "--manifest", str(paths["manifest"]), "--cache", str(out / "cache"), "--out", str(out / "models"),
            "--workers", str(workers), "--no-progress"]))
        runs[workers] = out
    log = capsys.readouterr().out
    assert "mobilenet_v2 features of 24 videos (24 computed, the rest cached)" in log   # the two-worker run only
    assert log.count("features of 24 videos") == 1
    for k in range(3):
        one, two = (runs[w] / "models" / f"fold_{k}" for w in (1, 2))
        assert (one / "predictions.csv").read_text() == (two / "predictions.csv").read_text(), k
        a, b = (torch.load(d / "model.pt", weights_only=True) for d in (one, two))
        assert all(torch.equal(a[key], b[key]) for key in a), k
    cached = [p for p in (runs[2] / "cache").rglob("*.npz")]
    assert len(cached) == 24                                   # one entry per video, written once
