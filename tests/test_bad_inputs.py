"""Bad inputs, at the stage level: every case ends in one ``error: ...`` line naming the file/row/key and
what was expected, exit code 1, and no output (not even a partial one). The table of cases and their
messages is docs/BAD_INPUTS.md; keep the two in step.

The stages run in-process through ``stages/_cli.run`` (the same entry point as ``python -m stages.X``),
which saves a few seconds of imports per case; ``test_entry_point_subprocess`` checks one case in a
real subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from lus.data.manifest import validate_manifest
from lus.io import write_csv, write_json
from tests.helpers import PROJECT_ROOT, pipeline_env, run_stage


# ----------------------------------------------------------------------------------------- inputs
def write_clip(path: Path, n: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    """A small MJPG .avi with a bright fan-shaped sector (decodable, croppable)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fan = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fan, [np.array([[w // 2 - 6, 4], [w // 2 + 6, 4], [w - 4, h - 4], [4, h - 4]], np.int32)], 1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for _ in range(n):
        frame = (np.clip(rng.rayleigh(60, (h, w)), 0, 255).astype(np.uint8) * fan)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def good_rows(root: Path) -> list[dict]:
    rows = []
    for i, (diag, score) in enumerate((("covid", 2), ("healthy", 0))):
        write_clip(root / "videos" / f"v{i}.avi", seed=i)
        rows.append({"video_id": f"v{i}", "path": f"videos/v{i}.avi", "patient_id": f"p{i}", "hospital": "h1",
                     "probe": "convex", "video_score": str(score), "diagnosis": diag})
    return rows


def params_file(tmp_path: Path, **sections: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"base": {"seed": 0}, **sections}, sort_keys=False))
    return path


def assert_failed(code: int, err: str, *expected: str) -> None:
    assert code == 1, f"exit code {code}, stderr:\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    for text in expected:
        assert text in lines[-1], f"{text!r} not in {lines[-1]!r}"


def no_leftovers(folder: Path) -> list[str]:
    """Hidden temporary files/folders of lus.io left in ``folder`` (there must be none)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


# ----------------------------------------------------------------------------------------- prepare
def _set(col: str, value: str, row: int = 0) -> Callable[[list[dict], Path], list[dict]]:
    def edit(rows: list[dict], root: Path) -> list[dict]:
        rows[row][col] = value
        return rows
    return edit


def _duplicate_id(rows, root):
    rows[1]["video_id"] = rows[0]["video_id"]
    return rows


def _two_hospitals(rows, root):
    rows[1]["patient_id"], rows[1]["hospital"] = rows[0]["patient_id"], "h2"
    return rows


def _drop_patient_column(rows, root):
    return [{k: v for k, v in r.items() if k != "patient_id"} for r in rows]


def _no_rows(rows, root):
    return []


PREPARE_CASES = {
    # case id: (edit of the two good rows, text the error must contain)
    "path_escapes_root_dotdot": (_set("path", "../../etc/passwd"),
                                 "row 1: path '../../etc/passwd' escapes the data root"),
    "path_absolute_outside_root": (_set("path", "/etc/passwd"), "row 1: path '/etc/passwd' escapes the data root"),
    "video_path_missing": (_set("path", "videos/gone.avi"), "row 1: video file not found"),
    "duplicate_video_id": (_duplicate_id, "duplicate video_id(s): v0"),
    "video_score_not_numeric": (_set("video_score", "high"), "row 1: video_score must be an integer 0..3, got 'high'"),
    "video_score_out_of_range": (_set("video_score", "4"), "row 1: video_score must be an integer 0..3, got '4'"),
    "diagnosis_unknown": (_set("diagnosis", "flu"), "row 1: diagnosis 'flu' is not one of covid, pneumonia, healthy"),
    "frame_labels_file_missing": (_set("frame_labels", "labels/v0.npz"), "row 1: frame_labels file not found"),
    "patient_under_two_hospitals": (_two_hospitals, "patient id(s) p0 appear under more than one hospital"),
    "required_column_missing": (_drop_patient_column, "missing required column(s) patient_id"),
    "empty_dataset": (_no_rows, "the dataset is empty (no video rows)"),
}


@pytest.mark.parametrize("case", sorted(PREPARE_CASES))
def test_prepare_refuses_bad_manifest(case, tmp_path, monkeypatch, capsys):
    edit, expected = PREPARE_CASES[case]
    root = tmp_path / "videos_root"
    rows = edit(good_rows(root), root)
    columns = list(rows[0]) if rows else ["video_id", "path", "patient_id"]
    pd.DataFrame(rows, columns=columns).to_csv(root / "manifest.csv", index=False)
    params = params_file(tmp_path, data={"source": "manifest", "root": str(root), "manifest": "manifest.csv"})
    out = tmp_path / "data" / "raw"
    code, err = run_stage("prepare", ["--params", str(params), "--out", str(out)], monkeypatch, capsys)
    assert_failed(code, err, str(root / "manifest.csv"), expected)
    assert not out.exists() and no_leftovers(out.parent) == []


def test_prepare_good_manifest_passes(tmp_path, monkeypatch, capsys):
    """The unedited rows are valid (so each case above fails for its own reason only)."""
    root = tmp_path / "videos_root"
    pd.DataFrame(good_rows(root)).to_csv(root / "manifest.csv", index=False)
    params = params_file(tmp_path, data={"source": "manifest", "root": str(root), "manifest": "manifest.csv"})
    code, err = run_stage("prepare", ["--params", str(params), "--out", str(tmp_path / "raw")], monkeypatch, capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "raw" / "manifest.csv")) == 2


# ----------------------------------------------------------------------------------------- extract_frames
def _corrupt(root, row):
    (root / "videos" / "v0.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    row["path"] = "videos/v0.mp4"


def _zero_frames(root, row):
    cv2.VideoWriter(str(root / "videos" / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    row["path"] = "videos/empty.avi"


def _unsupported(root, row):
    (root / "videos" / "notes.txt").write_text("not a video")
    row["path"] = "videos/notes.txt"


def _vanished(root, row):
    (root / "videos" / "v0.avi").unlink()   # listed by prepare, deleted before extraction


def _labels(**arrays):
    def edit(root, row):
        (root / "labels").mkdir(exist_ok=True)
        np.savez(root / "labels" / "v0.npz", **arrays)
        row["frame_labels"] = "labels/v0.npz"
    return edit


EXTRACT_CASES = {
    "video_corrupt_bytes": (_corrupt, ["v0.mp4", "cannot open video (corrupt file or not a video)"]),
    "video_zero_frames": (_zero_frames, ["empty.avi", "no frames"]),
    "video_unsupported_container": (_unsupported, ["notes.txt", "unsupported video container '.txt'"]),
    "video_path_vanished": (_vanished, ["v0.avi"]),
    "frame_labels_not_integer": (_labels(labels=np.array(["a", "b", "c", "d", "e", "f"])),
                                 ["v0.npz", "'labels' must be an integer array"]),
    "frame_labels_out_of_range": (_labels(labels=np.array([0, 1, 2, 3, 4, 5], np.int8)),
                                  ["v0.npz", "'labels' values must lie in"]),
    "frame_labels_key_missing": (_labels(scores=np.zeros(6, np.int8)),
                                 ["v0.npz", "expected an array named 'labels'"]),
    "frame_labels_wrong_length": (_labels(labels=np.zeros(4, np.int8)),
                                  ["v0.npz", "'labels' has 4 frames but", "decodes to 6 frames"]),
}


def _extract(tmp_path, monkeypatch, capsys, edit, on_error="fail") -> tuple[int, str, Path]:
    root = tmp_path / "videos_root"
    rows = validate_manifest(pd.DataFrame(good_rows(root)), root, "manifest.csv").to_dict("records")
    edit(root, rows[0])
    raw = tmp_path / "data" / "raw"
    write_csv(raw / "manifest.csv", pd.DataFrame(rows))
    write_json(raw / "source.json", {"source": "manifest", "root": str(root)})
    params = params_file(tmp_path, extract={"height": 16, "width": 16, "workers": 1, "on_error": on_error})
    out = tmp_path / "data" / "frames"
    code, err = run_stage("extract_frames", ["--params", str(params), "--raw", str(raw), "--out", str(out),
                                             "--no-progress"], monkeypatch, capsys)
    return code, err, out


@pytest.mark.parametrize("case", sorted(EXTRACT_CASES))
def test_extract_refuses_bad_video_or_labels(case, tmp_path, monkeypatch, capsys):
    edit, expected = EXTRACT_CASES[case]
    code, err, out = _extract(tmp_path, monkeypatch, capsys, edit)
    assert_failed(code, err, *expected)
    assert "manifest.csv, row " in err and "(video_id " in err, err   # the manifest row, not only the file
    assert not out.exists() and no_leftovers(out.parent) == []


def test_extract_with_every_video_skipped_is_an_error(tmp_path, monkeypatch, capsys):
    """on_error: skip with nothing extractable left is an empty dataset, not an empty success."""
    def both_bad(root, row):
        _corrupt(root, row)
        (root / "videos" / "v1.avi").write_bytes(b"\x00" * 100)
    code, err, out = _extract(tmp_path, monkeypatch, capsys, both_bad, on_error="skip")
    assert_failed(code, err, "no video could be extracted (2 skipped)", "v0.mp4")
    assert not out.exists() and no_leftovers(out.parent) == []


# ----------------------------------------------------------------------------------------- split
def _split_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """4 patients (2 covid, 2 healthy), 2 videos each; manifest + frame index as the stages write them."""
    rows = [{"video_id": f"p{p}_v{v}", "path": f"videos/p{p}_v{v}.avi", "patient_id": f"p{p}", "hospital": "h1",
             "diagnosis": "covid" if p < 2 else "healthy", "video_score": str(p % 4)}
            for p in range(4) for v in range(2)]
    manifest = validate_manifest(pd.DataFrame(rows), tmp_path, "manifest.csv", check_files=False)
    write_csv(tmp_path / "raw" / "manifest.csv", manifest)
    write_csv(tmp_path / "frames" / "index.csv", pd.DataFrame({"video_id": manifest["video_id"]}))
    return tmp_path / "raw" / "manifest.csv", tmp_path / "frames" / "index.csv"


SPLIT_CASES = {
    # user folds (2 folds over p0..p3; p0, p1 covid, p2, p3 healthy), expected text
    "user_split_leaks_patient": ([{"train": ["p1", "p3", "p0"], "val": [], "test": ["p0", "p2"]},
                                  {"train": ["p0", "p2"], "val": [], "test": ["p1", "p3"]}],
                                 "fold 0 leaks patient(s) p0"),
    "user_split_misses_video": ([{"train": ["p1"], "val": [], "test": ["p0", "p2"]},
                                 {"train": ["p0", "p2"], "val": [], "test": ["p1", "p3"]}],
                                "fold 0 misses patient(s) p3"),
    "fold_without_test_class": ([{"train": ["p2", "p3"], "val": [], "test": ["p0", "p1"]},
                                 {"train": ["p0", "p1"], "val": [], "test": ["p2", "p3"]}],
                                "fold 0 has no test videos of class(es) healthy although each has >= 2 patients"),
}


def _split_with_user_folds(tmp_path, monkeypatch, capsys, folds, user_dir: Path) -> tuple[int, str, Path, Path]:
    """Run the split stage with ``folds`` as the user's folds file; (exit code, stderr, user file, output)."""
    manifest, index = _split_inputs(tmp_path)
    user = tmp_path / "my_folds.json"
    user.write_text(json.dumps({"folds": folds}))
    params = params_file(tmp_path, split={"folds": [0, 1], "override": str(user)})
    out = tmp_path / "splits" / "folds.json"
    code, err = run_stage("split", ["--params", str(params), "--manifest", str(manifest), "--index", str(index),
                                    "--out", str(out), "--user-dir", str(user_dir)], monkeypatch, capsys)
    return code, err, user, out


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_refuses_bad_user_folds(case, tmp_path, monkeypatch, capsys):
    folds, expected = SPLIT_CASES[case]
    code, err, user, out = _split_with_user_folds(tmp_path, monkeypatch, capsys, folds, tmp_path)
    assert_failed(code, err, str(user), expected)
    assert not out.exists() and not out.parent.exists()


def test_split_refuses_user_folds_outside_the_tracked_folder(tmp_path, monkeypatch, capsys):
    """A folds file DVC does not track would let an edited split go unnoticed (no rerun)."""
    tracked = tmp_path / "data/splits/user"
    code, err, user, out = _split_with_user_folds(tmp_path, monkeypatch, capsys,
                                                  SPLIT_CASES["user_split_leaks_patient"][0], tracked)
    assert_failed(code, err, "split.override", f"{user} is outside {tracked}/")
    assert not out.exists()


# ----------------------------------------------------------------------------------------- train_aggregator
def _aggregator_inputs(tmp_path: Path) -> dict[str, Path]:
    """6 patients x 1 video x 5 frames of valid probabilities, 2 folds."""
    rng = np.random.default_rng(0)
    frames, man = [], []
    for p in range(6):
        probs = rng.dirichlet(np.ones(4), 5)
        for t in range(5):
            frames.append({"video_id": f"v{p}", "patient_id": f"p{p}", "fold": p % 2, "frame_index": t,
                           **{f"p{c}": probs[t, c] for c in range(4)}})
        man.append({"video_id": f"v{p}", "path": f"videos/v{p}.avi", "patient_id": f"p{p}", "video_score": str(p % 4)})
    paths = {"frames": tmp_path / "frames.parquet", "folds": tmp_path / "folds.json",
             "manifest": tmp_path / "manifest.csv", "out": tmp_path / "models" / "aggregator"}
    pd.DataFrame(frames).to_parquet(paths["frames"], index=False)
    write_csv(paths["manifest"], validate_manifest(pd.DataFrame(man), tmp_path, "manifest.csv", check_files=False))
    paths["folds"].write_text(json.dumps({"folds": [
        {"train": ["p1", "p3"], "val": ["p5"], "test": ["p0", "p2", "p4"]},
        {"train": ["p0", "p2"], "val": ["p4"], "test": ["p1", "p3", "p5"]}]}))
    return paths


def _nan_prob(df):
    df.loc[7, "p2"] = np.nan
    return df


def _bad_sum(df):
    df.loc[3, ["p0", "p1", "p2", "p3"]] = [0.5, 0.25, 0.25, 0.25]
    return df


def _outside_unit(df):
    df.loc[4, ["p0", "p1", "p2", "p3"]] = [1.5, -0.5, 0.0, 0.0]
    return df


AGGREGATOR_CASES = {
    # case id: (edit of the frame table, params of the aggregator section, expected texts)
    "probabilities_nan": (_nan_prob, {}, ["frames.parquet: row 7 (video_id v1, frame_index 2)",
                                          "p0..p3 contain NaN or inf"]),
    "probabilities_do_not_sum_to_1": (_bad_sum, {}, ["frames.parquet: row 3 (video_id v0, frame_index 3)",
                                                     "p0..p3 sum to 1.25, expected 1"]),
    "probabilities_outside_0_1": (_outside_unit, {}, ["frames.parquet: row 4 (video_id v0, frame_index 4)",
                                                      "p0..p3 = [1.5, -0.5, 0.0, 0.0] leave [0, 1]"]),
    "param_value_not_allowed": (None, {"tnorm": "maximum"},
                                ["'aggregator.tnorm': 'maximum' is not allowed; expected one of: product, "
                                 "lukasiewicz, min"]),
    "param_out_of_range": (None, {"lr": -1}, ["'aggregator.lr': -1.0 is outside the allowed range [1e-08, 10.0]"]),
    "param_wrong_type": (None, {"epochs": "ten"}, ["'aggregator.epochs': expected an integer, got 'ten'"]),
}


@pytest.mark.parametrize("case", sorted(AGGREGATOR_CASES))
def test_train_aggregator_refuses_bad_table_or_params(case, tmp_path, monkeypatch, capsys):
    edit, section, expected = AGGREGATOR_CASES[case]
    paths = _aggregator_inputs(tmp_path)
    if edit is not None:
        edit(pd.read_parquet(paths["frames"])).to_parquet(paths["frames"], index=False)
    params = params_file(tmp_path, aggregator={"epochs": 3, **section})
    argv = ["--params", str(params), "--fold", "0", "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
            "--manifest", str(paths["manifest"]), "--out", str(paths["out"])]
    code, err = run_stage("train_aggregator", argv, monkeypatch, capsys)
    assert_failed(code, err, *expected)
    assert not paths["out"].exists()
    if edit is None:   # the same inputs with good params train fine
        params_file(tmp_path, aggregator={"epochs": 3})
        code, err = run_stage("train_aggregator", argv, monkeypatch, capsys)
        assert code == 0, err
        assert (paths["out"] / "fold_0.json").is_file()


def test_train_aggregator_inner_cross_fit_without_inner_rows_writes_nothing(tmp_path, monkeypatch, capsys):
    """cross_fit: inner with an empty train_frame_inner table: one line naming the missing videos, no fold file
    written (the stage fits every fold before it writes any)."""
    paths = _aggregator_inputs(tmp_path)
    inner = tmp_path / "inner.parquet"
    pd.read_parquet(paths["frames"]).iloc[:0].to_parquet(inner, index=False)
    params = params_file(tmp_path, aggregator={"epochs": 3, "cross_fit": "inner"})
    argv = ["--params", str(params), "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
            "--manifest", str(paths["manifest"]), "--inner-frames", str(inner), "--out", str(paths["out"])]
    code, err = run_stage("train_aggregator", argv, monkeypatch, capsys)
    assert_failed(code, err, "inner.parquet: no inner cross-fitting rows (fold 0) for training video(s)",
                  "rerun train_frame_inner")
    assert not paths["out"].exists() or not list(paths["out"].iterdir())


@pytest.mark.parametrize("stage", ["train_frame", "train_cnn_lstm", "train_segmentation"])
def test_training_stages_refuse_a_bad_worker_count_or_fold(stage, tmp_path, monkeypatch, capsys):
    """Checked before any data is read: a negative --workers, a malformed $LUS_WORKERS, an unknown --fold."""
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [{"train": ["a"], "val": [], "test": ["b"]},
                                           {"train": ["b"], "val": [], "test": ["a"]}]}))
    params = params_file(tmp_path, frame_model={}, cnn_lstm={}, segmentation={})
    base = ["--params", str(params), "--folds", str(folds), "--frames", str(tmp_path / "none"),
            "--out", str(tmp_path / "out")]
    code, err = run_stage(stage, [*base, "--workers", "-1"], monkeypatch, capsys)
    assert_failed(code, err, "--workers must be >= 0 (0 = one per core), got -1")
    monkeypatch.setenv("LUS_WORKERS", "two")
    code, err = run_stage(stage, base, monkeypatch, capsys)
    assert_failed(code, err, "$LUS_WORKERS must be a whole number >= 0, got 'two'")
    monkeypatch.delenv("LUS_WORKERS")
    if stage != "train_segmentation":   # segmentation selects folds by params (segmentation.folds)
        code, err = run_stage(stage, [*base, "--fold", "9"], monkeypatch, capsys)
        assert_failed(code, err, "folds.json: fold 9 is out of range (folds 0..1)")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- entry point
def test_entry_point_subprocess(tmp_path):
    """`python -m stages.train_aggregator` itself: one error line on stderr, exit code 1, nothing written."""
    paths = _aggregator_inputs(tmp_path)
    params = params_file(tmp_path, aggregator={"tnorm": "maximum"})
    proc = subprocess.run([sys.executable, "-m", "stages.train_aggregator", "--params", str(params), "--fold", "0",
                           "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
                           "--manifest", str(paths["manifest"]), "--out", str(paths["out"])],
                          cwd=PROJECT_ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert_failed(proc.returncode, proc.stderr, "'aggregator.tnorm': 'maximum' is not allowed")
    assert "Traceback" not in proc.stderr and not paths["out"].exists()
