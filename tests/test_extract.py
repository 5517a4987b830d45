"""Frame extraction (lus.data.extract, stages/extract_frames.py) on tiny MJPG videos built in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lus.config.base import ParamsError
from lus.config.extract import ExtractSection
from lus.data.extract import (VideoJob, extract_all, extract_video, frame_selector, jobs_from_manifest, resize_area,
                              spread)
from lus.data.manifest import validate_manifest
from lus.data.shards import INDEX_COLUMNS, read_shard
from lus.data.video import VideoError, count_frames
from lus.io import WriteError, write_csv, write_json

PROJECT = Path(__file__).resolve().parents[1]
REAL = (PROJECT / ".." / "shared" / "data").resolve()
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not available at {REAL}")
SECTOR = (20, 20, 141, 111)  # x0, y0, x1, y1 of the synthetic sector


def sector_frames(n: int, seed: int = 0, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) frames with a speckle fan + static text/ruler, and the fan mask (H, W) uint8."""
    rng = np.random.default_rng(seed)
    fan = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = SECTOR
    cv2.fillPoly(fan, [np.array([[60, y0], [100, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]], np.int32)], 1)
    frames = np.zeros((n, h, w), np.uint8)
    for t in range(n):
        frames[t] = np.clip(rng.rayleigh(50, (h, w)), 0, 255).astype(np.uint8) * fan
        cv2.putText(frames[t], "LUS 12cm", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
        for y in range(20, 111, 10):
            frames[t, y, 150:156] = 230
    return frames, fan


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames.shape[1:3][::-1])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def cfg(**kw) -> ExtractSection:
    return ExtractSection.from_dict({"height": 32, "width": 32, "workers": 1, **kw})


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Data root with 3 videos (12/20/9 frames, 10/20/10 fps); video b has labels, annotators and masks."""
    root = tmp_path / "root"
    rows = []
    for vid, n, fps in (("a", 12, 10.0), ("b", 20, 20.0), ("c", 9, 10.0)):
        frames, fan = sector_frames(n, seed=len(rows))
        write_video(root / "videos" / f"{vid}.avi", frames, fps)
        row = {"video_id": vid, "path": f"videos/{vid}.avi", "patient_id": f"p{vid}", "fps": fps, "n_frames": n}
        if vid == "b":
            labels = (np.arange(n) // 5 % 4).astype(np.int8)
            annotators = np.stack([labels, np.roll(labels, 1)]).astype(np.int8)
            masks = np.stack([fan * (1 + lab) for lab in labels]).astype(np.uint8)
            (root / "labels").mkdir()
            np.savez(root / "labels" / "b.npz", labels=labels, annotators=annotators, masks=masks)
            row.update(frame_labels="labels/b.npz", masks="labels/b.npz")
        rows.append(row)
    manifest = validate_manifest(pd.DataFrame(rows), root, source="test manifest")
    return root, manifest


def run(dataset: tuple[Path, pd.DataFrame], out: Path, **kw):
    root, manifest = dataset
    return extract_all(jobs_from_manifest(manifest, root), cfg(**kw), out, progress=False)


# --------------------------------------------------------------------------- selection and resize

def test_frame_selector_stride_and_time() -> None:
    assert [i for i in range(10) if frame_selector(cfg(stride=3), 25.0)(i)] == [0, 3, 6, 9]
    by_time = frame_selector(cfg(target_fps=5), 20.0)
    assert [i for i in range(20) if by_time(i)] == [0, 4, 8, 12, 16]
    uneven = frame_selector(cfg(target_fps=10), 25.0)  # every 2.5 frames -> 0, 3, 5, 8, 10
    assert [i for i in range(11) if uneven(i)] == [0, 3, 5, 8, 10]
    assert all(frame_selector(cfg(target_fps=50), 25.0)(i) for i in range(30))  # never upsample
    with pytest.raises(VideoError, match="frame rate unknown"):
        frame_selector(cfg(target_fps=5), float("nan"), "x.avi")


def test_stride_and_target_fps_are_exclusive() -> None:
    with pytest.raises(ParamsError, match="exclusive"):
        cfg(stride=2, target_fps=5)
    with pytest.raises(ParamsError, match="extract.on_error"):
        cfg(on_error="ignore")


def test_spread_is_even_and_keeps_ends() -> None:
    assert spread(10, 4).tolist() == [0, 3, 6, 9]
    assert spread(5, 0).tolist() == [0, 1, 2, 3, 4] and spread(3, 8).tolist() == [0, 1, 2]


def test_resize_area_is_an_area_filter() -> None:
    img = np.random.default_rng(0).integers(0, 256, (700, 690), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)  # speckle-like correlated texture
    ref = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    out = resize_area(img, 64, 64)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref).mean() < 2.0  # staged area means ~ one INTER_AREA call
    checker = (np.indices((350, 340)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert np.abs(resize_area(checker, 64, 64).astype(int) - 127).max() <= 3  # no aliasing
    small = img[:120, :100]  # < 2x the target: one plain INTER_AREA call, identical
    assert (resize_area(small, 64, 64) == cv2.resize(small, (64, 64), interpolation=cv2.INTER_AREA)).all()
    assert resize_area(img[:40, :30], 64, 64).shape == (64, 64)  # upscaling works too


# --------------------------------------------------------------------------- shards and index

def test_frame_counts_equal_decoded_counts(dataset, tmp_path: Path) -> None:
    root, manifest = dataset
    result = run(dataset, tmp_path / "out")
    index = result.index
    assert list(index.columns) == INDEX_COLUMNS
    assert index["video_id"].tolist() == ["a", "b", "c"]  # manifest order
    for rec in index.itertuples():
        decoded = count_frames(root / "videos" / f"{rec.video_id}.avi")
        shard = read_shard(tmp_path / "out" / rec.shard)
        assert rec.n_decoded == decoded == rec.n_frames == len(shard["frames"])
        assert shard["frames"].shape[1:] == (32, 32) and shard["frames"].dtype == np.uint8
        assert shard["frame_index"].tolist() == list(range(decoded))
    assert index["fps"].tolist() == [10.0, 20.0, 10.0]
    assert result.report["frames_decoded"] == 41 and result.report["skipped"] == []


def test_crop_removes_burned_in_text(dataset, tmp_path: Path) -> None:
    index = run(dataset, tmp_path / "out").index
    for rec in index.itertuples():
        x0, y0, x1, y1 = SECTOR
        assert abs(rec.crop_x0 - x0) <= 6 and abs(rec.crop_y0 - y0) <= 6, rec
        assert abs(rec.crop_x1 - x1) <= 6 and abs(rec.crop_y1 - y1) <= 6, rec
        assert rec.crop_y0 > 14 and rec.crop_x1 < 150  # text rows 0..13, ruler from x = 150


def test_crop_auto_blanks_text_in_the_box_corners(tmp_path: Path) -> None:
    """A marker inside the sector's bounding box but outside the fan is blanked (auto), kept (box)."""
    frames, _ = sector_frames(16)
    frames[:, 22:30, 24:44] = 220  # static marker in the top-left corner of the box
    root = tmp_path / "root"
    write_video(root / "v.avi", frames, 10.0)
    np.savez(root / "m.npz", masks=np.ones(frames.shape, np.uint8))  # "lung" everywhere
    jobs = [VideoJob("v", root / "v.avi", masks=root / "m.npz")]
    auto = extract_all(jobs, cfg(width=121, height=91), tmp_path / "auto", progress=False)
    boxed = extract_all(jobs, cfg(width=121, height=91, crop="box"), tmp_path / "box", progress=False)
    assert auto.index.iloc[0].tolist()[5:9] == boxed.index.iloc[0].tolist()[5:9]  # same box
    x0, y0 = int(auto.index.loc[0, "crop_x0"]), int(auto.index.loc[0, "crop_y0"])
    corner = (slice(None), slice(22 - y0 + 1, 30 - y0 - 1), slice(24 - x0 + 1, 44 - x0 - 1))  # ~1:1 scale
    box_shard, auto_shard = read_shard(tmp_path / "box" / "v.npz"), read_shard(tmp_path / "auto" / "v.npz")
    assert box_shard["frames"][corner].mean() > 150 and (box_shard["masks"][corner] == 1).all()
    assert auto_shard["frames"][corner].mean() < 20
    assert (auto_shard["masks"][corner] == 0).all()  # blanked pixels are background in the masks too
    assert auto_shard["frames"][:, 40:60, 50:70].mean() > 30  # the fan itself is untouched
    assert (auto_shard["masks"][:, 40:60, 50:70] == 1).all()


def test_crop_none_keeps_the_full_frame(dataset, tmp_path: Path) -> None:
    index = run(dataset, tmp_path / "out", crop="none").index
    assert (index[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy() == [0, 0, 160, 120]).all()


def test_stride_target_fps_and_max_frames(dataset, tmp_path: Path) -> None:
    strided = run(dataset, tmp_path / "s", stride=3).index.set_index("video_id")
    assert strided["n_frames"].to_dict() == {"a": 4, "b": 7, "c": 3}
    assert read_shard(tmp_path / "s" / "b.npz")["frame_index"].tolist() == list(range(0, 20, 3))
    timed = run(dataset, tmp_path / "t", target_fps=5).index.set_index("video_id")
    assert timed["n_frames"].to_dict() == {"a": 6, "b": 5, "c": 5}  # 10 fps -> every 2nd, 20 fps -> every 4th
    assert read_shard(tmp_path / "t" / "b.npz")["frame_index"].tolist() == [0, 4, 8, 12, 16]
    capped = run(dataset, tmp_path / "m", max_frames=4).index.set_index("video_id")
    assert capped["n_frames"].to_dict() == {"a": 4, "b": 4, "c": 4}
    assert read_shard(tmp_path / "m" / "b.npz")["frame_index"].tolist() == [0, 6, 13, 19]


def test_labels_annotators_and_masks_follow_the_frames(dataset, tmp_path: Path) -> None:
    root, _ = dataset
    source = np.load(root / "labels" / "b.npz")
    index = run(dataset, tmp_path / "out", stride=2).index.set_index("video_id")
    assert bool(index.loc["b", "has_labels"]) and bool(index.loc["b", "has_masks"])
    assert not index.loc["a", "has_labels"]
    shard = read_shard(tmp_path / "out" / "b.npz")
    idx = shard["frame_index"]
    assert idx.tolist() == list(range(0, 20, 2))
    assert shard["labels"].dtype == np.int8 and shard["labels"].tolist() == source["labels"][idx].tolist()
    assert shard["annotators"].shape == (2, 10) and (shard["annotators"] == source["annotators"][:, idx]).all()
    masks = shard["masks"]
    assert masks.shape == (10, 32, 32) and masks.dtype == np.uint8
    for t, lab in enumerate(shard["labels"]):
        assert set(np.unique(masks[t])) <= {0, 1 + int(lab)}  # nearest resize: no blended classes
        assert (masks[t] > 0).mean() > 0.4  # cropped to the sector, the fan fills the frame
    assert set(read_shard(tmp_path / "out" / "a.npz")) == {"frames", "frame_index"}


def test_annotation_length_must_match_decoded_count(dataset, tmp_path: Path) -> None:
    root, manifest = dataset
    np.savez(root / "labels" / "b.npz", labels=np.zeros(21, np.int8))
    jobs = [j for j in jobs_from_manifest(manifest, root) if j.video_id == "b"]
    jobs[0] = VideoJob("b", jobs[0].video, labels=jobs[0].labels)
    with pytest.raises(ValueError, match=r"b\.npz: 'labels' has 21 frames but .*b\.avi decodes to 20"):
        extract_video(jobs[0], cfg(), tmp_path)
    assert not (tmp_path / "b.npz").exists()


def test_mask_size_and_label_values_are_checked(dataset, tmp_path: Path) -> None:
    root, manifest = dataset
    video = root / "videos" / "b.avi"
    np.savez(root / "labels" / "small.npz", masks=np.zeros((20, 60, 80), np.uint8))
    with pytest.raises(ValueError, match=r"small\.npz: masks are 80x60 pixels but .*b\.avi is 160x120"):
        extract_video(VideoJob("b", video, masks=root / "labels" / "small.npz"), cfg(), tmp_path)
    np.savez(root / "labels" / "bad.npz", labels=np.full(20, 7, np.int8))
    with pytest.raises(ValueError, match=r"bad\.npz: 'labels' values must lie in -1\.\.3"):
        extract_video(VideoJob("b", video, labels=root / "labels" / "bad.npz"), cfg(), tmp_path)
    np.savez(root / "labels" / "nolabels.npz", other=np.zeros(20))
    with pytest.raises(ValueError, match=r"nolabels\.npz: expected an array named 'labels'"):
        extract_video(VideoJob("b", video, labels=root / "labels" / "nolabels.npz"), cfg(), tmp_path)
    (root / "labels" / "junk.npz").write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz"):
        extract_video(VideoJob("b", video, labels=root / "labels" / "junk.npz"), cfg(), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: .*gone\.npz"):
        extract_video(VideoJob("b", video, masks=root / "labels" / "gone.npz"), cfg(), tmp_path)


# --------------------------------------------------------------------------- errors, skip, workers

def _add_broken(dataset) -> None:
    root, _ = dataset
    (root / "videos" / "broken.mp4").write_bytes(b"\x00not a video" * 500)
    (root / "videos" / "notes.txt").write_text("hello")


def _jobs_with_broken(dataset) -> list[VideoJob]:
    root, manifest = dataset
    _add_broken(dataset)
    return jobs_from_manifest(manifest, root) + [
        VideoJob("broken", root / "videos" / "broken.mp4"),
        VideoJob("notes", root / "videos" / "notes.txt"),
        VideoJob("gone", root / "videos" / "gone.avi"),
    ]


def test_fail_mode_raises_naming_the_file(dataset, tmp_path: Path) -> None:
    jobs = _jobs_with_broken(dataset)
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        extract_all(jobs, cfg(), tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match=r"gone\.avi"):
        extract_all(jobs[:3] + jobs[-1:], cfg(), tmp_path / "out2", progress=False)


def test_skip_mode_records_every_bad_file(dataset, tmp_path: Path) -> None:
    result = extract_all(_jobs_with_broken(dataset), cfg(on_error="skip"), tmp_path / "out", progress=False)
    assert result.index["video_id"].tolist() == ["a", "b", "c"]
    skipped = {s["video_id"]: s for s in result.report["skipped"]}
    assert set(skipped) == {"broken", "notes", "gone"} and result.report["skipped_count"] == 3
    assert "broken.mp4" in skipped["broken"]["reason"] and skipped["broken"]["path"].endswith("broken.mp4")
    assert "unsupported video container" in skipped["notes"]["reason"]
    assert "not found" in skipped["gone"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npz", "b.npz", "c.npz"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_shard_write_is_raised_even_in_skip_mode(dataset, tmp_path: Path, workers: int) -> None:
    """Disk full or permissions are not the video's fault: skipping the video would hide the problem."""
    out = tmp_path / "out"
    (out / "b.npz").mkdir(parents=True)  # the shard's rename onto a directory fails (root ignores chmod)
    jobs = _jobs_with_broken(dataset)[:3]
    with pytest.raises(WriteError, match=r"b\.npz: could not write the frame shard"):
        extract_all(jobs, cfg(on_error="skip", workers=workers), out, progress=False)


def test_skip_mode_with_nothing_left_is_an_error(dataset, tmp_path: Path) -> None:
    jobs = _jobs_with_broken(dataset)[3:]
    with pytest.raises(ValueError, match="no video could be extracted"):
        extract_all(jobs, cfg(on_error="skip"), tmp_path / "out", progress=False)


def test_process_pool_gives_the_same_shards(dataset, tmp_path: Path) -> None:
    one = run(dataset, tmp_path / "one", workers=1)
    two = run(dataset, tmp_path / "two", workers=2, on_error="skip")
    pd.testing.assert_frame_equal(one.index, two.index)
    for vid in ("a", "b", "c"):
        s1, s2 = read_shard(tmp_path / "one" / f"{vid}.npz"), read_shard(tmp_path / "two" / f"{vid}.npz")
        assert s1.keys() == s2.keys() and all((s1[k] == s2[k]).all() for k in s1)


def test_process_pool_fail_mode_raises(dataset, tmp_path: Path) -> None:
    jobs = _jobs_with_broken(dataset)
    with pytest.raises(VideoError, match=r"broken\.mp4|notes\.txt"):
        extract_all(jobs, cfg(workers=2), tmp_path / "out", progress=False)


def test_manifest_paths_must_stay_inside_the_root(tmp_path: Path) -> None:
    manifest = pd.DataFrame([{"video_id": "x", "path": "../x.avi", "patient_id": "p", "frame_labels": "", "masks": ""}])
    with pytest.raises(ValueError, match=r"row 1 .*escapes the data root"):
        jobs_from_manifest(manifest, tmp_path)


# --------------------------------------------------------------------------- stage

def _stage(tmp_path: Path, dataset, params: str, extra_rows: list[dict] | None = None) -> subprocess.CompletedProcess:
    root, manifest = dataset
    raw = tmp_path / "data" / "raw"
    if extra_rows:
        manifest = pd.concat([manifest, pd.DataFrame(extra_rows)], ignore_index=True)
    write_csv(raw / "manifest.csv", manifest)
    write_json(raw / "source.json", {"source": "manifest", "root": str(root.relative_to(tmp_path))})
    (tmp_path / "params.yaml").write_text(params)
    return subprocess.run([sys.executable, str(PROJECT / "stages" / "extract_frames.py"), "--params", "params.yaml",
                           "--raw", "data/raw", "--out", "data/frames", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_stage_writes_shards_index_and_report(dataset, tmp_path: Path) -> None:
    done = _stage(tmp_path, dataset, "base:\n  seed: 0\nextract:\n  height: 24\n  width: 40\n  workers: 1\n")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "data" / "frames"
    index = pd.read_csv(out / "index.csv")
    assert list(index.columns) == INDEX_COLUMNS and len(index) == 3
    assert read_shard(out / "a.npz")["frames"].shape == (12, 24, 40)
    report = json.loads((out / "report.json").read_text())
    assert report["extracted"] == 3 and report["params"]["width"] == 40
    assert [p.name for p in tmp_path.joinpath("data").iterdir() if p.name.startswith(".")] == []
    # the folder is a DVC output: a second extraction of the same videos must give the same bytes in
    # every file (its hash decides whether the training stages rerun), so no timing may be stored in it
    first = {f.name: f.read_bytes() for f in out.iterdir()}
    again = _stage(tmp_path, dataset, "base:\n  seed: 0\nextract:\n  height: 24\n  width: 40\n  workers: 1\n")
    assert again.returncode == 0, again.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == first


def test_stage_failure_leaves_no_partial_output(dataset, tmp_path: Path) -> None:
    _add_broken(dataset)
    bad = [{"video_id": "broken", "path": "videos/broken.mp4", "patient_id": "px", "frame_labels": "", "masks": ""}]
    done = _stage(tmp_path, dataset, "extract:\n  workers: 1\n", extra_rows=bad)
    assert done.returncode == 1
    assert "error:" in done.stderr and "broken.mp4" in done.stderr
    assert not (tmp_path / "data" / "frames").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]  # no temporary folder left behind
    done = _stage(tmp_path, dataset, "extract:\n  workers: 1\n  on_error: skip\n", extra_rows=bad)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "data" / "frames" / "report.json").read_text())
    assert [s["video_id"] for s in report["skipped"]] == ["broken"]


def test_stage_rejects_unknown_params(dataset, tmp_path: Path) -> None:
    done = _stage(tmp_path, dataset, "extract:\n  heigth: 32\n")
    assert done.returncode == 1 and "heigth" in done.stderr


# --------------------------------------------------------------------------- real data

@pytest.mark.real_data
@needs_real
def test_real_videos_extract_with_decoded_counts(tmp_path: Path) -> None:
    meta = pd.read_csv(REAL / "pocus" / "manifest.csv")
    meta["ext"] = meta["filename"].str.rsplit(".", n=1).str[-1].str.lower()
    pick = meta.groupby("ext").head(1)
    jobs = [VideoJob(f"v{i}", REAL / "pocus" / "videos" / f) for i, f in enumerate(pick["filename"])]
    jobs.append(VideoJob("blues", REAL / "covid-blues" / "lus_videos" / "patient_10_L1.mp4"))
    result = extract_all(jobs, cfg(workers=2), tmp_path, progress=False)
    got = result.index.set_index("video_id")
    for i, rec in enumerate(pick.itertuples()):
        assert got.loc[f"v{i}", "n_decoded"] == got.loc[f"v{i}", "n_frames"] == rec.frames, rec.filename
        box_area = (got.loc[f"v{i}", "crop_x1"] - got.loc[f"v{i}", "crop_x0"]) * \
                   (got.loc[f"v{i}", "crop_y1"] - got.loc[f"v{i}", "crop_y0"])
        assert box_area >= 0.3 * rec.width * rec.height, rec.filename
    assert got.loc["blues", "n_decoded"] == 100
