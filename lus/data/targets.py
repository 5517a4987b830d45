"""Per-video and per-patient classification targets read from the manifest.

Shared by the CNN-LSTM stage and the baselines stage, so both classify exactly the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lus.data.manifest import DIAGNOSES

SCORE_CLASSES = ("score0", "score1", "score2", "score3")


def video_targets(videos: pd.DataFrame, target: str) -> tuple[str, list[str], pd.Series]:
    """(column, class names, per-video class index with -1 = unknown) for ``cnn_lstm.target``.

    ``auto``: the diagnosis when every video has one, else the video score 0..3.
    """
    diag = videos["diagnosis"].fillna("").astype(str).str.strip().str.lower()
    if target == "diagnosis" or (target == "auto" and len(diag) and diag.isin(DIAGNOSES).all()):
        idx = diag.map({d: i for i, d in enumerate(DIAGNOSES)}).fillna(-1).astype(int)
        return "diagnosis", list(DIAGNOSES), idx
    score = pd.to_numeric(videos["video_score"], errors="coerce")
    return "video_score", list(SCORE_CLASSES), score.fillna(-1).astype(int)


def patient_covid_labels(manifest: pd.DataFrame) -> Mapping[str, int]:
    """patient_id -> COVID-19 test result (0/1) for the patients that have one."""
    if "covid_positive" not in manifest.columns:
        return {}
    return {str(p): int(v) for p, v in zip(manifest["patient_id"], manifest["covid_positive"]) if not pd.isna(v)}
