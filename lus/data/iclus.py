"""ICLUS public frame predictions of Roy et al. 2020 (DATA.md §4): safe conversion and Table 2.

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
``source.json``; everything else reads only the safe copy.

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
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from lus.config.aggregator import AggregatorSection
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

TABLE2 = {  # Roy et al. 2020, Table 2: weighted F1 / precision / recall, mean ± std over 5 folds (%)
    "uninorm": {"f1_weighted": (61, 12), "precision_weighted": (70, 19), "recall_weighted": (60, 7)},
    "argmax_mean": {"f1_weighted": (51, 12), "precision_weighted": (56, 19), "recall_weighted": (53, 9)},
    "max_argmax": {"f1_weighted": (46, 21), "precision_weighted": (55, 27), "recall_weighted": (49, 18)},
}
POOLED_REFERENCE = {"argmax_mean": 53.2, "max_argmax": 46.9, "majority": 54.6}  # METHODS §2.9, weighted F1 %


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


# --------------------------------------------------------------------------------------------------
# folds and Table 2

def make_patient_folds(videos: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Deterministic patient-wise folds stratified by video score (METHODS §2.7, greedy variant).

    Patients are sorted, shuffled with ``seed``, then taken largest first (stable); each goes to the
    fold that currently holds the fewest videos of that patient's scores (ties: fewest videos, then
    lowest fold index). ``val`` is empty: the aggregator has no model selection.
    """
    _require(videos, ["patient_id", "video_score"], "videos")
    patients = sorted(videos["patient_id"].astype(str).unique())
    if len(patients) < n_folds:
        raise ValueError(f"cannot make {n_folds} patient-wise folds from {len(patients)} patients")
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    scores_of = {p: g["video_score"].astype(int).to_numpy() for p, g in videos.groupby("patient_id")}
    order = sorted(order, key=lambda p: -len(scores_of[p]))  # stable: the seeded order breaks ties
    n_classes = int(max(4, videos["video_score"].max() + 1))
    per_class = np.zeros((n_folds, n_classes), dtype=np.int64)
    test: list[list[str]] = [[] for _ in range(n_folds)]
    for p in order:
        s = scores_of[p]
        cost = [(int(sum(per_class[f, k] for k in s)), int(per_class[f].sum()), f) for f in range(n_folds)]
        f = min(cost)[2]
        np.add.at(per_class[f], s, 1)
        test[f].append(p)
    folds = []
    for f in range(n_folds):
        t = sorted(test[f])
        folds.append({"train": sorted(set(patients) - set(t)), "val": [], "test": t})
    return {"seed": seed, "group_key": "patient_id", "stratify_by": "video_score", "method": "greedy_stratified",
            "folds": folds}


def paper_config(tnorm: str = "product") -> AggregatorSection:
    """The paper's Table 2 settings (SORD, gap 0.5, lr 0.01, 30 epochs, constant lr, init 0, last)."""
    return replace(AggregatorSection(), tnorm=tnorm, off_diagonal="min", use_sord=True, zero_score_gap=0.5,
                   sord_multiplier=2.0, loss="ce", rebalance_scores=False, init_neutral=0.0, lr=0.01, lr_gamma=1.0,
                   lr_milestones=[15, 20, 25], epochs=30, earlystop="last")


def run_folds(frames: pd.DataFrame, videos: pd.DataFrame, folds: Mapping[str, Any],
              configs: Mapping[str, AggregatorSection], seed: int = 0
              ) -> tuple[list[pd.DataFrame], dict[str, list[dict[str, Any]]]]:
    """Train one aggregator per fold and config; return per-fold prediction tables and the fits.

    Each table has ``pred_uninorm_<config>`` and ``agg_<config>_<c>`` columns for every config and
    the baselines' ``pred_<baseline>`` columns once.
    """
    from lus.models.uninorm import VideoSet, run_fold

    scores = dict(zip(videos["video_id"].astype(str), videos["video_score"].astype(int)))
    allv = VideoSet.from_frames(frames, scores)
    patients = np.asarray(allv.patient_ids)
    tables: list[pd.DataFrame] = []
    fits: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for k, fold in enumerate(folds["folds"]):
        train_p = set(fold["train"]) | set(fold.get("val", []))
        test_p = set(fold["test"])
        if train_p & test_p:
            raise ValueError(f"fold {k}: patients in both train and test: {sorted(train_p & test_p)[:5]}")
        train = allv.subset(np.isin(patients, list(train_p)))
        test = allv.subset(np.isin(patients, list(test_p)))
        table = None
        for name, cfg in configs.items():
            fit, pred = run_fold(train, test, cfg, k, seed)
            fits[name].append({"fold": k, "n_train_videos": len(train), "n_test_videos": len(test), **fit.to_dict()})
            renamed = pred.rename(columns={"pred_uninorm": f"pred_uninorm_{name}",
                                           **{f"agg_{c}": f"agg_{name}_{c}" for c in range(4)}})
            if table is None:
                table = renamed
            else:
                table = table.join(renamed[[f"pred_uninorm_{name}"] + [f"agg_{name}_{c}" for c in range(4)]])
        assert table is not None
        tables.append(table)
    return tables, fits


def _pm(summary: Mapping[str, Any], method: str, metric: str) -> str:
    m = summary[method]
    return f"{100 * m[metric + '_mean']:.1f} ± {100 * m[metric + '_std']:.1f}"


def _pooled(summary: Mapping[str, Any], method: str, metric: str) -> str:
    return f"{100 * summary[method][metric + '_pooled']:.1f}"


def _paper(method: str, metric: str) -> str:
    ref = TABLE2.get(method, {}).get(metric)
    return f"{ref[0]} ± {ref[1]}" if ref else "–"


def render_table(summary: Mapping[str, Any], fits: Mapping[str, list[dict[str, Any]]], folds: Mapping[str, Any],
                 counts: Mapping[str, int], command: str) -> str:
    """Markdown report: Table 2 next to the paper, t-norms side by side, all baselines, neutral elements."""
    lines = [
        "# ICLUS video scores: uninorm aggregator vs baselines (Roy et al. 2020, Table 2)",
        "",
        f"Data: public ICLUS frame predictions, {counts['videos']} videos, {counts['patients']} patients, "
        f"{counts['frames']} frames. {summary['n_folds']} patient-wise folds stratified by video score "
        f"(greedy, seed {folds['seed']}); paper settings: SORD (m 2, zero-score gap 0.5), soft cross-entropy, "
        "full-batch Adam lr 0.01, 30 epochs, constant lr, e initialised to 0, last epoch, off-diagonal min. "
        "Values in %, mean ± population std over folds; pooled = all test videos together. The paper's folds "
        "are unknown, so fold-level numbers are comparable only in distribution (fold std ≈ 12 points).",
        "",
        f"Command: `{command}`",
        "",
        "## Table 2 (ours vs paper)",
        "",
        "| method | weighted F1 | precision | recall | paper F1 | paper precision | paper recall "
        "| pooled F1 | pooled precision | pooled recall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("uninorm (product)", "uninorm_product", "uninorm"), ("argmax_mean", "argmax_mean", "argmax_mean"),
            ("max_argmax", "max_argmax", "max_argmax"), ("majority", "majority", "majority")]
    metrics3 = ("f1_weighted", "precision_weighted", "recall_weighted")
    for label, key, paper_key in rows:
        lines.append(f"| {label} | " + " | ".join(_pm(summary, key, m) for m in metrics3) + " | "
                     + " | ".join(_paper(paper_key, m) for m in metrics3) + " | "
                     + " | ".join(_pooled(summary, key, m) for m in metrics3) + " |")
    tnorms = [k for k in ("product", "lukasiewicz", "min") if f"uninorm_{k}" in summary]
    lines += ["", "## t-norms side by side (same folds and settings; min: e per class by grid search of the "
              "training loss on the training folds, since gradients w.r.t. e vanish)", "",
              "| metric | " + " | ".join(tnorms) + " | " + " | ".join(f"{t} pooled" for t in tnorms) + " |",
              "|---|" + "---|" * (2 * len(tnorms))]
    names = {"f1_weighted": "weighted F1", "precision_weighted": "weighted precision",
             "recall_weighted": "weighted recall", "accuracy": "accuracy", "covid_accuracy": "COVID/no-COVID accuracy"}
    for metric, label in names.items():
        lines.append(f"| {label} | " + " | ".join(_pm(summary, f"uninorm_{t}", metric) for t in tnorms) + " | "
                     + " | ".join(_pooled(summary, f"uninorm_{t}", metric) for t in tnorms) + " |")
    if "lukasiewicz" in tnorms:
        lines += ["", "Lukasiewicz with e initialised to 0 (paper setting): S(a, b) = min(1, a + b) saturates every "
                  "class to 1 within a few frames, the gradient through the saturation is exactly 0, so e stays at 0 "
                  "and every video ties (argmax -> score 0). This is a property of the setting, not a numerical bug."]
    lines += ["", "## All methods (mean ± std over folds / pooled)", "",
              "| method | " + " | ".join(names.values()) + " |", "|---|" + "---|" * len(names)]
    for method in [k for k in summary if isinstance(summary[k], dict)]:
        lines.append(f"| {method} | " + " | ".join(f"{_pm(summary, method, m)} / {_pooled(summary, method, m)}"
                                                   for m in names) + " |")
    lines += ["", "Sanity reference (METHODS §2.9, pooled weighted F1 over 58 videos): "
              + ", ".join(f"{k} ≈ {v} (ours {_pooled(summary, k, 'f1_weighted')})" for k, v in POOLED_REFERENCE.items()
                          if k in summary), "",
              "## Neutral elements per fold (e_0..e_3)", "", "| t-norm | fold | e_0 | e_1 | e_2 | e_3 | fit |",
              "|---|---|---|---|---|---|---|"]
    for name, per in fits.items():
        for f in per:
            lines.append(f"| {name} | {f['fold']} | " + " | ".join(f"{v:.3f}" for v in f["neutral"])
                         + f" | {f['method']} |")
    return "\n".join(lines) + "\n"


def iclus_table(data_dir: str | Path, out_dir: str | Path, n_folds: int = 5, seed: int = 0,
                tnorms: Iterable[str] = ("product", "lukasiewicz", "min"), command: str = "") -> dict[str, Any]:
    """Run the aggregator (paper settings, each t-norm) and the baselines on the converted ICLUS data.

    Writes ``table.md``, ``metrics.json`` (flat numbers), ``folds.json``, ``predictions.csv`` and
    ``fits.json`` to ``out_dir``; returns the metrics summary.
    """
    from lus.metrics.video import summarize_folds

    frames, videos = load_iclus(data_dir)
    folds = make_patient_folds(videos, n_folds, seed)
    configs = {t: paper_config(t) for t in tnorms}
    tables, fits = run_folds(frames, videos, folds, configs, seed)
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
