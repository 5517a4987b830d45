"""Importer of COVID-BLUES (Wiedemann et al., IEEE JBHI 2025), read in place under ``root``.

Layout: ``lus_videos/patient_<ID>_<POINT>[_2].mp4`` (``_2`` = second recording of a point),
``severity.csv`` (``video_file`` without ``.mp4``, ``Severity Score`` float 0.0-3.0),
``clinical_variables.csv`` (``patient_id``, ``cov_test`` = PCR, 1 positive).

Mapping: one Philips Lumify convex probe, one "hospital" (``covid-blues``); patient ids are scoped
(``blues_p<ID>``) so they cannot collide with other sources. A PCR-negative patient is *not*
healthy (they were admitted with respiratory symptoms), so ``diagnosis`` is ``covid`` for positives
and blank otherwise, while ``covid_positive`` carries the test result (1/0) for everyone. Severity
rows of videos that are not in this copy of the data are ignored (the folder holds 312 of the 362
upstream videos); a video without a severity row is an error. ``fps``/``n_frames`` come from the
container metadata (fast; extraction records the decoded count).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lus.data.manifest import MANIFEST_COLUMNS, ManifestError
from lus.data.video import probe

HOSPITAL = "covid-blues"
_NAME = re.compile(r"^patient_(?P<pid>\d+)_(?P<point>[LR][1-3])(?:_2)?$")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """All cells as stripped strings (the upstream files carry trailing spaces), columns checked."""
    if not path.is_file():
        raise FileNotFoundError(f"covid-blues: expected file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
    return df.apply(lambda col: col.str.strip())


def read_severity(path: Path) -> dict[str, int]:
    """``{video stem: severity 0..3}``; rows are 1-based data rows in messages."""
    df = _read_csv(path, ("video_file", "Severity Score"))
    scores: dict[str, int] = {}
    for i, (name, raw) in enumerate(zip(df["video_file"], df["Severity Score"]), start=1):
        stem = name[:-4] if name.lower().endswith(".mp4") else name
        if not stem:
            raise ManifestError(f"{path}, row {i}: 'video_file' is empty")
        try:
            value = float(raw)
        except ValueError:
            raise ManifestError(f"{path}, row {i} ({stem}): 'Severity Score' must be a number 0..3, "
                                f"got '{raw}'") from None
        if value not in (0.0, 1.0, 2.0, 3.0):
            raise ManifestError(f"{path}, row {i} ({stem}): 'Severity Score' must be 0, 1, 2 or 3, got '{raw}'")
        if stem in scores:
            raise ManifestError(f"{path}, row {i}: video '{stem}' has more than one severity row")
        scores[stem] = int(value)
    return scores


def read_pcr(path: Path) -> dict[int, int | None]:
    """``{patient number: 1 positive | 0 negative | None unknown}`` from ``cov_test``."""
    df = _read_csv(path, ("patient_id", "cov_test"))
    pcr: dict[int, int | None] = {}
    for i, (pid, test) in enumerate(zip(df["patient_id"], df["cov_test"]), start=1):
        try:
            number = int(float(pid))
        except ValueError:
            raise ManifestError(f"{path}, row {i}: 'patient_id' must be a number, got '{pid}'") from None
        if test == "":
            value = None
        elif test in ("0", "1", "0.0", "1.0"):
            value = int(float(test))
        else:
            raise ManifestError(f"{path}, row {i} (patient {number}): 'cov_test' must be 1 (positive), "
                                f"0 (negative) or empty, got '{test}'")
        if number in pcr:
            raise ManifestError(f"{path}, row {i}: patient {number} appears more than once")
        pcr[number] = value
    return pcr


def load(root: Path) -> pd.DataFrame:
    """Manifest rows (``MANIFEST_COLUMNS``, paths relative to ``root``) of every video in ``lus_videos/``."""
    root = Path(root)
    video_dir = root / "lus_videos"
    if not video_dir.is_dir():
        raise FileNotFoundError(f"covid-blues: folder not found: {video_dir} (is data.root the covid-blues folder?)")
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() == ".mp4")
    if not videos:
        raise ManifestError(f"covid-blues: no .mp4 videos in {video_dir}")
    severity_path = root / "severity.csv"
    scores = read_severity(severity_path)
    pcr = read_pcr(root / "clinical_variables.csv")
    rows = []
    for path in videos:
        match = _NAME.match(path.stem)
        if not match:
            raise ManifestError(f"covid-blues: {path} does not follow the name pattern patient_<ID>_<POINT>[_2].mp4 "
                                "(POINT = L1..L3, R1..R3)")
        if path.stem not in scores:
            raise ManifestError(f"{severity_path}: no row for video '{path.stem}' ({path}); every video needs a "
                                "'Severity Score'")
        number = int(match["pid"])
        positive = pcr.get(number)
        info = probe(path)
        rows.append({
            "video_id": path.stem,
            "path": f"lus_videos/{path.name}",
            "patient_id": f"blues_p{number}",
            "hospital": HOSPITAL,
            "probe": "convex",
            "fps": info.fps if info.fps > 0 else float("nan"),
            "n_frames": info.n_frames or None,
            "video_score": scores[path.stem],
            "diagnosis": "covid" if positive == 1 else "",
            "covid_positive": positive,
            "frame_labels": "",
            "masks": "",
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
