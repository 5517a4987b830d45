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
from lus.data.aggregator_inputs import load_labelled_videos
from lus.data.folds import load_folds, protocol_folds
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
    return protocol_table(iclus_videos(frames, videos), videos, out_dir, n_folds=n_folds, seed=seed, tnorms=tnorms,
                          command=command, protocol=protocol)


def pipeline_table(frames_path: str | Path, folds_path: str | Path, manifest_path: str | Path, out_dir: str | Path,
                   n_folds: int = 5, seed: int = 0, tnorms: Iterable[str] = ("product", "lukasiewicz", "min"),
                   command: str = "", protocol: str = "kfold") -> dict[str, Any]:
    """The same comparison on a pipeline run's out-of-fold frame probabilities (``predict_frames``).

    ``traintest`` is the pipeline's own fold 0: its test patients' videos against all others' (the
    pipeline has no published split); ``kfold`` re-draws patient-wise folds with ``seed``."""
    allv = load_labelled_videos(frames_path, folds_path, manifest_path)
    test_patients = set(load_folds(folds_path)[0]["test"])
    videos = pd.DataFrame({"video_id": allv.video_ids, "patient_id": allv.patient_ids, "video_score": allv.labels,
                           "fold0_split": ["test" if p in test_patients else "train" for p in allv.patient_ids]})
    return protocol_table(allv, videos, out_dir, n_folds=n_folds, seed=seed, tnorms=tnorms, command=command,
                          protocol=protocol, split_column="fold0_split",
                          split_source="fold 0 of the pipeline's folds.json (its test patients vs all others)",
                          heading="Pipeline video scores: uninorm aggregator vs baselines (Roy et al. 2020, Table 2 "
                                  "protocols)", data=f"out-of-fold frame probabilities of {frames_path}",
                          sanity_reference=False)


def protocol_table(allv: VideoSet, videos: pd.DataFrame, out_dir: str | Path, *, n_folds: int, seed: int,
                   tnorms: Iterable[str], command: str, protocol: str, split_column: str = "frame_model_split",
                   split_source: str | None = None, **render: Any) -> dict[str, Any]:
    """Folds of ``protocol`` over the per-video table ``videos``, the aggregator (paper settings, each t-norm)
    and the baselines on ``allv``; writes the five output files and returns the summary."""
    folds = protocol_folds(videos, protocol, n_folds, seed, split_column=split_column)
    if split_source:
        folds["split_source"] = split_source
    configs = {t: paper_config(t) for t in tnorms}
    tables, fits = run_folds(allv, folds, configs, seed)
    summary = summarize_folds(tables)
    counts = {"videos": int(len(videos)), "patients": int(videos["patient_id"].nunique()),
              "frames": int(allv.lengths.sum())}
    out_dir = Path(out_dir)
    write_json(out_dir / "folds.json", folds)
    write_csv(out_dir / "predictions.csv", pd.concat(tables, ignore_index=True))
    write_json(out_dir / "fits.json", {"seed": seed, "configs": {k: v.to_dict() for k, v in configs.items()},
                                       "fits": fits})
    write_json(out_dir / "metrics.json", summary)
    write_text(out_dir / "table.md", render_table(summary, fits, folds, counts, command, **render))
    return summary
