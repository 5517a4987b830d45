"""Importer of the POCUS convex subset (Born et al.; data family of Barros et al. 2021), read in place.

``manifest.csv`` (``filename, label, patient_id, source, license, frames, fps, width, height,
bytes``) describes ``videos/<filename>``. Mapping: ``label`` -> diagnosis (the upstream names
``COVID-19``, ``Bacterial pneumonia``, ``regular`` are accepted too), ``source`` -> hospital (each
source has its own devices, overlays and container, so it is the confounder to group by),
``patient_id`` as given (already source-scoped), ``frames`` -> n_frames (the decoded count), probe
convex. ``covid_positive`` stays blank: the labels are diagnoses, not test results. File names
contain spaces, ``+`` and brackets, so video ids are sanitised with ``safe_video_id`` and made
unique with a ``_2``, ``_3`` ... suffix in file order.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError, safe_video_id

REQUIRED = ("filename", "label", "patient_id", "source", "frames", "fps")
LABELS = {"covid": "covid", "covid-19": "covid", "pneumonia": "pneumonia", "bacterial pneumonia": "pneumonia",
          "healthy": "healthy", "regular": "healthy"}


def _number(value: str, path: Path, row: int, col: str, integer: bool) -> float:
    try:
        num = float(value)
    except ValueError:
        num = float("nan")
    if not math.isfinite(num) or num <= 0 or (integer and num != int(num)):
        kind = "a positive integer" if integer else "a positive number"
        raise ManifestError(f"{path}, row {row}: '{col}' must be {kind}, got '{value}'")
    return num


def load(root: Path) -> pd.DataFrame:
    """Manifest rows (``MANIFEST_COLUMNS``, paths relative to ``root``) of every row of ``manifest.csv``."""
    root = Path(root)
    path = root / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"pocus: expected file not found: {path} (is data.root the pocus folder?)")
    try:
        meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from exc
    meta.columns = [str(c).strip() for c in meta.columns]
    missing = [c for c in REQUIRED if c not in meta.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}")
    rows, seen = [], set()
    for i, rec in enumerate(meta.to_dict("records"), start=1):
        rec = {k: str(v).strip() for k, v in rec.items()}
        for col in ("filename", "label", "patient_id", "source"):
            if not rec[col]:
                raise ManifestError(f"{path}, row {i}: '{col}' is empty")
        label = LABELS.get(rec["label"].lower())
        if label is None:
            raise ManifestError(f"{path}, row {i} ({rec['filename']}): label '{rec['label']}' is not one of "
                                "covid, pneumonia, healthy")
        base = safe_video_id(Path(rec["filename"]).stem)
        video_id, k = base, 2
        while video_id in seen:
            video_id, k = f"{base}_{k}", k + 1
        seen.add(video_id)
        rows.append({
            "video_id": video_id,
            "path": f"videos/{rec['filename']}",
            "patient_id": rec["patient_id"],
            "hospital": rec["source"],
            "probe": "convex",
            "fps": _number(rec["fps"], path, i, "fps", integer=False),
            "n_frames": int(_number(rec["frames"], path, i, "frames", integer=True)),
            "video_score": None,
            "diagnosis": label,
            "covid_positive": None,
            "frame_labels": "",
            "masks": "",
        })
    if not rows:
        raise ManifestError(f"{path}: no video rows")
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
