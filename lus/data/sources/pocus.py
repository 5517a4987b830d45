"""Importer of the POCUS convex subset (Born et al.; data family of Barros et al. 2021), read in place.

``manifest.csv`` gives per file the class (covid|pneumonia|healthy), a source-scoped patient id,
the source (used as 'hospital': each source has its own devices and overlays), decoded frame count
and fps. File names contain spaces, '+' and brackets, so video ids are sanitised (and made unique).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError, safe_video_id


def load(root: Path) -> pd.DataFrame:
    path = root / "manifest.csv"
    if not path.is_file():
        raise ManifestError(f"pocus: expected file not found: {path}")
    meta = pd.read_csv(path, dtype={"filename": str, "label": str, "patient_id": str, "source": str})
    for col in ("filename", "label", "patient_id", "source", "frames", "fps"):
        if col not in meta.columns:
            raise ManifestError(f"pocus: {path} lacks column '{col}'")
    rows, seen = [], set()
    for i, rec in enumerate(meta.to_dict("records"), start=1):
        base = safe_video_id(Path(rec["filename"]).stem)
        vid, k = base, 2
        while vid in seen:
            vid, k = f"{base}_{k}", k + 1
        seen.add(vid)
        rows.append({
            "video_id": vid, "path": f"videos/{rec['filename']}", "patient_id": rec["patient_id"],
            "hospital": rec["source"], "probe": "convex", "fps": rec["fps"], "n_frames": rec["frames"],
            "video_score": None, "diagnosis": str(rec["label"]).strip().lower(), "covid_positive":
            1 if str(rec["label"]).strip().lower() == "covid" else 0, "frame_labels": "", "masks": "",
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
