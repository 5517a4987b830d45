"""Build the export folder (``models/export/``) from a finished pipeline run (stage ``export``).

What goes in and why:

* the frame model of every fold (``frame/fold_<k>.pt``): ``lus predict`` averages their softmax by
  default, so no single fold's patient selection decides a prediction, and ``--fold K`` reproduces
  exactly the out-of-fold predictions of the pipeline for fold K's test patients;
* the uninorm neutral elements of every fold and their per-class **mean** (``aggregator.json``),
  used with the fold ensemble (a fold's own elements with ``--fold K``);
* the segmentation models of every architecture and trained fold, when the data source had masks;
* the CNN-LSTM (Barros et al.) of every fold (``cnn_lstm/fold_<k>.pt``, the head with its feature
  standardisation buffers) and how to rebuild its frozen backbone: fold k's own frame model (already
  in the package), the ImageNet weights of the offline file (checked by digest), or, for random-init
  or user weights, the backbone weights themselves (``cnn_lstm/backbone_*.pt``); plus the frames it
  reads per video (``seq_len``, sampling rule) and its classes;
* ``manifest.json``: everything predict needs to preprocess and rebuild the models (extraction
  settings, model specs) and what a reader needs to judge them (data source, params, seed,
  versions, out-of-fold metrics of ``metrics/*.json``, SHA-256 of every file).

Checkpoints are read with ``torch.load(weights_only=True)`` and loaded into a freshly built model
before they are written, so a package that exports is a package that loads. The folder is built under
a temporary name and swapped in (``lus.io.atomic_dir``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import torch

from lus.export.bundle import (
    AGGREGATOR, CLASSES, FORMAT, MANIFEST, build_cnn_lstm_head, build_frame_net, build_segmentation_net,
    cnn_lstm_file, frame_file, load_state, segmentation_file,
)
from lus.io import atomic_dir, read_json, write_json, write_torch
from lus.models.backbones import build_backbone, file_digest, frame_spec_from_meta

# FrameModelSpec fields that are runtime choices, not part of what the weights fit
RUNTIME_SPEC_FIELDS = ("pretrained", "channels_last")
SEG_BUILD_KEYS = ("encoder", "encoder_depth", "decoder_channels", "aspp_rates", "aspp_dropout")
CLASS_NAMES = {
    "0": "continuous pleural line with horizontal A-lines",
    "1": "indented pleural line with vertical B-lines",
    "2": "broken pleural line, consolidations, B-lines",
    "3": "dense white lung, with or without large consolidations",
}
METRIC_GROUPS = ("frame", "video", "segmentation", "cnn_lstm")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"export: input {path} is missing (made by stage '{stage}': dvc repro {stage})")
    return path


def _construction_spec(meta: dict[str, Any]) -> dict[str, Any]:
    """Every setting that shapes the network's weights, derived from meta.json exactly as train_frame does."""
    spec = dataclasses.asdict(frame_spec_from_meta(meta))
    return {key: value for key, value in spec.items() if key not in RUNTIME_SPEC_FIELDS}


def export_frame_models(frame_dir: Path, folds: Sequence[int], out: Path) -> dict[str, Any]:
    """Copy (validated) the frame model of every fold; one spec shared by all folds."""
    metas = {k: read_json(_require(frame_dir / f"fold_{k}" / "meta.json", f"train_frame")) for k in folds}
    if not any(m.get("applicable", 1) for m in metas.values()):
        first = metas[folds[0]]
        return {"applicable": 0, "reason": first.get("reason", "frame models not applicable")}
    specs = {k: _construction_spec(m) for k, m in metas.items()}
    spec = specs[folds[0]]
    for k, s in specs.items():
        if s != spec:
            raise ValueError(f"{frame_dir}/fold_{k}/meta.json: frame model settings {s} differ from fold "
                             f"{folds[0]}'s {spec}; retrain all folds (dvc repro train_frame)")
    for k in folds:
        state = load_state(_require(frame_dir / f"fold_{k}" / "model.pt", f"train_frame"))
        build_frame_net(spec).load_state_dict(state)  # raises if the file does not fit the spec
        write_torch(out / frame_file(k), state)  # byte-identical for equal weights
    first = metas[folds[0]]
    return {
        "applicable": 1, "spec": spec, "folds": list(folds), "classes": CLASSES, "class_names": CLASS_NAMES,
        "input": "grey shard frame resized to input_size x input_size (bilinear, antialiased), values /255",
        "output": "softmax of crop-1 logits (p0..p3); theta1/theta2: affine crop maps (grid_sample convention)",
        "ensemble": "mean of the folds' softmax (and crop maps); --fold K uses fold K's model only",
        "selected_epochs": {str(k): m.get("selected_epoch") for k, m in metas.items()},
        "label_source": first.get("label_source"),
        "params": first["params"],
        "trained_with": first.get("provenance", {}),
    }


def export_aggregator(agg_dir: Path, folds: Sequence[int], out: Path) -> dict[str, Any]:
    """Neutral elements per fold and their per-class mean (the ensemble's), written to aggregator.json."""
    docs = {k: read_json(_require(agg_dir / f"fold_{k}.json", f"train_aggregator")) for k in folds}
    if not all(d.get("applicable", 1) for d in docs.values()):
        doc = {"applicable": 0, "reason": next(d.get("reason", "") for d in docs.values() if not d.get("applicable", 1))}
        write_json(out / AGGREGATOR, doc)
        return doc
    rules = {(d["tnorm"], d["off_diagonal"]) for d in docs.values()}
    if len(rules) != 1:
        raise ValueError(f"{agg_dir}: folds disagree on tnorm/off_diagonal {sorted(rules)}; rerun train_aggregator")
    tnorm, off_diagonal = rules.pop()
    per_fold = {str(k): [float(v) for v in d["neutral"]] for k, d in docs.items()}
    doc = {
        "applicable": 1, "tnorm": tnorm, "off_diagonal": off_diagonal,
        "neutral": np.mean(list(per_fold.values()), axis=0).tolist(),
        "neutral_per_fold": per_fold,
        "combine": "per-class mean of the folds' neutral elements (used with the fold ensemble)",
        "params": docs[folds[0]].get("params", {}).get("aggregator", {}),
    }
    write_json(out / AGGREGATOR, doc)
    return doc


def export_segmentation(seg_dir: Path, archs: Sequence[str], boost: Sequence[float], out: Path) -> dict[str, Any]:
    """Every architecture's fold models (when trained on masks) plus how to rebuild and ensemble them."""
    metas = {a: read_json(_require(seg_dir / a / "meta.json", "train_segmentation")) for a in archs}
    used = [a for a in archs if metas[a].get("applicable", 0)]
    if not used:
        reason = next((m.get("reason") for m in metas.values() if m.get("reason")), "no segmentation models")
        return {"applicable": 0, "reason": reason}
    build = {key: metas[used[0]]["params"][key] for key in SEG_BUILD_KEYS}
    folds: dict[str, list[int]] = {}
    for arch in used:
        b = {key: metas[arch]["params"][key] for key in SEG_BUILD_KEYS}
        if b != build:
            raise ValueError(f"{seg_dir / arch / 'meta.json'}: encoder settings {b} differ from {used[0]}'s {build}")
        folds[arch] = [int(k) for k in metas[arch]["folds"]]
        for k in folds[arch]:
            state = load_state(_require(seg_dir / arch / f"fold_{k}" / "model.pt", "train_segmentation"))
            build_segmentation_net(arch, build).load_state_dict(state)
            write_torch(out / segmentation_file(arch, k), state)
    return {
        "applicable": 1, "archs": used, "folds": folds, "build": build, "boost": [float(b) for b in boost],
        "classes": ["background", "score 0 region", "score 1 region", "score 2 region", "score 3 region"],
        "input": "grey shard frame at the extraction size, 2x/255 - 1",
        "ensemble": "mean softmax of every arch and fold, times boost, argmax; plain argmax 4 stays 4",
        "params": metas[used[0]]["params"],
    }


# cnn_lstm params that are runtime choices (may differ between folds without changing the model)
CNN_LSTM_RUNTIME_KEYS = ("device", "num_threads", "checkpoint_every", "feature_batch")
SAMPLING_RULE = ("the frames extraction keeps (extract.stride / target_fps, then max_frames spread evenly), then "
                 "seq_len of them at indices round(linspace(0, T - 1, seq_len)) (numpy rounding; a shorter video "
                 "repeats frames)")


def _cnn_lstm_backbone(meta: dict[str, Any], k: int, meta_path: Path, frame_dir: Path, frame: dict[str, Any],
                       out: Path) -> dict[str, Any]:
    """How to rebuild fold k's frozen backbone, checked against what train_cnn_lstm recorded in meta.json."""
    params, info = meta["params"], meta["backbone"]
    name = params["backbone"]
    if name == "frame_model":
        if not frame.get("applicable") or k not in frame.get("folds", []):
            raise ValueError(f"{meta_path}: the CNN-LSTM reads fold {k}'s frame model, which is not exported")
        digest = f"file:{file_digest(frame_dir / f'fold_{k}' / 'model.pt')}"
        if info.get("weights") != digest:
            raise ValueError(f"{meta_path}: the CNN-LSTM was trained on frame model weights {info.get('weights')}, "
                             f"but {frame_dir / f'fold_{k}' / 'model.pt'} is {digest}; rerun train_cnn_lstm")
        return {"file": frame_file(k), "key_info": info}
    # Built as train_cnn_lstm builds it: right after seeding torch with the fold's seed (random init).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(meta["seed"]))
        backbone = build_backbone(name, params["weights"], int(params["input_size"]))
    if backbone.key_info != info:
        raise ValueError(f"{meta_path}: the CNN-LSTM was trained on backbone {info}, but rebuilding it here gives "
                         f"{backbone.key_info}; rerun train_cnn_lstm")
    if params["weights"] == "imagenet":
        return {"file": None, "key_info": info}  # predict loads the same offline file and checks its digest
    rel = (f"cnn_lstm/backbone_fold_{k}.pt" if params["weights"] == "none"
           else f"cnn_lstm/backbone_{info['weights'].replace(':', '_')}.pt")  # a user file: once for all folds
    write_torch(out / rel, backbone.net.state_dict())
    return {"file": rel, "key_info": info}


def export_cnn_lstm(cnn_dir: Path | None, folds: Sequence[int], frame_dir: Path, frame: dict[str, Any],
                    out: Path) -> dict[str, Any]:
    """Every fold's CNN-LSTM head (validated) and what rebuilds its backbone and input (manifest entry)."""
    if cnn_dir is None:
        return {"applicable": 0, "reason": "no CNN-LSTM given to the export"}
    paths = {k: _require(cnn_dir / f"fold_{k}" / "meta.json", f"train_cnn_lstm") for k in folds}
    metas = {k: read_json(p) for k, p in paths.items()}
    first = metas[folds[0]]

    def model_params(m: dict[str, Any]) -> dict[str, Any]:
        return {key: v for key, v in m["params"].items() if key not in CNN_LSTM_RUNTIME_KEYS}

    for k, m in metas.items():
        for key, value in (("target", first["target"]), ("classes", first["classes"]),
                           ("feature_dim", first["feature_dim"]), ("params", model_params(first))):
            mine = model_params(m) if key == "params" else m.get(key)
            if mine != value:
                raise ValueError(f"{paths[k]}: CNN-LSTM {key} {mine} differ from fold {folds[0]}'s {value}; "
                                 "retrain all folds (dvc repro train_cnn_lstm)")
    params = first["params"]
    head = {"hidden": params["hidden"], "input_dropout": params["input_dropout"], "fc": params["fc"]}
    per_fold = {}
    for k in folds:
        state = load_state(_require(cnn_dir / f"fold_{k}" / "model.pt", f"train_cnn_lstm"))
        build_cnn_lstm_head(head, first["feature_dim"], len(first["classes"])).load_state_dict(state)
        write_torch(out / cnn_lstm_file(k), state)
        per_fold[str(k)] = _cnn_lstm_backbone(metas[k], k, paths[k], frame_dir, frame, out)
    return {
        "applicable": 1, "folds": list(folds), "target": first["target"], "classes": first["classes"],
        "seq_len": int(params["seq_len"]), "sampling": SAMPLING_RULE,
        "feature_batch": int(params["feature_batch"]),
        "backbone": {"name": params["backbone"], "weights": params["weights"] if params["backbone"] != "frame_model"
                     else "the fold's frame model (frame/fold_<k>.pt)", "input_size": int(params["input_size"]),
                     "feature_dim": int(first["feature_dim"]), "per_fold": per_fold},
        "head": head,
        "standardisation": ("per-dimension feature mean/std of the fold's training videos: buffers feature_mean / "
                            "feature_std of each cnn_lstm/fold_<k>.pt" if params["standardize"]
                            else "none (identity buffers)"),
        "output": "softmax over classes of the last LSTM state's dense layers",
        "ensemble": "mean of the folds' softmax (each fold with its own backbone); --fold K uses fold K's only",
        "selected_epochs": {str(k): m.get("selected_epoch") for k, m in metas.items()},
        "n_videos": {str(k): m.get("n_videos") for k, m in metas.items()},
        "params": params,
    }


def describe_data(raw_dir: Path) -> dict[str, Any]:
    from lus.data.manifest import read_manifest

    source = read_json(_require(raw_dir / "source.json", "prepare"))
    manifest = read_manifest(_require(raw_dir / "manifest.csv", "prepare"))
    info: dict[str, Any] = {"source": source.get("source"), "root": source.get("root"),
                            "n_videos": int(len(manifest)), "n_patients": int(manifest["patient_id"].nunique())}
    if "hospital" in manifest.columns:
        info["n_hospitals"] = int(manifest["hospital"].nunique())
    if "video_score" in manifest.columns:
        scores = manifest["video_score"].dropna().astype(int)
        info["video_score_counts"] = {str(s): int(n) for s, n in sorted(scores.value_counts().items())}
    return info


def read_metrics(metrics_dir: Path) -> dict[str, Any]:
    """The evaluate stage's metric groups that exist (nested as in metrics/<group>.json)."""
    out: dict[str, Any] = {}
    for group in METRIC_GROUPS:
        path = metrics_dir / f"{group}.json"
        if path.is_file():
            out[group] = read_json(path).get(group, {})
    return out


def export_models(*, frame_dir: str | Path, aggregator_dir: str | Path, segmentation_dir: str | Path,
                  raw_dir: str | Path, frames_report: str | Path, metrics_dir: str | Path, out_dir: str | Path,
                  seed: int, folds: Sequence[int], seg_archs: Sequence[str], seg_boost: Sequence[float],
                  card_path: str | Path | None = None, cnn_lstm_dir: str | Path | None = None) -> dict[str, Any]:
    """Write the export folder (and MODEL_CARD.md when ``card_path`` is given); return the manifest.

    ``cnn_lstm_dir`` (``models/cnn_lstm``): None leaves the CNN-LSTM out (the manifest says so).
    """
    from lus.export.model_card import render_model_card
    from lus.io import write_text
    from lus.runtime import provenance

    report = read_json(_require(Path(frames_report), "extract_frames"))
    folds = [int(k) for k in folds]
    with atomic_dir(out_dir) as tmp:
        frame = export_frame_models(Path(frame_dir), folds, tmp)
        if frame["applicable"]:
            aggregator = export_aggregator(Path(aggregator_dir), folds, tmp)
        else:
            aggregator = {"applicable": 0, "reason": "no frame severity models"}
            write_json(tmp / AGGREGATOR, aggregator)
        aggregator = {**aggregator, "file": AGGREGATOR}
        aggregator_params = aggregator.pop("params", None)
        segmentation = export_segmentation(Path(segmentation_dir), seg_archs, seg_boost, tmp)
        cnn_lstm = export_cnn_lstm(None if cnn_lstm_dir is None else Path(cnn_lstm_dir), folds, Path(frame_dir),
                                   frame, tmp)
        versions = {k: v for k, v in provenance(seed).items() if k not in ("seed", "cpu_threads")}
        manifest = {
            "format": FORMAT,
            "made_by": "stage export (stages/export.py); load with lus.export.bundle.load_bundle or `lus predict`",
            "intended_use": "research only; not a medical device",
            "seed": seed,
            "data": describe_data(Path(raw_dir)),
            "extract": report["params"],
            "frame_model": frame,
            "aggregator": aggregator,
            "segmentation": segmentation,
            "cnn_lstm": cnn_lstm,
            "params": {"base": {"seed": seed}, "extract": report["params"], "frame_model": frame.get("params"),
                       "aggregator": aggregator_params,
                       "segmentation": segmentation.get("params"), "cnn_lstm": cnn_lstm.get("params")},
            "metrics_source": "out-of-fold evaluation of this run (metrics/*.json of the evaluate stage)",
            "metrics": read_metrics(Path(metrics_dir)),
            "versions": versions,
        }
        manifest["files"] = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / MANIFEST, manifest)
    if card_path is not None:
        write_text(card_path, render_model_card(manifest, Path(out_dir)))
    return manifest
