"""Cross-dataset COVID-19 detection: train on one source, test zero-shot on another (Wiedemann et al.'s protocol).

``lus external --train pocus --test covid-blues`` (see the README, Real-data results):

1. Both sources are read in place (``../shared/data/<source>``) and their frames extracted once with the
   run's ``extract`` params except size and frame count (``--input-size``, ``--max-frames`` evenly spread),
   into ``--work`` (a cache, reused while the settings and the manifest are unchanged).
2. Every frame goes through the frozen ImageNet backbone of the ``baselines`` section (MobileNetV2 by default,
   the offline weights); a video is the mean and std of its frames' features (as the linear probe).
3. A logistic regression learns COVID-19 vs not on the *training source only*: label = the video's diagnosis
   (``covid``) where known, else its patient's test result. Its regularisation is chosen by patient-grouped
   k-fold cross-validation on the training source (balanced accuracy); nothing is chosen on the test source.
4. Every test video gets P(COVID-19); a patient's score is the mean over their videos, positive at 0.5 (the
   training source's own decision rule). Accuracy, sensitivity, specificity and balanced accuracy per patient
   against the test source's result (PCR for COVID-BLUES; the videos' diagnosis for POCUS), the AUC over patients and over videos, beside the
   chance levels: always the larger class of the test patients (the most an informed constant guess gets),
   and a guess with the training source's COVID-19 share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus.config.baselines import BaselinesSection
from lus.config.extract import ExtractSection
from lus.data.extract import extract_all, jobs_from_manifest
from lus.data.frame_dataset import load_frame_table, read_index
from lus.data.frame_features import frame_table_features, pool_mean_std
from lus.data.manifest import patient_covid_labels
from lus.data.sources.registry import import_real_source
from lus.data.video_sampling import FeatureCache
from lus.io import atomic_dir, write_csv, write_json, write_text
from lus.models.backbones import build_backbone
from lus.train.linear_probe import fit_probe

log = logging.getLogger("lus.external")


def covid_labels(manifest: pd.DataFrame) -> pd.Series:
    """Per video 1 = COVID-19, 0 = not, -1 = unknown: the diagnosis where given, else the patient's test result."""
    by_patient = patient_covid_labels(manifest)
    out = []
    for _, row in manifest.iterrows():
        diagnosis = row.get("diagnosis")
        if isinstance(diagnosis, str) and diagnosis:
            out.append(int(diagnosis == "covid"))
        else:
            out.append(by_patient.get(str(row["patient_id"]), -1))
    return pd.Series(out, index=manifest.index, dtype=int)


def extract_source(source: str, root: Path, cfg: ExtractSection, work: Path, progress: bool) -> tuple[pd.DataFrame, Path]:
    """The source's manifest and its extracted frames folder (reused when manifest and settings are unchanged)."""
    manifest = import_real_source(source, root)
    key = hashlib.sha1(json.dumps({"manifest": manifest.to_csv(index=False), "extract": cfg.to_dict(),
                                   "root": str(root.resolve())}, sort_keys=True).encode()).hexdigest()[:12]
    frames = work / f"{source}-{key}" / "frames"
    if (frames / "index.csv").is_file():
        log.info("%s: reusing extracted frames in %s", source, frames)
        return manifest, frames
    t0 = time.perf_counter()
    with atomic_dir(frames) as tmp:
        result = extract_all(jobs_from_manifest(manifest, root, source=f"{source} manifest"), cfg, tmp, progress=progress)
        write_csv(tmp / "index.csv", result.index)
        write_json(tmp / "report.json", result.report)
    log.info("%s: %d videos extracted in %.0f s -> %s", source, len(result.index), time.perf_counter() - t0, frames)
    return manifest, frames


def video_features(manifest: pd.DataFrame, frames: Path, probe: BaselinesSection, cache_dir: Path,
                   progress: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """The extracted videos (manifest rows, in feature order) and their pooled (mean, std) backbone features."""
    import torch

    index = read_index(frames)
    videos = manifest[manifest["video_id"].isin(set(index["video_id"]))].sort_values("video_id").reset_index(drop=True)
    table = load_frame_table(frames, videos, probe.input_size, index=index)
    backbone = build_backbone(probe.backbone, probe.weights, probe.input_size)
    cache = FeatureCache(cache_dir, backbone.key, {"what": "frozen per-frame features", **backbone.key_info})
    with torch.no_grad():
        feats = frame_table_features(table, lambda f: backbone.features(f, probe.feature_batch), cache, progress)
    videos = videos.set_index("video_id").loc[table.video_ids].reset_index()
    return videos, pool_mean_std(feats, table.video, len(table.video_ids))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float(np.mean(pred[y == c] == c)) for c in (0, 1) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan with one class only."""
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c_grid: Sequence[float], n_splits: int, seed: int,
             max_iter: int) -> tuple[float, dict[float, float]]:
    """C with the best mean balanced accuracy over patient-grouped folds of the training source."""
    from sklearn.model_selection import StratifiedGroupKFold

    scores: dict[float, list[float]] = {float(c): [] for c in c_grid}
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for tr, va in splitter.split(x, y, groups):
        fit = fit_probe(x[tr], y[tr], x[va], y[va], 2, c_grid, balanced_accuracy, max_iter)
        for c, s in fit.val_scores.items():
            scores[float(c)].append(s)
    means = {c: float(np.mean(v)) for c, v in scores.items() if v}
    return max(means, key=lambda c: (means[c], -c)), means


def run_external(train_source: str, test_source: str, shared: Path, extract: ExtractSection, probe: BaselinesSection,
                 out: Path, work: Path, *, input_size: int, max_frames: int, cv_folds: int = 5, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Train on ``train_source``, score ``test_source``; write ``out/<train>_to_<test>.{json,md}`` (the summary)
    and the per-patient and per-video predictions to ``work``; return the flat metrics."""
    if train_source == test_source:
        raise ValueError(f"--train and --test are both '{train_source}': the protocol needs two different sources")
    cfg = replace(extract, height=input_size, width=input_size, max_frames=max_frames)
    probe = replace(probe, input_size=input_size)
    data = {}
    for source in (train_source, test_source):
        manifest, frames = extract_source(source, shared / source, cfg, work, progress)
        videos, x = video_features(manifest, frames, probe, work / "features", progress)
        y = covid_labels(videos).to_numpy()
        data[source] = (videos, x, y)
        log.info("%s: %d videos, %d patients, %d COVID-19 videos, %d unknown", source, len(videos),
                 videos["patient_id"].nunique(), int((y == 1).sum()), int((y < 0).sum()))
    videos, x, y = data[train_source]
    known = y >= 0
    c, cv_scores = choose_c(x[known], y[known], videos.loc[known, "patient_id"].astype(str).to_numpy(),
                            probe.c_grid, cv_folds, seed, probe.max_iter)
    model = fit_probe(x[known], y[known], x[:0], y[:0], 2, [c], balanced_accuracy, probe.max_iter)

    tv, tx, ty = data[test_source]
    p_video = model.predict_proba(tx)[:, 1]
    per_video = pd.DataFrame({"video_id": tv["video_id"], "patient_id": tv["patient_id"].astype(str),
                              "covid": ty, "p_covid": p_video})
    # a patient's truth: their test result where the source has one (COVID-BLUES: PCR), else their videos' diagnosis
    covid_of = per_video[per_video["covid"] >= 0].groupby("patient_id")["covid"].max().to_dict()
    covid_of.update(patient_covid_labels(tv))
    per_patient = per_video.groupby("patient_id", sort=True)["p_covid"].mean().reset_index()
    per_patient["covid"] = per_patient["patient_id"].map(covid_of).fillna(-1).astype(int)
    per_patient = per_patient[per_patient["covid"] >= 0].reset_index(drop=True)
    if per_patient.empty:
        raise ValueError(f"{test_source}: no patient has a COVID-19 test result to score against")
    truth = per_patient["covid"].to_numpy()
    pred = (per_patient["p_covid"].to_numpy() >= 0.5).astype(int)
    per_patient["predicted"] = pred
    train_share = float(np.mean(y[known] == 1))
    test_share = float(np.mean(truth == 1))
    metrics = {
        "patient.accuracy": float(np.mean(pred == truth)),
        "patient.sensitivity": float(np.mean(pred[truth == 1] == 1)) if (truth == 1).any() else float("nan"),
        "patient.specificity": float(np.mean(pred[truth == 0] == 0)) if (truth == 0).any() else float("nan"),
        "patient.balanced_accuracy": balanced_accuracy(truth, pred),
        "patient.auc": auc(truth, per_patient["p_covid"].to_numpy()),
        "patient.predicted_positive_share": float(pred.mean()),
        "video.auc": auc(ty[ty >= 0], p_video[ty >= 0]),
        "chance.patient_accuracy_majority": max(test_share, 1 - test_share),
        "chance.patient_accuracy_random": train_share * test_share + (1 - train_share) * (1 - test_share),
        "n_test_patients": float(len(per_patient)), "n_test_positive": float((truth == 1).sum()),
        "n_test_videos": float(len(per_video)), "n_train_videos": float(known.sum()),
        "n_train_patients": float(videos.loc[known, "patient_id"].nunique()), "train_covid_share": train_share,
        "c": float(c), **{f"cv_balanced_accuracy.c_{k:g}": v for k, v in cv_scores.items()},
    }
    name = f"{train_source.replace('-', '_')}_to_{test_source.replace('-', '_')}"
    write_json(out / f"{name}.json", {"external": {name: metrics}})
    # per-patient and per-video predictions are derived from the data: they stay in the (uncommitted) work cache,
    # only the summary goes to ``out`` (COVID-BLUES is no-derivatives)
    write_csv(work / f"{name}_patients.csv", per_patient)
    write_csv(work / f"{name}_videos.csv", per_video)
    write_text(out / f"{name}.md", markdown(train_source, test_source, metrics, input_size, max_frames, probe))
    return metrics


def markdown(train: str, test: str, m: dict[str, float], input_size: int, max_frames: int,
             probe: BaselinesSection) -> str:
    def pct(v: float) -> str:
        return "–" if v != v else f"{100 * v:.1f}"

    rows = [("this model (zero-shot)", m["patient.accuracy"], m["patient.sensitivity"], m["patient.specificity"],
             m["patient.balanced_accuracy"], m["patient.auc"]),
            ("chance: always the larger class of the test patients", m["chance.patient_accuracy_majority"],
             float("nan"), float("nan"), 0.5, 0.5),
            (f"chance: random guess with {train}'s COVID-19 share", m["chance.patient_accuracy_random"],
             float("nan"), float("nan"), 0.5, 0.5)]
    lines = [f"# {train} -> {test}: patient COVID-19 detection, zero-shot", "",
             "| | accuracy | sensitivity | specificity | balanced accuracy | AUC |", "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | " + " | ".join(pct(v) for v in r[1:]) + " |" for r in rows]
    verdict = ("above" if m["patient.accuracy"] > m["chance.patient_accuracy_majority"] else "at or below")
    lines += ["", f"{int(m['n_test_patients'])} {test} patients ({int(m['n_test_positive'])} positive), "
              f"{int(m['n_test_videos'])} videos; trained on {int(m['n_train_videos'])} {train} videos of "
              f"{int(m['n_train_patients'])} patients. Frozen ImageNet {probe.backbone} features of up to "
              f"{max_frames} frames per video at {input_size} px, mean + std per video, logistic regression "
              f"(C = {m['c']:g}, chosen by patient-grouped cross-validation on {train} only); a patient is the mean "
              f"of their videos' P(COVID-19), positive at 0.5. Video-level AUC {pct(m['video.auc'])}.",
              "", f"The model's patient accuracy is **{verdict}** the larger-class chance level."]
    return "\n".join(lines) + "\n"
