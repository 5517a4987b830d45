"""``lus predict`` on an export built from a tiny in-process pipeline run (synthetic data, 2 folds).

The module fixture runs the real stage functions (prepare -> extract_frames -> split -> train_frame
(folds 0, 1; 1 epoch) -> predict_frames -> train_aggregator -> train_segmentation (unet, 2 steps) ->
train_cnn_lstm (frame-model backbone)) and the export, in about 20-30 s on two busy cores; every
test below reuses it. A diagnosis-only package (like the POCUS preset's: no frame models, a torchvision
CNN-LSTM backbone) is trained from the same frames by train_cnn_lstm with other params.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from lus.cli import main as lus_main
from lus.config.base import read_params_file
from lus.config.presets import deep_merge
from lus.data.video import count_frames
from lus.export.bundle import load_bundle
from lus.export.package import export_models
from lus.models.uninorm import reference_aggregate
from lus.predict.annotate import band_height, display_scale
from lus.predict.run import CSV_COLUMNS, PredictOptions, predict_video
from lus.predict.stream import VideoStream
from tests.conftest import PROJECT_ROOT

TINY = {"synthetic": {"workers": 1}, "extract": {"workers": 1},
        "frame_model": {"epochs": 1, "milestones": [1], "pictures_per_score": 0},
        "segmentation": {"archs": ["unet"], "epochs": 1, "steps_per_epoch": 2, "n_overlays": 0}}


def _stage(module, argv: list[str]) -> None:
    module.main(module.build_parser().parse_args(argv))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny run (absolute paths, no chdir) with its export in ``models/export``."""
    import stages.extract_frames as extract_frames
    import stages.predict_frames as predict_frames
    import stages.prepare as prepare
    import stages.split as split
    import stages.train_aggregator as train_aggregator
    import stages.train_cnn_lstm as train_cnn_lstm
    import stages.train_frame as train_frame
    import stages.train_segmentation as train_segmentation

    root = tmp_path_factory.mktemp("tiny_run")
    params = deep_merge(read_params_file(PROJECT_ROOT / "params.yaml"), read_params_file(PROJECT_ROOT / "presets/tiny.yaml"))
    params = deep_merge(params, TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = ["--params", str(root / "params.yaml")]
    raw, frames, folds, manifest = root / "data/raw", root / "data/frames", root / "data/splits/folds.json", \
        root / "data/raw/manifest.csv"
    common = ["--frames", str(frames), "--folds", str(folds), "--manifest", str(manifest)]
    _stage(prepare, p + ["--out", str(raw)])
    _stage(extract_frames, p + ["--raw", str(raw), "--out", str(frames), "--no-progress"])
    _stage(split, p + ["--manifest", str(manifest), "--index", str(frames / "index.csv"), "--out", str(folds)])
    _stage(train_frame, p + common + ["--out", str(root / "models/frame"), "--no-resume", "--no-progress"])
    _stage(predict_frames, p + common + ["--models", str(root / "models/frame"),
                                         "--out", str(root / "data/predictions/frames.parquet"),
                                         "--metrics", str(root / "data/predictions/frame_metrics.json"),
                                         "--confusion", str(root / "plots/frame/confusion.csv"),
                                         "--pictures", str(root / "plots/localization")])
    _stage(train_aggregator, p + ["--frames", str(root / "data/predictions/frames.parquet"),
                                  "--folds", str(folds), "--manifest", str(manifest),
                                  "--out", str(root / "models/aggregator")])
    _stage(train_segmentation, p + common + ["--arch", "unet", "--out", str(root / "models/segmentation"),
                                             "--plots", str(root / "plots/segmentation/archs"), "--no-progress"])
    _stage(train_cnn_lstm, p + common + ["--frame-models", str(root / "models/frame"),
                                         "--cache", str(root / ".cache/features"),
                                         "--out", str(root / "models/cnn_lstm"), "--no-progress"])
    export_models(frame_dir=root / "models/frame", aggregator_dir=root / "models/aggregator",
                  segmentation_dir=root / "models/segmentation", raw_dir=raw, frames_report=frames / "report.json",
                  metrics_dir=root / "metrics", out_dir=root / "models/export", seed=0, folds=[0, 1],
                  seg_archs=["unet"], seg_boost=params["segmentation"]["boost"], card_path=root / "MODEL_CARD.md",
                  cnn_lstm_dir=root / "models/cnn_lstm")
    return root


def _video(run: Path, video_id: str) -> Path:
    return run / "data/raw/synthetic/videos" / f"{video_id}.avi"


def _test_video_of_fold(run: Path, fold: int) -> str:
    patients = json.loads((run / "data/splits/folds.json").read_text())["folds"][fold]["test"]
    manifest = pd.read_csv(run / "data/raw/manifest.csv")
    return str(manifest.loc[manifest["patient_id"].isin(patients), "video_id"].iloc[0])


def _predict(*argv: str) -> int:
    return lus_main(["predict", *argv, "--no-progress"])


def _decoded(path: Path) -> tuple[int, tuple[int, ...]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, ()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    return n, shape


def _check_outputs(folder: Path, video: Path, with_segmentation: bool, ext: str = ".mp4", bands: int = 2) -> dict:
    n = count_frames(video)
    frames = pd.read_csv(folder / "frames.csv")
    assert list(frames.columns) == CSV_COLUMNS
    assert frames["frame_index"].tolist() == list(range(n))
    probs = frames[["p0", "p1", "p2", "p3"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (frames["score"] == probs.argmax(1)).all()
    summary = json.loads((folder / "video.json").read_text())
    assert summary["n_frames"] == n and summary["video_score"] in (0, 1, 2, 3)
    assert set(summary["aggregated"]) == {"0", "1", "2", "3"}
    assert summary["video_score"] == int(np.argmax([summary["aggregated"][str(c)] for c in range(4)]))
    h, w = cv2.VideoCapture(str(video)).read()[1].shape[:2]
    s = display_scale(w)
    band = band_height(w * s)

    def shape(n_bands: int) -> tuple[int, int, int]:
        height, width = h * s + n_bands * band, w * s
        return height + height % 2, width + width % 2, 3

    assert _decoded(folder / f"annotated{ext}") == (n, shape(bands))  # frame score (+ diagnosis) bands
    assert (folder / f"segmentation{ext}").is_file() == with_segmentation
    if with_segmentation:
        assert _decoded(folder / f"segmentation{ext}") == (n, shape(1))
    return summary


def test_predict_synthetic_video_writes_every_output(run, tmp_path):
    video = _video(run, "h0_p00_v0")
    assert _predict(str(video), "--model", str(run / "models/export"), "--out", str(tmp_path), "--snapshot") == 0
    folder = tmp_path / "h0_p00_v0"
    summary = _check_outputs(folder, video, with_segmentation=True)
    snap = cv2.imread(str(folder / "snapshot.png"))
    assert snap is not None and snap.shape[0] > band_height(snap.shape[1])
    # the video score is the uninorm of the written frame probabilities with the mean neutral elements
    frames = pd.read_csv(folder / "frames.csv")
    e = summary["neutral"]
    o = [reference_aggregate(frames[f"p{c}"].tolist(), e[c]) for c in range(4)]
    np.testing.assert_allclose(o, [summary["aggregated"][str(c)] for c in range(4)], atol=1e-9)
    agg = json.loads((run / "models/export/aggregator.json").read_text())
    np.testing.assert_allclose(e, np.mean([agg["neutral_per_fold"]["0"], agg["neutral_per_fold"]["1"]], axis=0))
    assert sorted(os.listdir(tmp_path)) == ["h0_p00_v0"]  # no temporary leftovers


@pytest.mark.parametrize("fold", [0, 1])
def test_fold_k_reproduces_the_pipeline_predictions(run, tmp_path, fold):
    """``--fold K`` on a test video of fold K = predict_frames' out-of-fold rows and train_aggregator's score."""
    vid = _test_video_of_fold(run, fold)
    assert _predict(str(_video(run, vid)), "--model", str(run / "models/export"), "--out", str(tmp_path),
                    "--fold", str(fold), "--no-video", "--no-segmentation") == 0
    ours = pd.read_csv(tmp_path / vid / "frames.csv")
    pipe = pd.read_parquet(run / "data/predictions/frames.parquet")
    pipe = pipe[pipe["video_id"] == vid]
    assert (pipe["fold"] == fold).all() and len(pipe) == len(ours)
    merged = pipe.merge(ours, on="frame_index", suffixes=("_pipe", "_ours"))
    assert len(merged) == len(pipe)
    for col in ["p0", "p1", "p2", "p3", *[f"theta{k}_{i}" for k in (1, 2) for i in range(6)]]:
        np.testing.assert_allclose(merged[f"{col}_ours"], merged[f"{col}_pipe"], atol=1e-5, err_msg=col)
    summary = json.loads((tmp_path / vid / "video.json").read_text())
    agg = pd.read_csv(run / f"models/aggregator/fold_{fold}_predictions.csv").set_index("video_id").loc[vid]
    assert summary["video_score"] == int(agg["pred_uninorm"])
    np.testing.assert_allclose([summary["aggregated"][str(c)] for c in range(4)],
                               [agg[f"agg_{c}"] for c in range(4)], atol=1e-4)
    assert summary["models"]["folds"] == [fold]


def test_default_is_the_mean_of_the_fold_models(run, tmp_path):
    video = _video(run, "h1_p00_v0")
    model = str(run / "models/export")
    for args in ([], ["--fold", "0"], ["--fold", "1"]):
        out = tmp_path / ("ens" if not args else f"f{args[1]}")
        assert _predict(str(video), "--model", model, "--out", str(out), "--no-video", "--no-segmentation", *args) == 0
    read = {name: pd.read_csv(tmp_path / name / "h1_p00_v0/frames.csv")[["p0", "p1", "p2", "p3"]].to_numpy()
            for name in ("ens", "f0", "f1")}
    np.testing.assert_allclose(read["ens"], (read["f0"] + read["f1"]) / 2, atol=1e-6)


def test_stream_preprocesses_exactly_like_extraction(run):
    """Chunks never exceed the chunk size, and their frames equal the training shard bit for bit."""
    bundle = load_bundle(run / "models/export", with_segmentation=False)
    for vid in ("h0_p00_v0", "h1_p02_v1"):
        with VideoStream(_video(run, vid), bundle.extract, chunk_size=5) as stream:
            chunks = list(stream.chunks())
        assert max(len(c) for c in chunks) <= 5
        small = np.concatenate([c.small for c in chunks])
        with np.load(run / f"data/frames/{vid}.npz") as shard:
            assert np.concatenate([c.index for c in chunks]).tolist() == shard["frame_index"].tolist()
            np.testing.assert_array_equal(small, shard["frames"])


@pytest.mark.parametrize("name", ["covid-blues/lus_videos/patient_5_R3.mp4", "pocus/videos/Cov-Atlas+(45).gif"])
def test_predict_real_video(run, tmp_path, shared_data, name):
    video = shared_data / name
    if not video.is_file():
        pytest.skip(f"{video} not available")
    assert _predict(str(video), "--model", str(run / "models/export"), "--out", str(tmp_path),
                    "--video-format", "avi") == 0
    _check_outputs(tmp_path / video.stem, video, with_segmentation=True, ext=".avi")


# ----------------------------------------------------------------------------------------- bad inputs

def test_missing_and_unreadable_inputs_fail_clearly_before_any_output(run, tmp_path, capsys):
    model = str(run / "models/export")
    missing = tmp_path / "nope.mp4"
    assert _predict(str(_video(run, "h0_p00_v0")), str(missing), "--model", model, "--out", str(tmp_path / "o")) == 1
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # inputs are checked before anything is written

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert _predict(str(text), "--model", model, "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and "unsupported video container" in err

    assert _predict(str(_video(run, "h0_p00_v0")), "--model", str(tmp_path / "no_model"), "--out",
                    str(tmp_path / "o")) == 1
    assert "no_model" in capsys.readouterr().err
    assert _predict(str(_video(run, "h0_p00_v0")), "--model", model, "--out", str(tmp_path / "o"), "--fold", "7") == 1
    assert "--fold 7" in capsys.readouterr().err


def test_empty_and_corrupt_videos_are_named_and_leave_no_folder(run, tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(os.urandom(4096))
    good = _video(run, "h0_p01_v0")
    out = tmp_path / "out"
    assert _predict(str(empty), str(good), str(corrupt), "--model", str(run / "models/export"), "--out", str(out),
                    "--no-segmentation") == 1
    err = capsys.readouterr().err
    assert str(empty) in err and str(corrupt) in err and "2 of 3 video(s) failed" in err
    assert sorted(os.listdir(out)) == ["h0_p01_v0"]  # the good video is complete, the bad ones left nothing


def test_failure_mid_video_leaves_no_half_written_output(run, tmp_path):
    bundle = load_bundle(run / "models/export", with_segmentation=False)
    real = bundle.frame
    calls = {"n": 0}

    def failing(frames):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("simulated failure in the second chunk")
        return real(frames)

    bundle.frame = failing  # type: ignore[assignment]
    with pytest.raises(ValueError, match="simulated"):
        predict_video(_video(run, "h0_p00_v0"), bundle, tmp_path / "h0_p00_v0", PredictOptions(chunk_size=4,
                                                                                              progress=False))
    assert calls["n"] == 2 and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------- CNN-LSTM diagnosis

def _stage_diagnosis(run: Path, fold: int, video_id: str) -> tuple[list[str], np.ndarray, list[int]]:
    """train_cnn_lstm's own test prediction of ``video_id`` (classes, probabilities) and the shard frames it read."""
    from lus.data.video_sampling import sample_indices

    meta = json.loads((run / f"models/cnn_lstm/fold_{fold}/meta.json").read_text())
    table = pd.read_csv(run / f"models/cnn_lstm/fold_{fold}/predictions.csv", dtype={"video_id": str})
    row = table.set_index("video_id").loc[video_id]
    with np.load(run / f"data/frames/{video_id}.npz") as shard:
        index = shard["frame_index"]
    read = index[sample_indices(len(index), meta["params"]["seq_len"])].tolist()
    return meta["classes"], np.array([row[f"p_{c}"] for c in meta["classes"]]), read


@pytest.mark.parametrize("fold", [0, 1])
def test_fold_k_diagnosis_reproduces_the_cnn_lstm_stage(run, tmp_path, fold, capsys):
    """``--fold K`` on a test video of fold K gives train_cnn_lstm's fold K's own test probabilities and frames."""
    vid = _test_video_of_fold(run, fold)
    assert _predict(str(_video(run, vid)), "--model", str(run / "models/export"), "--out", str(tmp_path),
                    "--fold", str(fold), "--no-video", "--no-segmentation") == 0
    diagnosis = json.loads((tmp_path / vid / "video.json").read_text())["diagnosis"]
    classes, probs, read = _stage_diagnosis(run, fold, vid)
    assert diagnosis["classes"] == classes and diagnosis["folds"] == [fold]
    np.testing.assert_allclose([diagnosis["probabilities"][c] for c in classes], probs, atol=1e-5)
    assert diagnosis["predicted"] == classes[int(np.argmax(probs))]
    assert diagnosis["frames_read"] == read
    assert f"diagnosis {diagnosis['predicted']}" in capsys.readouterr().out


def test_default_diagnosis_is_the_mean_of_the_fold_softmaxes(run, tmp_path):
    video = _video(run, "h1_p00_v0")
    assert _predict(str(video), "--model", str(run / "models/export"), "--out", str(tmp_path), "--no-video",
                    "--no-segmentation") == 0
    d = json.loads((tmp_path / "h1_p00_v0/video.json").read_text())["diagnosis"]
    assert d["folds"] == [0, 1] and set(d["per_fold"]) == {"0", "1"}
    for c in d["classes"]:
        assert d["probabilities"][c] == pytest.approx((d["per_fold"]["0"][c] + d["per_fold"]["1"][c]) / 2, abs=1e-7)
    assert d["per_fold"]["0"] != d["per_fold"]["1"]  # two different models, not one counted twice


def test_package_without_cnn_lstm_predicts_severity_and_says_so_once(run, tmp_path, capsys):
    out = tmp_path / "export"
    manifest = export_models(frame_dir=run / "models/frame", aggregator_dir=run / "models/aggregator",
                             segmentation_dir=run / "models/segmentation", raw_dir=run / "data/raw",
                             frames_report=run / "data/frames/report.json", metrics_dir=run / "metrics", out_dir=out,
                             seed=0, folds=[0, 1], seg_archs=["unet"], seg_boost=[1, 1, 2, 2, 2])
    assert manifest["cnn_lstm"]["applicable"] == 0 and not any(f.startswith("cnn_lstm") for f in manifest["files"])
    videos = [_video(run, "h0_p00_v0"), _video(run, "h1_p00_v0")]
    assert _predict(*map(str, videos), "--model", str(out), "--out", str(tmp_path / "p"), "--no-segmentation") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "CNN-LSTM" in line] == [f"note: {out} has no CNN-LSTM (no CNN-LSTM given to "
                                                               "the export): no diagnosis, severity only"]
    for v in videos:
        summary = _check_outputs(tmp_path / "p" / v.stem, v, with_segmentation=False, bands=1)
        assert "diagnosis" not in summary and summary["models"]["cnn_lstm"] is None


def _diagnosis_only_package(run: Path, root: Path, weights: str) -> Path:
    """A POCUS-like package: frame models and segmentation 'not applicable', a mobilenet_v2 CNN-LSTM trained by
    the stage on the fixture's frames (weights ``none`` = random init, or ``imagenet`` = the offline file)."""
    import stages.train_cnn_lstm as train_cnn_lstm

    params = yaml.safe_load((run / "params.yaml").read_text())
    params["cnn_lstm"].update({"backbone": "mobilenet_v2", "weights": weights, "input_size": 32})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _stage(train_cnn_lstm, ["--params", str(root / "params.yaml"),
                            "--frames", str(run / "data/frames"), "--folds", str(run / "data/splits/folds.json"),
                            "--manifest", str(run / "data/raw/manifest.csv"), "--cache", str(root / "cache"),
                            "--out", str(root / "cnn_lstm"), "--no-progress"])
    for k in (0, 1):
        frame = root / f"frame/fold_{k}"  # what train_frame writes for a source without severity labels
        frame.mkdir(parents=True)
        (frame / "meta.json").write_text(json.dumps({"fold": k, "applicable": 0, "reason": "no severity labels"}))
    seg = root / "segmentation/unet"
    seg.mkdir(parents=True)
    (seg / "meta.json").write_text(json.dumps({"arch": "unet", "applicable": 0, "reason": "no masks", "folds": []}))
    (root / "metrics").mkdir()
    (root / "metrics/cnn_lstm.json").write_text(json.dumps({"cnn_lstm": {
        "n_folds": 2, "accuracy_mean": 0.825, "accuracy_std": 0.069, "f1_macro_mean": 0.8, "f1_macro_std": 0.1,
        "covid": {"precision_mean": 0.853, "precision_std": 0.147, "recall_mean": 0.66, "recall_std": 0.307,
                  "specificity_mean": 0.953, "specificity_std": 0.044}}}))
    export_models(frame_dir=root / "frame", aggregator_dir=root / "aggregator", segmentation_dir=root / "segmentation",
                  raw_dir=run / "data/raw", frames_report=run / "data/frames/report.json", metrics_dir=root / "metrics",
                  out_dir=root / "export", seed=0, folds=[0, 1], seg_archs=["unet"], seg_boost=[1, 1, 2, 2, 2],
                  card_path=root / "MODEL_CARD.md", cnn_lstm_dir=root / "cnn_lstm")
    return root / "export"


@pytest.mark.parametrize("weights", ["none", "imagenet"])
def test_diagnosis_only_package_like_pocus(run, tmp_path, weights, capsys):
    from lus.models.backbones import offline_imagenet_file

    if weights == "imagenet" and offline_imagenet_file("mobilenet_v2") is None:
        pytest.skip("offline ImageNet MobileNetV2 weights not installed")
    export = _diagnosis_only_package(run, tmp_path, weights)
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["frame_model"]["applicable"] == 0 and manifest["cnn_lstm"]["backbone"]["name"] == "mobilenet_v2"
    stored = sorted(f for f in manifest["files"] if f.startswith("cnn_lstm/backbone"))
    # random-init backbones travel with the package; ImageNet ones are the offline file (digest recorded)
    assert stored == ([] if weights == "imagenet" else ["cnn_lstm/backbone_fold_0.pt", "cnn_lstm/backbone_fold_1.pt"])
    card = (tmp_path / "MODEL_CARD.md").read_text()
    for text in ("CNN-LSTM of Barros et al.", "mobilenet_v2 features", "`cnn_lstm/fold_<k>.pt`",
                 "| CNN-LSTM video classifier | accuracy / macro F1 / weighted F1 (%), mean ± std over 2 folds; pooled "
                 "accuracy | 82.5 ± 6.9 / 80.0 ± 10.0 / – ; – |".replace(" ; ", "; "),
                 "| CNN-LSTM, class covid | precision / recall (sensitivity) / specificity (%), mean ± std | "
                 "85.3 ± 14.7 / 66.0 ± 30.7 / 95.3 ± 4.4 |"):
        assert text in card, text
    bundle = load_bundle(export)
    assert bundle.frame is None and bundle.cnn_lstm is not None and bundle.segmentation is None
    for fold in (0, 1):
        vid = _test_video_of_fold(run, fold)
        video = _video(run, vid)
        out = tmp_path / f"pred{fold}"
        assert _predict(str(video), "--model", str(export), "--out", str(out), "--fold", str(fold), "--snapshot") == 0
        summary = json.loads((out / vid / "video.json").read_text())
        assert "video_score" not in summary and not (out / vid / "frames.csv").exists()
        meta = json.loads((tmp_path / f"cnn_lstm/fold_{fold}/meta.json").read_text())
        table = pd.read_csv(tmp_path / f"cnn_lstm/fold_{fold}/predictions.csv").set_index("video_id").loc[vid]
        np.testing.assert_allclose([summary["diagnosis"]["probabilities"][c] for c in meta["classes"]],
                                   [table[f"p_{c}"] for c in meta["classes"]], atol=1e-5)
        _check_annotated_diagnosis_only(out / vid, video)
        assert "CNN-LSTM" not in capsys.readouterr().out.split("diagnosis")[0]  # no 'has no CNN-LSTM' note


def _check_annotated_diagnosis_only(folder: Path, video: Path) -> None:
    n = count_frames(video)
    h, w = cv2.VideoCapture(str(video)).read()[1].shape[:2]
    s = display_scale(w)
    height, width = h * s + band_height(w * s), w * s
    assert _decoded(folder / "annotated.mp4") == (n, (height + height % 2, width + width % 2, 3))
    snap = cv2.imread(str(folder / "snapshot.png"))
    assert snap.shape[:2] == (height, width) and snap[:band_height(w * s)].max() > 0  # the diagnosis band is drawn


def test_export_refuses_a_cnn_lstm_trained_on_another_frame_model(run, tmp_path):
    """The frame_model backbone is the exported frame/fold_k.pt only if train_cnn_lstm read that very file."""
    import shutil

    cnn = shutil.copytree(run / "models/cnn_lstm", tmp_path / "cnn_lstm")
    meta_path = cnn / "fold_1/meta.json"
    meta = json.loads(meta_path.read_text())
    meta["backbone"]["weights"] = "file:0123456789abcdef"  # as if trained before the frame model was retrained
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"fold_1/meta.json.*rerun train_cnn_lstm"):
        export_models(frame_dir=run / "models/frame", aggregator_dir=run / "models/aggregator",
                      segmentation_dir=run / "models/segmentation", raw_dir=run / "data/raw",
                      frames_report=run / "data/frames/report.json", metrics_dir=run / "metrics",
                      out_dir=tmp_path / "export", seed=0, folds=[0, 1], seg_archs=["unet"], seg_boost=[1, 1, 2, 2, 2],
                      cnn_lstm_dir=cnn)
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("settings", [{"stride": 2, "max_frames": 7}, {"target_fps": 4.0, "max_frames": 0},
                                      {"max_frames": 3}, {"crop": "none", "max_frames": 9}])
def test_cnn_lstm_reads_the_frames_the_stage_read_from_the_shard(run, settings):
    """Frame selection (stride / target_fps / max_frames) then seq_len sampling, pixel for pixel like
    extraction + train_cnn_lstm (the POCUS preset uses max_frames 40)."""
    from lus.config.extract import ExtractSection
    from lus.data.extract import VideoJob, extract_arrays
    from lus.data.video_sampling import sample_indices
    from lus.predict.diagnosis import read_sampled_frames

    cfg = ExtractSection.from_dict({**load_bundle(run / "models/export", with_segmentation=False).extract.to_dict(),
                                    **settings})
    for vid in ("h0_p00_v0", "h1_p02_v1"):
        shard, _ = extract_arrays(VideoJob(vid, _video(run, vid)), cfg, threads=1)
        for seq_len in (4, 6, 40):
            pick = sample_indices(len(shard["frames"]), seq_len)
            frames, numbers = read_sampled_frames(_video(run, vid), cfg, seq_len)
            assert numbers.tolist() == shard["frame_index"][pick].tolist(), (vid, seq_len)
            np.testing.assert_array_equal(frames, shard["frames"][pick])
