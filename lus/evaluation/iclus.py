"""Roy et al. Table 2 on the converted ICLUS frame predictions (``lus iclus-table``).

Joins the layers for one run: the safe ICLUS copy (:mod:`lus.data.iclus`), the folds of the chosen
protocol (:func:`lus.data.folds.protocol_folds`), the aggregator per fold and t-norm
(:func:`lus.train.aggregator.run_folds`), the fold metrics (:mod:`lus.metrics.video`) and the markdown
(:mod:`lus.report.iclus`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lus.config.aggregator import paper_config
from lus.data.folds import protocol_folds
from lus.data.iclus import load_iclus
from lus.data.video_set import VideoSet
from lus.io import write_csv, write_json, write_text
from lus.metrics.video import summarize_folds
from lus.report.iclus import render_table
from lus.train.aggregator import run_folds


def iclus_videos(frames: pd.DataFrame, videos: pd.DataFrame) -> VideoSet:
    """All ICLUS videos as one :class:`VideoSet`, labelled with the spreadsheet's video score."""
    scores = dict(zip(videos["video_id"].astype(str), videos["video_score"].astype(int)))
    return VideoSet.from_frames(frames, scores)


def iclus_table(data_dir: str | Path, out_dir: str | Path, n_folds: int = 5, seed: int = 0,
                tnorms: Iterable[str] = ("product", "lukasiewicz", "min"), command: str = "",
                protocol: str = "kfold") -> dict[str, Any]:
    """Run the aggregator (paper settings, each t-norm) and the baselines on the converted ICLUS data.

    ``protocol``: ``kfold`` (``n_folds`` patient-wise folds, greedy stratified with ``seed``),
    ``traintest`` (the frame model's published train/test split), ``lopo`` or ``lovo`` (METHODS §2.7).
    Writes ``table.md``, ``metrics.json`` (flat numbers), ``folds.json``, ``predictions.csv`` and
    ``fits.json`` to ``out_dir``; returns the metrics summary.
    """
    frames, videos = load_iclus(data_dir)
    folds = protocol_folds(videos, protocol, n_folds, seed)
    configs = {t: paper_config(t) for t in tnorms}
    tables, fits = run_folds(iclus_videos(frames, videos), folds, configs, seed)
    summary = summarize_folds(tables)
    counts = {"videos": int(len(videos)), "patients": int(videos["patient_id"].nunique()), "frames": int(len(frames))}
    out_dir = Path(out_dir)
    write_json(out_dir / "folds.json", folds)
    write_csv(out_dir / "predictions.csv", pd.concat(tables, ignore_index=True))
    write_json(out_dir / "fits.json", {"seed": seed, "configs": {k: v.to_dict() for k, v in configs.items()},
                                       "fits": fits})
    write_json(out_dir / "metrics.json", summary)
    write_text(out_dir / "table.md", render_table(summary, fits, folds, counts, command))
    return summary
