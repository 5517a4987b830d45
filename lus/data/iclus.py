"""ICLUS public frame predictions of Roy et al. 2020 (DATA.md §4): safe conversion and loading.

The folder ``../shared/data/iclus-frame-predictions/`` holds the only public real inputs of the
uninorm aggregator: ``frame_predictions.pkl`` (a pickled pandas DataFrame, one row per frame), two
``.xlsx`` files (video scores and video names) and ``train_test_split.csv`` (the frame model's split).

Pickle safety. Unpickling executes code chosen by whoever wrote the file, so a pickle is never
loaded implicitly. :func:`load_frame_predictions` refuses unless

1. the caller passes ``trust_pickle=True`` (CLI: ``--trust-pickle``), and
2. the file's SHA-256 equals :data:`PINNED_SHA256` (the published file, verified once), and then
3. unpickles it with an allow-list unpickler that can only build the nine pandas/numpy classes this
   DataFrame uses (defence in depth; anything else raises before it is called).

The bytes are read once, hashed and unpickled from memory (no check/use race). :func:`convert_iclus`
runs this once and writes a safe Parquet copy (``frames.parquet``) plus ``videos.csv`` and
``source.json``; everything else reads only the safe copy (:func:`load_iclus`). Table 2 on this data:
:mod:`lus.evaluation.iclus`.

Join (DATA.md §4): strip ``.mat`` from ``filenames``; mapping ⋈ annotations on ``Video``; ⋈
predictions on the file name; hospital and patient come from the pickle (the xlsx disagrees for
2,598 frame rows). Result: 58 videos, 27 patients, 6 hospitals, 14,311 frames.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import pickle
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from lus.data.manifest import safe_video_id
from lus.io import read_json, write_csv, write_json, write_parquet, write_text

log = logging.getLogger(__name__)

PICKLE_NAME = "frame_predictions.pkl"
ANNOTATIONS_NAME = "video_annotations.xlsx"
MAPPING_NAME = "video_annotations_to_video_names.xlsx"
SPLIT_NAME = "train_test_split.csv"
# SHA-256 of frame_predictions.pkl as published in qutsweauca/DL4covidUltrasound (commit ad614dd),
# computed on the copy in ../shared/data/iclus-frame-predictions/.
PINNED_SHA256 = "25219085041bf25d39ec0f1f7e7d4579744dbdc021ece39154820721acc96017"
EXPECTED_COUNTS = {"videos": 58, "patients": 27, "hospitals": 6, "frames": 14311}
CONVERSION_VERSION = 1

# (module, name) found in the pickle -> where it lives in the installed pandas/numpy
_ALLOWED_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.frame", "DataFrame"): ("pandas.core.frame", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.base", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),  # removed in pandas 2
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 name
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("builtins", "slice"): ("builtins", "slice"),
}

class PickleTrustError(ValueError):
    """The pickle was not loaded: no explicit trust, unknown checksum or a forbidden object inside."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise PickleTrustError(f"refusing to unpickle: the file references {module}.{name}, which is not "
                                   "one of the pandas/numpy classes of the known ICLUS DataFrame")
        return getattr(importlib.import_module(target[0]), target[1])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_frame_predictions(path: str | Path, trust_pickle: bool = False,
                           expected_sha256: str = PINNED_SHA256) -> pd.DataFrame:
    """Unpickle ``frame_predictions.pkl`` after the explicit trust flag and the SHA-256 check."""
    path = Path(path)
    if not trust_pickle:
        raise PickleTrustError(
            f"refusing to load {path}: a pickle file can run arbitrary code when it is loaded. Load it only "
            f"if it is the published ICLUS file; this command checks its SHA-256 against the pinned value "
            f"{expected_sha256} before loading it, and converts it once to Parquet. To proceed pass "
            "--trust-pickle (python: trust_pickle=True).")
    if not path.is_file():
        raise FileNotFoundError(f"ICLUS frame predictions not found: {path}")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != expected_sha256:
        raise PickleTrustError(
            f"refusing to load {path}: its SHA-256 is {digest}, not the pinned {expected_sha256} of the published "
            "ICLUS frame predictions. The file was changed or is a different file; a pickle of unknown origin is "
            "never loaded, even with --trust-pickle.")
    try:
        obj = _AllowListUnpickler(io.BytesIO(data)).load()
    except PickleTrustError:
        raise
    except Exception as exc:  # a pandas/numpy version that cannot rebuild the old objects
        raise ValueError(f"{path}: could not rebuild the pickled DataFrame with this pandas/numpy ({exc})") from exc
    if not isinstance(obj, pd.DataFrame):
        raise ValueError(f"{path}: expected a pandas DataFrame, got {type(obj).__name__}")
    return obj


def read_xlsx(path: str | Path) -> pd.DataFrame:
    """Read the first sheet of an .xlsx with openpyxl (cell values only: no macros, formulas, links)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spreadsheet not found: {path}")
    return pd.read_excel(path, engine="openpyxl", sheet_name=0)


def _require(frame: pd.DataFrame, cols: Iterable[str], where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")


def join_iclus(preds: pd.DataFrame, annotations: pd.DataFrame, mapping: pd.DataFrame,
               split: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DATA.md §4 join. Returns (frames, videos).

    frames: ``video_id, patient_id, hospital, patient, fold (-1), frame_index, label (frame ground
    truth), weak_label (video score), p0..p3, frame_prediction``; sorted by video and frame index.
    videos: ``video_id, patient_id, hospital, patient, filename, video, video_score, n_frames,
    hospital_xlsx, frame_model_split``.
    """
    _require(preds, ["hospital", "patient", "filenames", "frame_pos", "ground_truth", "scores"], PICKLE_NAME)
    _require(annotations, ["Video", "Score"], ANNOTATIONS_NAME)
    _require(mapping, ["Video", "hospital", "patient", "filename"], MAPPING_NAME)
    p = preds.reset_index(drop=True)
    scores = np.asarray(p["scores"].tolist(), dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != 4:
        raise ValueError(f"{PICKLE_NAME}: 'scores' must hold 4 probabilities per frame, got shape {scores.shape}")
    filename = p["filenames"].astype(str).str.replace(r"\.mat$", "", regex=True)
    ann = mapping.merge(annotations[["Video", "Score"]], on="Video", how="inner", validate="one_to_one")
    ann = ann.rename(columns={"hospital": "hospital_xlsx", "patient": "patient_xlsx"})
    frames = pd.DataFrame({
        "filename": filename, "hospital": p["hospital"].astype(str), "patient": p["patient"].astype(str),
        "frame_index": p["frame_pos"].astype(np.int64), "label": p["ground_truth"].astype(np.int64),
    })
    for c in range(4):
        frames[f"p{c}"] = scores[:, c]
    if "prediction" in p.columns:
        frames["frame_prediction"] = p["prediction"].astype(np.int64)
    frames = frames.merge(ann[["filename", "Video", "Score", "hospital_xlsx"]], on="filename", how="left",
                          validate="many_to_one")
    unmatched = frames.loc[frames["Score"].isna(), "filename"].unique()
    if len(unmatched):
        raise ValueError(f"{len(unmatched)} video(s) of {PICKLE_NAME} have no score in {ANNOTATIONS_NAME}/"
                         f"{MAPPING_NAME}, e.g. {', '.join(map(str, unmatched[:5]))}")
    per_file = frames.groupby("filename")[["hospital", "patient"]].nunique()
    if (per_file > 1).any().any():
        raise ValueError(f"{PICKLE_NAME}: a video file belongs to more than one hospital/patient")
    frames["video_id"] = frames["filename"].map(safe_video_id)
    if frames.groupby("video_id")["filename"].nunique().max() > 1:
        raise ValueError("two ICLUS file names map to the same video id")
    frames["patient_id"] = [safe_video_id(f"{h}_{pt}") for h, pt in zip(frames["hospital"], frames["patient"])]
    frames["weak_label"] = frames["Score"].astype(np.int64)
    frames["fold"] = np.int64(-1)
    frames = frames.sort_values(["video_id", "frame_index"], kind="mergesort").reset_index(drop=True)
    if frames.duplicated(["video_id", "frame_index"]).any():
        raise ValueError(f"{PICKLE_NAME}: repeated frame positions within a video")

    videos = (frames.groupby("video_id", sort=True)
              .agg(patient_id=("patient_id", "first"), hospital=("hospital", "first"), patient=("patient", "first"),
                   filename=("filename", "first"), video=("Video", "first"), video_score=("weak_label", "first"),
                   n_frames=("frame_index", "size"), hospital_xlsx=("hospital_xlsx", "first"))
              .reset_index())
    videos["video"] = videos["video"].astype(np.int64)
    videos["frame_model_split"] = ""
    if split is not None and {"hospital", "patient", "split"} <= set(split.columns):
        key = dict(zip(zip(split["hospital"].astype(str), split["patient"].astype(str)), split["split"].astype(str)))
        patient_xlsx = ann.set_index("filename")["patient_xlsx"]
        videos["frame_model_split"] = [key.get((hx, str(patient_xlsx.get(fn, ""))), "")
                                       for hx, fn in zip(videos["hospital_xlsx"], videos["filename"])]
    cols = ["video_id", "patient_id", "hospital", "patient", "fold", "frame_index", "label", "weak_label",
            "p0", "p1", "p2", "p3"] + (["frame_prediction"] if "frame_prediction" in frames.columns else [])
    return frames[cols], videos


def _input_hashes(src: Path) -> dict[str, str]:
    return {name: sha256_file(src / name) for name in (PICKLE_NAME, ANNOTATIONS_NAME, MAPPING_NAME, SPLIT_NAME)
            if (src / name).is_file()}


def convert_iclus(src: str | Path, out: str | Path, trust_pickle: bool = False, force: bool = False,
                  expected_sha256: str = PINNED_SHA256) -> dict[str, Any]:
    """Convert the ICLUS folder once into ``out/frames.parquet``, ``out/videos.csv``, ``out/source.json``.

    Skips the work (and never touches the pickle) when ``out`` already holds a conversion of the same
    input files, unless ``force``. Returns the summary written to ``source.json``.
    """
    src, out = Path(src), Path(out)
    for name in (PICKLE_NAME, ANNOTATIONS_NAME, MAPPING_NAME):
        if not (src / name).is_file():
            raise FileNotFoundError(f"ICLUS file not found: {src / name} (expected the folder "
                                    "../shared/data/iclus-frame-predictions)")
    hashes = _input_hashes(src)
    summary_path = out / "source.json"
    if not force and summary_path.is_file() and (out / "frames.parquet").is_file() and (out / "videos.csv").is_file():
        old = read_json(summary_path)
        if old.get("inputs_sha256") == hashes and old.get("conversion_version") == CONVERSION_VERSION:
            log.info("%s is up to date (same input checksums); nothing to do", out)
            return {**old, "skipped": True}
    preds = load_frame_predictions(src / PICKLE_NAME, trust_pickle=trust_pickle, expected_sha256=expected_sha256)
    split = pd.read_csv(src / SPLIT_NAME) if (src / SPLIT_NAME).is_file() else None
    frames, videos = join_iclus(preds, read_xlsx(src / ANNOTATIONS_NAME), read_xlsx(src / MAPPING_NAME), split)
    counts = {"videos": int(len(videos)), "patients": int(videos["patient_id"].nunique()),
              "hospitals": int(videos["hospital"].nunique()), "frames": int(len(frames))}
    if counts != EXPECTED_COUNTS:
        log.warning("ICLUS join gave %s, DATA.md documents %s", counts, EXPECTED_COUNTS)
    summary = {
        "source": str(src), "conversion_version": CONVERSION_VERSION, "inputs_sha256": hashes,
        "pinned_pickle_sha256": expected_sha256, "counts": counts,
        "video_scores": {str(k): int(v) for k, v in videos["video_score"].value_counts().sort_index().items()},
        "frames_per_hospital": {str(k): int(v) for k, v in frames["hospital"].value_counts().items()},
        "hospital_name_mismatch_frames": int((frames.merge(videos[["video_id", "hospital_xlsx"]], on="video_id")
                                              .pipe(lambda f: (f["hospital"] != f["hospital_xlsx"]).sum()))),
        "licence": "CC BY-NC-SA 4.0 (Multimedia and Human Understanding Group, 2020); do not commit derived files",
    }
    out.mkdir(parents=True, exist_ok=True)
    # derived from licensed data: keep it out of git even if the project .gitignore does not list it
    write_text(out / ".gitignore", "# derived from the ICLUS data (CC BY-NC-SA 4.0): not for the repository\n*\n")
    write_parquet(out / "frames.parquet", frames)
    write_csv(out / "videos.csv", videos)
    write_json(summary_path, summary)
    return summary


def load_iclus(data_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the converted (safe) ICLUS copy: (frames, videos)."""
    data_dir = Path(data_dir)
    frames_path, videos_path = data_dir / "frames.parquet", data_dir / "videos.csv"
    for path in (frames_path, videos_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; convert the ICLUS files first: "
                                    "lus iclus-convert --trust-pickle --src ../shared/data/iclus-frame-predictions "
                                    f"--out {data_dir}")
    videos = pd.read_csv(videos_path, dtype={"video_id": str, "patient_id": str, "hospital": str, "patient": str,
                                             "filename": str, "frame_model_split": str}, keep_default_na=False)
    return pd.read_parquet(frames_path), videos
