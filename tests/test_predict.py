"""``lus predict`` on an export built from a tiny in-process pipeline run (synthetic data, 2 folds).

The module fixture runs the real stage functions (prepare -> extract_frames -> split -> train_frame@0,1
(1 epoch) -> predict_frames -> train_aggregator@0,1 -> train_segmentation@unet (2 steps)) and the
export, in about 20-30 s on two busy cores; every test below reuses it.
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
    for k in (0, 1):
        _stage(train_frame, p + common + ["--fold", str(k), "--out", str(root / f"models/frame/fold_{k}"),
                                          "--no-resume", "--no-progress"])
    _stage(predict_frames, p + common + ["--models", str(root / "models/frame"),
                                         "--out", str(root / "data/predictions/frames.parquet"),
                                         "--metrics", str(root / "data/predictions/frame_metrics.json"),
                                         "--confusion", str(root / "plots/frame/confusion.csv"),
                                         "--pictures", str(root / "plots/localization")])
    for k in (0, 1):
        _stage(train_aggregator, p + ["--fold", str(k), "--frames", str(root / "data/predictions/frames.parquet"),
                                      "--folds", str(folds), "--manifest", str(manifest),
                                      "--out", str(root / "models/aggregator")])
    _stage(train_segmentation, p + common + ["--arch", "unet", "--out", str(root / "models/segmentation/unet"),
                                             "--plots", str(root / "plots/segmentation/unet"), "--no-progress"])
    export_models(frame_dir=root / "models/frame", aggregator_dir=root / "models/aggregator",
                  segmentation_dir=root / "models/segmentation", raw_dir=raw, frames_report=frames / "report.json",
                  metrics_dir=root / "metrics", out_dir=root / "models/export", seed=0, folds=[0, 1],
                  seg_archs=["unet"], seg_boost=params["segmentation"]["boost"], card_path=root / "MODEL_CARD.md")
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


def _check_outputs(folder: Path, video: Path, with_segmentation: bool, ext: str = ".mp4") -> dict:
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
    height, width = h * s + band_height(w * s), w * s
    expected_shape = (height + height % 2, width + width % 2, 3)
    assert _decoded(folder / f"annotated{ext}") == (n, expected_shape)
    assert (folder / f"segmentation{ext}").is_file() == with_segmentation
    if with_segmentation:
        assert _decoded(folder / f"segmentation{ext}") == (n, expected_shape)
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
