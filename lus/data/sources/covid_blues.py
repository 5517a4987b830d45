"""Importer of COVID-BLUES (Wiedemann et al., IEEE JBHI 2025), read in place.

Layout: ``lus_videos/patient_<ID>_<POINT>[_2].mp4``, ``severity.csv`` (one severity 0..3 per video),
``clinical_variables.csv`` (``patient_id``, ``cov_test`` = PCR result per patient). All videos come
from one device (Philips Lumify, convex). There are no frame labels and no masks. A PCR-negative
patient is *not* healthy (they were admitted with respiratory symptoms), so ``diagnosis`` is only
set for positives and ``covid_positive`` carries the test result for everyone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError
from lus.data.video import probe

_NAME = re.compile(r"^patient_(?P<pid>\d+)_(?P<point>[LR][1-3])(?:_2)?$")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"covid-blues: expected file not found: {path}")
    return pd.read_csv(path)


def load(root: Path) -> pd.DataFrame:
    videos = sorted((root / "lus_videos").glob("*.mp4"))
    if not videos:
        raise ManifestError(f"covid-blues: no .mp4 videos under {root / 'lus_videos'}")
    sev = _read_csv(root / "severity.csv")
    sev["video_file"] = sev["video_file"].astype(str).str.strip()
    scores = dict(zip(sev["video_file"], sev["Severity Score"]))
    clinical = _read_csv(root / "clinical_variables.csv")
    pcr = dict(zip(clinical["patient_id"].astype(int), clinical["cov_test"]))
    rows = []
    for path in videos:
        stem = path.stem
        match = _NAME.match(stem)
        if not match:
            raise ManifestError(f"covid-blues: {path.name} does not follow patient_<ID>_<POINT>[_2].mp4")
        if stem not in scores or pd.isna(scores[stem]):
            raise ManifestError(f"covid-blues: {root / 'severity.csv'} has no 'Severity Score' for video {stem}")
        pid = int(match["pid"])
        positive = pcr.get(pid)
        fps, count = probe(path)
        rows.append({
            "video_id": stem, "path": f"lus_videos/{path.name}", "patient_id": f"blues_p{pid}",
            "hospital": "covid-blues", "probe": "convex", "fps": fps or None, "n_frames": count or None,
            "video_score": int(float(scores[stem])),
            "diagnosis": "covid" if positive == 1 else "",
            "covid_positive": None if positive is None or pd.isna(positive) else int(positive),
            "frame_labels": "", "masks": "",
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
