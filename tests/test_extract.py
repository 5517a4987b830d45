"""Video decoding, sector crop, extraction and the real-data importers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lus.config.extract import ExtractSection
from lus.data.extract import VideoJob, extract_all, extract_video, keep_frame
from lus.data.manifest import validate_manifest
from lus.data.sector import find_sector
from lus.data.sources.registry import import_real_source
from lus.data.video import VideoError, iter_grey_frames

H, W = 120, 160
SECTOR = (40, 20, 150, 115)  # x0, y0, x1, y1 of the moving content


def write_video(path: Path, n: int = 20, text: bool = True, seed: int = 0, size=(H, W)) -> Path:
    """MJPG test video: moving noise inside SECTOR, static white text in the top-left corner."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (size[1], size[0]))
    x0, y0, x1, y1 = SECTOR
    for _ in range(n):
        frame = np.zeros(size, np.uint8)
        frame[y0:y1, x0:x1] = rng.integers(30, 220, (y1 - y0, x1 - x0), dtype=np.uint8)
        if text:
            cv2.putText(frame, "LUS 5MHz", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def cfg(**kw) -> ExtractSection:
    return ExtractSection.from_dict({"height": 32, "width": 32, "workers": 1, **kw})


def test_decoded_count_and_crop_excludes_text(tmp_path):
    video = write_video(tmp_path / "a.avi", n=25)
    frames = np.stack(list(iter_grey_frames(video)))
    assert frames.shape == (25, H, W)
    box = find_sector(frames[:16])
    x0, y0, x1, y1 = SECTOR
    assert abs(box.x0 - x0) <= 3 and abs(box.y0 - y0) <= 3 and abs(box.x1 - x1) <= 3 and abs(box.y1 - y1) <= 3
    assert frames[:, :14, :70].max() > 200, "the text is in the source frames"
    row = extract_video(VideoJob("a", video, None, None), cfg(), tmp_path)
    shard = np.load(tmp_path / "a.npz")
    assert row["n_frames"] == row["n_decoded"] == 25 and shard["frames"].shape == (25, 32, 32)
    assert shard["frame_index"].tolist() == list(range(25))


def test_labels_and_masks_follow_the_frames(tmp_path):
    video = write_video(tmp_path / "a.avi", n=12)
    labels = np.arange(12) % 4
    masks = np.zeros((12, H, W), np.uint8)
    masks[:, 60:100, 60:100] = 3
    np.savez(tmp_path / "ann.npz", labels=labels, annotators=np.stack([labels] * 4), masks=masks)
    job = VideoJob("a", video, tmp_path / "ann.npz", tmp_path / "ann.npz")
    row = extract_video(job, cfg(stride=2), tmp_path)
    shard = np.load(tmp_path / "a.npz")
    assert row["n_frames"] == 6 and shard["labels"].tolist() == [0, 2, 0, 2, 0, 2]
    assert shard["annotators"].shape == (4, 6) and shard["masks"].shape == (6, 32, 32)
    assert set(np.unique(shard["masks"])) == {0, 3}
    np.savez(tmp_path / "bad.npz", labels=labels[:5])
    with pytest.raises(VideoError, match="bad.npz: 'labels' has 5 frames but .*a.avi decodes to 12"):
        extract_video(VideoJob("a", video, tmp_path / "bad.npz", None), cfg(), tmp_path)


def test_frame_selection():
    c = cfg(stride=1, target_fps=10.0)
    kept = [i for i in range(30) if keep_frame(i, 30.0, c)]
    assert kept == list(range(0, 30, 3))
    assert [i for i in range(10) if keep_frame(i, 30.0, cfg(stride=4))] == [0, 4, 8]
    assert all(keep_frame(i, 5.0, cfg(target_fps=10.0)) for i in range(10))


@pytest.mark.parametrize("name, content, message", [
    ("corrupt.avi", b"\x00not a video at all" * 100, "corrupt.avi: cannot be opened|corrupt.avi: no frame"),
    ("empty.mp4", b"", "empty.mp4: cannot be opened|empty.mp4: no frame"),
    ("notes.txt", b"hello", "notes.txt: unsupported container '.txt'"),
])
def test_bad_videos_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(VideoError, match=message):
        extract_video(VideoJob("x", tmp_path / name, None, None), cfg(), tmp_path)


def test_missing_video_and_skip_report(tmp_path):
    good = write_video(tmp_path / "good.avi", n=8)
    jobs = [VideoJob("good", good, None, None), VideoJob("gone", tmp_path / "gone.avi", None, None)]
    with pytest.raises(VideoError, match="gone.avi: video file not found"):
        extract_all(jobs, cfg(), tmp_path, progress=False)
    index, skipped = extract_all(jobs, cfg(on_error="skip"), tmp_path, progress=False)
    assert index["video_id"].tolist() == ["good"] and skipped[0]["video_id"] == "gone"
    with pytest.raises(VideoError, match="no video could be extracted"):
        extract_all(jobs[1:], cfg(on_error="skip"), tmp_path, progress=False)


def test_parallel_extraction_matches_serial(tmp_path):
    jobs = [VideoJob(f"v{i}", write_video(tmp_path / f"v{i}.avi", n=6 + i, seed=i), None, None) for i in range(3)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    serial, _ = extract_all(jobs, cfg(workers=1), tmp_path / "a", progress=False)
    parallel, _ = extract_all(jobs, cfg(workers=2), tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    for i in range(3):
        assert np.array_equal(np.load(tmp_path / "a" / f"v{i}.npz")["frames"], np.load(tmp_path / "b" / f"v{i}.npz")["frames"])


@pytest.mark.real_data
def test_covid_blues_importer(shared_data):
    m = import_real_source("covid-blues", shared_data / "covid-blues")
    assert len(m) == 312 and m["patient_id"].nunique() == 54
    assert m["video_score"].value_counts().sort_index().tolist() == [104, 98, 72, 38]
    assert set(m["covid_positive"].dropna()) == {0, 1}
    assert m.groupby("patient_id")["covid_positive"].first().sum() == 28


@pytest.mark.real_data
def test_pocus_importer_and_every_container_decodes(shared_data, tmp_path):
    root = shared_data / "pocus"
    m = import_real_source("pocus", root)
    assert len(m) == 109 and m["patient_id"].nunique() == 63
    assert m["diagnosis"].value_counts().to_dict() == {"healthy": 53, "pneumonia": 32, "covid": 24}
    m["suffix"] = m["path"].str.rsplit(".", n=1).str[-1].str.lower()
    for suffix in ("gif", "mpeg", "mov", "avi", "mp4"):
        row = m[m["suffix"] == suffix].iloc[0]
        out = extract_video(VideoJob(row["video_id"], root / row["path"], None, None), cfg(), tmp_path)
        assert out["n_decoded"] == row["n_frames"], f"{row['path']}: decoded count differs from manifest"


def test_user_manifest_source(tmp_path):
    write_video(tmp_path / "clip.avi", n=5)
    (tmp_path / "manifest.csv").write_text("video_id,path,patient_id,video_score\nclip,clip.avi,p1,2\n")
    m = import_real_source("manifest", tmp_path)
    assert m.loc[0, "video_score"] == 2
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        import_real_source("manifest", tmp_path / "nope")
    (tmp_path / "manifest.csv").write_text("video_id,path,patient_id\nclip,../../etc/passwd,p1\n")
    with pytest.raises(ValueError, match="row 1: path '../../etc/passwd' escapes the data root"):
        import_real_source("manifest", tmp_path)
    validate_manifest(pd.DataFrame({"video_id": ["a"], "path": ["clip.avi"], "patient_id": ["p"]}), tmp_path, "x")
