import pandas as pd
import pytest

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError, read_manifest, safe_video_id, validate_manifest
from lus.io import write_csv


def _rows(tmp_path, n=2, **over):
    (tmp_path / "v").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        (tmp_path / "v" / f"a{i}.avi").write_bytes(b"x")
        rows.append({"video_id": f"a{i}", "path": f"v/a{i}.avi", "patient_id": f"p{i}", "hospital": "h",
                     "probe": "convex", "fps": 20, "n_frames": 10, "video_score": i % 4, "diagnosis": "covid"})
    df = pd.DataFrame(rows)
    for k, v in over.items():
        df.loc[0, k] = v
    return df


def test_valid_manifest_roundtrip(tmp_path):
    clean = validate_manifest(_rows(tmp_path), tmp_path, "m.csv")
    assert list(clean.columns) == MANIFEST_COLUMNS
    write_csv(tmp_path / "manifest.csv", clean)
    back = read_manifest(tmp_path / "manifest.csv")
    assert back["video_score"].tolist() == [0, 1]
    assert back["frame_labels"].tolist() == ["", ""]


@pytest.mark.parametrize("col, value, message", [
    ("path", "../../etc/passwd", "row 1: path '../../etc/passwd' escapes the data root"),
    ("path", "/etc/passwd", "escapes the data root"),
    ("path", "v/missing.avi", "row 1: video file not found"),
    ("video_score", 4, "row 1: video_score must be an integer 0..3, got '4'"),
    ("video_score", "high", "video_score must be an integer 0..3, got 'high'"),
    ("diagnosis", "flu", "row 1: diagnosis 'flu' is not one of covid, pneumonia, healthy"),
    ("fps", "fast", "row 1: column 'fps' must be a number"),
    ("n_frames", 2.5, "column 'n_frames' must be a positive integer"),
    ("video_id", "a b/c", "must use only letters"),
    ("patient_id", "", "column 'patient_id' is empty"),
])
def test_bad_rows_name_file_row_and_column(tmp_path, col, value, message):
    df = _rows(tmp_path)
    df[col] = df[col].astype(object)
    df.loc[0, col] = value
    with pytest.raises(ManifestError) as err:
        validate_manifest(df, tmp_path, "m.csv")
    assert message in str(err.value) and "m.csv" in str(err.value)


def test_duplicates_patients_across_hospitals_and_empty(tmp_path):
    df = _rows(tmp_path)
    df.loc[1, "video_id"] = "a0"
    with pytest.raises(ManifestError, match="duplicate video_id"):
        validate_manifest(df, tmp_path, "m.csv")
    df = _rows(tmp_path)
    df.loc[1, "patient_id"] = "p0"
    df.loc[1, "hospital"] = "other"
    with pytest.raises(ManifestError, match="p0 appear under more than one hospital"):
        validate_manifest(df, tmp_path, "m.csv")
    with pytest.raises(ManifestError, match="dataset is empty"):
        validate_manifest(df.iloc[:0], tmp_path, "m.csv")
    with pytest.raises(ManifestError, match="unknown column"):
        validate_manifest(df.assign(extra=1), tmp_path, "m.csv")
    with pytest.raises(ManifestError, match="missing required column"):
        validate_manifest(df.drop(columns=["patient_id"]), tmp_path, "m.csv")


def test_safe_video_id():
    assert safe_video_id("Cov-Atlas+(44)") == "Cov-Atlas_44"
    assert safe_video_id("patient_10_L1") == "patient_10_L1"
