"""Importers of covid-blues, pocus and a user's CSV: tiny look-alike folders in tmp_path for the error
paths, and the real folders (../shared/data, skipped when absent) for the documented counts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError, validate_manifest
from lus.data.sources import covid_blues, pocus, user_manifest
from lus.data.video import count_frames

REAL = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not available at {REAL}")


def tiny_video(path: Path, n: int = 4, fps: float = 25.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (32, 24))
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def blues(tmp_path: Path) -> Path:
    """covid-blues look-alike: 2 patients, 3 videos (one second recording), messy CSV cells."""
    root = tmp_path / "covid-blues"
    for name in ("patient_1_L1", "patient_1_L1_2", "patient_7_R3"):
        tiny_video(root / "lus_videos" / f"{name}.mp4")
    (root / "severity.csv").write_text(
        "video_file,Severity Score,A-lines,B-lines,comments\n"
        "patient_1_L1 ,2.0,yes ,no,\"a, b\"\n"
        "patient_1_L1_2,0.0,yes,no,\n"
        "patient_7_R3,3.0,no,yes,\n"
        "patient_9_L2,1.0,no,yes,video not in this copy\n")
    (root / "clinical_variables.csv").write_text("patient_id,cov_test,pat_age\n1,1,50\n7,0,61\n")
    return root


def test_covid_blues_rows(blues: Path) -> None:
    df = covid_blues.load(blues)
    assert list(df.columns) == MANIFEST_COLUMNS
    rows = df.set_index("video_id")
    assert list(rows.index) == ["patient_1_L1", "patient_1_L1_2", "patient_7_R3"]
    assert rows.loc["patient_1_L1", "path"] == "lus_videos/patient_1_L1.mp4"
    assert rows["video_score"].tolist() == [2, 0, 3]
    assert rows["patient_id"].tolist() == ["blues_p1", "blues_p1", "blues_p7"]
    assert rows["diagnosis"].tolist() == ["covid", "covid", ""]  # PCR-negative is not "healthy"
    assert rows["covid_positive"].tolist() == [1, 1, 0]
    assert set(rows["hospital"]) == {"covid-blues"} and set(rows["probe"]) == {"convex"}
    assert rows["n_frames"].tolist() == [4, 4, 4] and rows["fps"].tolist() == [25.0] * 3
    clean = validate_manifest(df, blues, source="covid-blues")
    assert clean["video_score"].tolist() == [2, 0, 3]


def test_covid_blues_video_without_severity_row(blues: Path) -> None:
    tiny_video(blues / "lus_videos" / "patient_7_R1.mp4")
    with pytest.raises(ManifestError, match=r"severity\.csv: no row for video 'patient_7_R1'"):
        covid_blues.load(blues)


def test_covid_blues_bad_cells_name_file_and_row(blues: Path) -> None:
    sev = blues / "severity.csv"
    sev.write_text(sev.read_text().replace("patient_7_R3,3.0", "patient_7_R3,2.5"))
    with pytest.raises(ManifestError, match=r"severity\.csv, row 3 \(patient_7_R3\): 'Severity Score' must be"):
        covid_blues.load(blues)
    sev.write_text(sev.read_text().replace("patient_7_R3,2.5", "patient_1_L1,1.0"))
    with pytest.raises(ManifestError, match=r"row 3: video 'patient_1_L1' has more than one severity row"):
        covid_blues.load(blues)
    (blues / "clinical_variables.csv").write_text("patient_id,cov_test\n1,positive\n")
    with pytest.raises(ManifestError, match=r"clinical_variables\.csv, row 1 \(patient 1\): 'cov_test'"):
        covid_blues.read_pcr(blues / "clinical_variables.csv")


def test_covid_blues_layout_errors(blues: Path, tmp_path: Path) -> None:
    tiny_video(blues / "lus_videos" / "patient_1_X9.mp4")
    with pytest.raises(ManifestError, match=r"patient_1_X9\.mp4 does not follow the name pattern"):
        covid_blues.load(blues)
    with pytest.raises(FileNotFoundError, match="lus_videos"):
        covid_blues.load(tmp_path / "elsewhere")
    (blues / "lus_videos" / "patient_1_X9.mp4").unlink()
    (blues / "clinical_variables.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"clinical_variables\.csv"):
        covid_blues.load(blues)


def test_covid_blues_unknown_pcr_stays_blank(blues: Path) -> None:
    (blues / "clinical_variables.csv").write_text("patient_id,cov_test\n1,1\n")  # patient 7 missing
    rows = covid_blues.load(blues).set_index("video_id")
    assert pd.isna(rows.loc["patient_7_R3", "covid_positive"]) and rows.loc["patient_7_R3", "diagnosis"] == ""
    validate_manifest(rows.reset_index(), blues, source="covid-blues")


@pytest.fixture
def pocus_root(tmp_path: Path) -> Path:
    root = tmp_path / "pocus"
    for name in ("Cov-Atlas+(44).avi", "Cov-Atlas (44).avi", "Reg_pat1.avi"):
        tiny_video(root / "videos" / name, n=5, fps=10)
    (root / "manifest.csv").write_text(
        "filename,label,patient_id,source,license,frames,fps,width,height,bytes\n"
        "Cov-Atlas+(44).avi,covid,atlas_p1,thepocusatlas.com,CC BY-NC 4.0,5,10.0,32,24,1\n"
        "Cov-Atlas (44).avi,COVID-19,atlas_p1,thepocusatlas.com,CC BY-NC 4.0,5,10.0,32,24,1\n"
        "Reg_pat1.avi,regular,neu_p1,Neuruppin,CC BY 4.0,5,25.0,32,24,1\n")
    return root


def test_pocus_rows(pocus_root: Path) -> None:
    df = pocus.load(pocus_root)
    assert list(df.columns) == MANIFEST_COLUMNS
    assert df["video_id"].tolist() == ["Cov-Atlas_44", "Cov-Atlas_44_2", "Reg_pat1"]  # sanitised, unique
    assert df["path"].tolist()[0] == "videos/Cov-Atlas+(44).avi"
    assert df["diagnosis"].tolist() == ["covid", "covid", "healthy"]
    assert df["hospital"].tolist() == ["thepocusatlas.com", "thepocusatlas.com", "Neuruppin"]
    assert df["n_frames"].tolist() == [5, 5, 5] and df["fps"].tolist() == [10.0, 10.0, 25.0]
    assert df["covid_positive"].isna().all() and df["video_score"].isna().all()
    validate_manifest(df, pocus_root, source="pocus")


def test_pocus_bad_rows_name_file_and_row(pocus_root: Path) -> None:
    path = pocus_root / "manifest.csv"
    text = path.read_text()
    path.write_text(text.replace("regular", "Viral pneumonia"))
    with pytest.raises(ManifestError, match=r"manifest\.csv, row 3 \(Reg_pat1\.avi\): label 'Viral pneumonia'"):
        pocus.load(pocus_root)
    path.write_text(text.replace(",5,25.0,", ",0,25.0,"))
    with pytest.raises(ManifestError, match=r"manifest\.csv, row 3: 'frames' must be a positive integer"):
        pocus.load(pocus_root)
    path.write_text(text.replace("filename,", "file,"))
    with pytest.raises(ManifestError, match="missing column"):
        pocus.load(pocus_root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.csv"):
        pocus.load(pocus_root)


def test_user_manifest(tmp_path: Path) -> None:
    tiny_video(tmp_path / "v" / "a.avi")
    csv = tmp_path / "mine.csv"
    csv.write_text("video_id, path ,patient_id,video_score\na,v/a.avi,p1,2\n")
    df = user_manifest.load(csv)
    assert list(df.columns) == ["video_id", "path", "patient_id", "video_score"]  # as written
    clean = validate_manifest(df, tmp_path, source=str(csv))
    assert clean.loc[0, "video_score"] == 2 and list(clean.columns) == MANIFEST_COLUMNS
    (tmp_path / "manifest.csv").write_text(csv.read_text())
    assert len(user_manifest.load(tmp_path)) == 1  # a folder means <folder>/manifest.csv
    csv.write_text("video_id,path,patient_id,videoscore\na,v/a.avi,p1,2\n")
    with pytest.raises(ManifestError, match="unknown column.*videoscore"):
        validate_manifest(user_manifest.load(csv), tmp_path, source=str(csv))


def test_user_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        user_manifest.load(tmp_path / "missing.csv")
    xlsx = tmp_path / "videos.xlsx"
    xlsx.write_bytes(b"PK\x03\x04 not a csv")
    with pytest.raises(ManifestError, match=r"videos\.xlsx: expected a \.csv file"):
        user_manifest.load(xlsx)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ManifestError, match=r"empty\.csv: the file is empty"):
        user_manifest.load(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ManifestError, match=r"binary\.csv: not a readable CSV"):
        user_manifest.load(binary)
    semi = tmp_path / "semi.csv"
    semi.write_text("video_id;path;patient_id\na;v/a.avi;p1\n")
    with pytest.raises(ManifestError, match="semicolon"):
        user_manifest.load(semi)


# --------------------------------------------------------------------------- real data

@pytest.mark.real_data
@needs_real
def test_real_covid_blues() -> None:
    root = REAL / "covid-blues"
    df = validate_manifest(covid_blues.load(root), root, source="covid-blues")
    assert len(df) == 312 and df["patient_id"].nunique() == 54
    assert df["video_score"].value_counts().sort_index().tolist() == [104, 98, 72, 38]
    pcr = df.groupby("patient_id")["covid_positive"].first()
    assert (pcr == 1).sum() == 28 and (pcr == 0).sum() == 26
    assert set(df["diagnosis"]) == {"covid", ""}
    assert df["n_frames"].between(1, 120).all() and df["n_frames"].sum() == 27454  # = decoded total
    assert (df["fps"] > 0).all()
    for rec in df.sample(3, random_state=0).itertuples():
        assert count_frames(root / rec.path) == rec.n_frames


@pytest.mark.real_data
@needs_real
def test_real_pocus() -> None:
    root = REAL / "pocus"
    df = validate_manifest(pocus.load(root), root, source="pocus")
    assert len(df) == 109 and df["patient_id"].nunique() == 63 and df["video_id"].is_unique
    assert df["diagnosis"].value_counts()[["covid", "pneumonia", "healthy"]].tolist() == [24, 32, 53]
    assert df["hospital"].nunique() == 7
    df["ext"] = df["path"].str.rsplit(".", n=1).str[-1].str.lower()
    for rec in df.groupby("ext").head(1).itertuples():  # one file of each container
        assert count_frames(root / rec.path) == rec.n_frames, rec.path
    assert {"gif", "mpeg", "mov", "avi", "mp4"} <= set(df["ext"])
