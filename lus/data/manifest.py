"""The video manifest: one row per video, the single contract between data sources and the rest.

Columns (``MANIFEST_COLUMNS``; empty cell = unknown):

=============  ==========================================================================
video_id       unique, filesystem-safe id (letters, digits, ``._-``); names the frame shard
path           video file, relative to the data root; must stay inside it
patient_id     patient identifier (unique across hospitals: scope it, e.g. ``<hospital>_p3``)
hospital       hospital or source the video comes from (one per patient)
probe          ``convex`` | ``linear`` | ``unknown``
fps            frames per second of the file (float > 0)
n_frames       number of frames in the file (int >= 1)
video_score    video-level severity 0..3 (Soldati scheme)
diagnosis      ``covid`` | ``pneumonia`` | ``healthy`` (patient-level)
covid_positive 1 / 0: the patient's COVID-19 test (covid-blues PCR), when known
frame_labels   .npz relative to the root with ``labels`` int (T,) 0..3 and optional
               ``annotators`` int (A, T); T = frames in the video file
masks          .npz relative to the root with ``masks`` uint8 (T, H, W) in video pixels,
               classes 0 background, 1..4 = region of score 0..3
=============  ==========================================================================
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lus.labels import DIAGNOSES, SCORE_CLASSES, SCORES

MANIFEST_COLUMNS = [
    "video_id", "path", "patient_id", "hospital", "probe", "fps", "n_frames",
    "video_score", "diagnosis", "covid_positive", "frame_labels", "masks",
]
REQUIRED_COLUMNS = ["video_id", "path", "patient_id"]
PROBES = ("convex", "linear", "unknown")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ManifestError(ValueError):
    """The manifest (or a user's CSV) breaks the schema; the message names file, row and column."""


def safe_video_id(name: str) -> str:
    """Turn a file stem into a filesystem-safe id (``Cov-Atlas+(44)`` -> ``Cov-Atlas_44``)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return re.sub(r"_+", "_", out) or "video"


def resolve_inside(root: Path, rel: str, where: str) -> Path:
    """Resolve ``rel`` against ``root`` and refuse anything that escapes it (``..``, absolute paths, links)."""
    root_resolved = root.resolve()
    candidate = Path(rel)
    full = (candidate if candidate.is_absolute() else root_resolved / candidate).resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise ManifestError(f"{where}: path '{rel}' escapes the data root {root_resolved}; "
                            "paths must be relative and stay inside data.root")
    return full


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())


def validate_manifest(df: pd.DataFrame, root: Path, source: str, check_files: bool = True) -> pd.DataFrame:
    """Check every row against the schema and return a normalised copy (typed columns, fixed order).

    ``source`` names the file or importer in error messages (e.g. ``my_videos.csv``). Row numbers
    in messages are 1-based data rows (header excluded), as a spreadsheet user would count them
    minus the header.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {', '.join(missing)}; "
                            f"expected columns: {', '.join(MANIFEST_COLUMNS)}")
    unknown = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(f"{source}: unknown column(s) {', '.join(map(str, unknown))}; "
                            f"expected columns: {', '.join(MANIFEST_COLUMNS)}")
    if len(df) == 0:
        raise ManifestError(f"{source}: the dataset is empty (no video rows)")
    df = df.reindex(columns=MANIFEST_COLUMNS).copy()
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=1):
        where = f"{source}, row {i}"
        out: dict[str, object] = {}
        for col in ("video_id", "path", "patient_id"):
            if _blank(rec[col]):
                raise ManifestError(f"{where}: column '{col}' is empty; every video needs one")
            out[col] = str(rec[col]).strip()
        if not _SAFE_ID.match(out["video_id"]):
            raise ManifestError(f"{where}: video_id '{out['video_id']}' must use only letters, digits, '.', '_', '-'")
        full = resolve_inside(root, out["path"], where)
        if check_files and not full.is_file():
            raise ManifestError(f"{where}: video file not found: {full}")
        out["hospital"] = "" if _blank(rec["hospital"]) else str(rec["hospital"]).strip()
        probe = "unknown" if _blank(rec["probe"]) else str(rec["probe"]).strip().lower()
        if probe not in PROBES:
            raise ManifestError(f"{where}: probe '{probe}' is not one of {', '.join(PROBES)}")
        out["probe"] = probe
        for col, kind in (("fps", float), ("n_frames", int)):
            value = rec[col]
            if _blank(value):
                out[col] = np.nan
                continue
            try:
                num = float(value)
            except (TypeError, ValueError):
                raise ManifestError(f"{where}: column '{col}' must be a number, got '{value}'") from None
            if not np.isfinite(num) or num <= 0 or (kind is int and num != int(num)):
                raise ManifestError(f"{where}: column '{col}' must be a positive {'integer' if kind is int else 'number'}, got '{value}'")
            out[col] = num
        score = rec["video_score"]
        if _blank(score):
            out["video_score"] = np.nan
        else:
            try:
                num = float(score)
            except (TypeError, ValueError):
                raise ManifestError(f"{where}: video_score must be an integer 0..3, got '{score}'") from None
            if num not in SCORES:
                raise ManifestError(f"{where}: video_score must be an integer 0..3, got '{score}'")
            out["video_score"] = num
        diag = "" if _blank(rec["diagnosis"]) else str(rec["diagnosis"]).strip().lower()
        if diag and diag not in DIAGNOSES:
            raise ManifestError(f"{where}: diagnosis '{diag}' is not one of {', '.join(DIAGNOSES)}")
        out["diagnosis"] = diag
        pos = rec["covid_positive"]
        if _blank(pos):
            out["covid_positive"] = np.nan
        else:
            try:
                num = float(pos)
            except (TypeError, ValueError):
                raise ManifestError(f"{where}: covid_positive must be 0 or 1, got '{pos}'") from None
            if num not in (0, 1):
                raise ManifestError(f"{where}: covid_positive must be 0 or 1, got '{pos}'")
            out["covid_positive"] = num
        for col in ("frame_labels", "masks"):
            if _blank(rec[col]):
                out[col] = ""
                continue
            rel = str(rec[col]).strip()
            full_ann = resolve_inside(root, rel, where)
            if check_files and not full_ann.is_file():
                raise ManifestError(f"{where}: {col} file not found: {full_ann}")
            out[col] = rel
        rows.append(out)
    clean = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    dup = clean["video_id"][clean["video_id"].duplicated()].unique()
    if len(dup):
        raise ManifestError(f"{source}: duplicate video_id(s): {', '.join(map(str, dup[:10]))}")
    hosp = clean[clean["hospital"] != ""].groupby("patient_id")["hospital"].nunique()
    multi = hosp[hosp > 1].index.tolist()
    if multi:
        raise ManifestError(f"{source}: patient id(s) {', '.join(map(str, multi[:10]))} appear under more than one "
                            "hospital; patient ids must be unique across hospitals (prefix them with the hospital)")
    clean["fps"] = clean["fps"].astype(float)
    clean["n_frames"] = clean["n_frames"].astype("Int64")
    clean["video_score"] = clean["video_score"].astype("Int64")
    clean["covid_positive"] = clean["covid_positive"].astype("Int64")
    return clean


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by the prepare stage (already validated), with typed columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run the prepare stage first: dvc repro prepare)")
    df = pd.read_csv(path, dtype={"video_id": str, "path": str, "patient_id": str, "hospital": str,
                                  "probe": str, "diagnosis": str, "frame_labels": str, "masks": str},
                     keep_default_na=False,
                     na_values={"fps": [""], "n_frames": [""], "video_score": [""], "covid_positive": [""]})
    for col in ("n_frames", "video_score", "covid_positive"):
        df[col] = df[col].astype("Int64")
    return df


def extracted_videos(manifest_path: str | Path, index_path: str | Path) -> pd.DataFrame:
    """Manifest rows (in manifest order) of the videos that extraction kept, i.e. listed in its ``index.csv``:
    the table the split stage splits; a skipped video has no frames."""
    index_path = Path(index_path)
    if not index_path.is_file():
        raise FileNotFoundError(f"frame index not found: {index_path} (run: dvc repro extract_frames)")
    kept = set(pd.read_csv(index_path, dtype={"video_id": str}, usecols=["video_id"])["video_id"])
    manifest = read_manifest(manifest_path)
    return manifest[manifest["video_id"].isin(kept)].reset_index(drop=True)


def resolve_target(videos: pd.DataFrame, target: str) -> tuple[str, list[str], pd.Series]:
    """(column, class names, per-video class index with -1 = unknown) for ``cnn_lstm.target``."""
    diag = videos["diagnosis"].fillna("").astype(str).str.strip().str.lower()
    if target == "diagnosis" or (target == "auto" and len(diag) and diag.isin(DIAGNOSES).all()):
        idx = diag.map({d: i for i, d in enumerate(DIAGNOSES)}).fillna(-1).astype(int)
        return "diagnosis", list(DIAGNOSES), idx
    score = pd.to_numeric(videos["video_score"], errors="coerce")
    return "video_score", list(SCORE_CLASSES), score.fillna(-1).astype(int)


def patient_covid_labels(manifest: pd.DataFrame) -> dict[str, int]:
    """patient_id -> COVID-19 test result (0/1) for the patients that have one."""
    if "covid_positive" not in manifest.columns:
        return {}
    return {str(p): int(v) for p, v in zip(manifest["patient_id"], manifest["covid_positive"]) if not pd.isna(v)}
