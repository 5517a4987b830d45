"""Predict one or more videos with an exported bundle; one output folder per video.

For ``OUT/<video name>/`` (built under a temporary name and swapped in only when the whole video
succeeded, so a failure never leaves half-written outputs):

* ``frames.csv``: ``frame_index, time_s, score, p0..p3, theta1_0..5, theta2_0..5`` per decoded frame
  (probabilities and crop maps as in ``data/predictions/frames.parquet``; with the fold ensemble, their
  means over the folds, which are also the boxes drawn); only when the bundle has frame models;
* ``video.json``: the uninorm video score, the aggregated value per class, the neutral elements used,
  frame-score counts (frame models), the CNN-LSTM ``diagnosis`` (class probabilities, predicted class,
  frames read; when the bundle has it), the crop and which models ran;
* ``annotated.mp4`` (or ``.avi``): every frame with its predicted score and the crop-1/crop-2 boxes, and
  the video's diagnosis;
* ``segmentation.mp4`` (or ``.avi``): region overlays, when the bundle has segmentation models;
* ``snapshot.png``: one annotated frame, on request.

Memory does not grow with the video: frames flow through in chunks of ``chunk_size``; only the
frame probabilities (4 floats per frame, needed by the aggregator's balanced tree over the whole
video) are kept until the end.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from lus.data.video import check_video_path
from lus.export.bundle import Bundle
from lus.io import atomic_dir, write_json
from lus.labels import PROB_COLUMNS
from lus.predict.annotate import DiagnosisView, annotate_frame, overlay_segmentation
from lus.predict.diagnosis import diagnose
from lus.predict.stream import Chunk, VideoStream
from lus.predict.writers import FrameCsv, VideoSink

THETA_COLUMNS = [f"theta{k}_{i}" for k in (1, 2) for i in range(6)]
CSV_COLUMNS = ["frame_index", "time_s", "score", *PROB_COLUMNS, *THETA_COLUMNS]
MIDDLE = -1  # snapshot frame: the middle of the video by the container's frame count


@dataclass(frozen=True)
class PredictOptions:
    video: bool = True                 # write annotated.<ext>
    segmentation: bool = True          # write segmentation.<ext> when the bundle has segmentation models
    video_format: str = "mp4"          # mp4 (mp4v) | avi (MJPG)
    snapshot: int | None = None        # frame number to save as snapshot.png; MIDDLE = middle frame; None = none
    chunk_size: int = 32               # frames decoded and scored together
    progress: bool = True


def output_folders(videos: Sequence[str | Path], out_root: str | Path) -> dict[Path, Path]:
    """``video -> OUT/<stem>``; checks every input first (exists, supported container) and refuses two
    inputs that would share an output folder."""
    out_root = Path(out_root)
    folders: dict[Path, Path] = {}
    taken: dict[Path, Path] = {}
    for v in videos:
        path = check_video_path(v)
        target = out_root / path.stem
        if target in taken:
            raise ValueError(f"{taken[target]} and {path} would both write to {target}; rename one or predict "
                             "them in separate runs")
        taken[target] = path
        folders[path] = target
    if not folders:
        raise ValueError("no video given")
    return folders


def _apply_umask(folder: Path) -> None:
    """mkdtemp/mkstemp make private entries (0700/0600); predictions are for the user, so apply the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for p in folder.iterdir():
        os.chmod(p, 0o666 & ~umask)


def _snapshot_target(option: int | None, n_hint: int) -> int | None:
    if option is None:
        return None
    return max(n_hint // 2, 0) if option == MIDDLE else option


class _Outputs:
    """The streaming writers of one video inside its temporary output folder."""

    def __init__(self, folder: Path, bundle: Bundle, opts: PredictOptions, fps: float) -> None:
        self.csv = FrameCsv(folder / "frames.csv", CSV_COLUMNS) if bundle.frame is not None else None
        self.annotated = VideoSink(folder / "annotated", opts.video_format, fps) if opts.video else None
        self.seg = (VideoSink(folder / "segmentation", opts.video_format, fps)
                    if opts.segmentation and bundle.segmentation is not None else None)

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
        for sink in (self.annotated, self.seg):
            if sink is not None:
                sink.close()


def _process_chunk(chunk: Chunk, bundle: Bundle, out: _Outputs, fps: float, snap_at: int | None,
                   snapshot: dict[str, Any], diagnosis: DiagnosisView | None) -> np.ndarray | None:
    """Score one chunk, write its rows and frames; returns its probabilities (n, 4) (None without frame models)."""
    probs = None
    if bundle.frame is not None:
        pred = bundle.frame(chunk.small)
        probs = pred["probs"]
        times = chunk.index / fps if math.isfinite(fps) and fps > 0 else np.full(len(chunk), np.nan)
        columns = {"frame_index": chunk.index, "time_s": np.round(times, 4), "score": probs.argmax(1)}
        columns |= {c: probs[:, i] for i, c in enumerate(PROB_COLUMNS)}
        for k in (1, 2):
            columns |= {f"theta{k}_{i}": pred[f"theta{k}"][:, i] for i in range(6)}
        out.csv.write_rows(columns)
    need_annotated = out.annotated is not None or snap_at is not None
    if need_annotated:
        for j, frame_no in enumerate(chunk.index):
            severity = {} if probs is None else {"theta1": pred["theta1"][j], "theta2": pred["theta2"][j],
                                                 "probs": probs[j]}
            img = annotate_frame(chunk.originals[j], chunk.crop.box, int(frame_no), diagnosis=diagnosis, **severity)
            if out.annotated is not None:
                out.annotated.write(img)
            if snap_at is not None and (frame_no <= snap_at or "image" not in snapshot):
                snapshot["image"] = img  # the requested frame, or the last one if the video is shorter
    if out.seg is not None:
        labels = bundle.segmentation(chunk.small)
        if chunk.crop.weight is not None:  # the model never saw these pixels (blanked like the shards)
            labels[:, chunk.crop.weight < 128] = 0
        for j, frame_no in enumerate(chunk.index):
            out.seg.write(overlay_segmentation(chunk.originals[j], chunk.crop.box, labels[j], int(frame_no)))
    return probs


def aggregate_video(probs: np.ndarray, bundle: Bundle, name: str) -> dict[str, Any]:
    """Uninorm video score and per-class aggregated values of one video's frame probabilities (T, 4)."""
    from lus.data.video_set import VideoSet
    from lus.models.uninorm import predict

    videos = VideoSet([name], [""], np.array([-1]), np.array([len(probs)]), probs.astype(np.float64))
    o, score = predict(videos, bundle.neutral, bundle.tnorm, bundle.off_diagonal)
    return {"video_score": int(score[0]), "aggregated": {str(c): float(o[0, c]) for c in range(o.shape[1])},
            "method": "uninorm", "tnorm": bundle.tnorm, "off_diagonal": bundle.off_diagonal,
            "neutral": bundle.neutral}


def predict_video(path: str | Path, bundle: Bundle, out_dir: str | Path, opts: PredictOptions = PredictOptions()
                  ) -> dict[str, Any]:
    """Write every output of one video to ``out_dir`` (replaced atomically); return its ``video.json`` content."""
    path = check_video_path(path)
    out_dir = Path(out_dir)
    diagnosis = diagnose(path, bundle.cnn_lstm, bundle.extract) if bundle.cnn_lstm is not None else None
    view = (DiagnosisView(diagnosis["classes"], np.array(list(diagnosis["probabilities"].values())),
                          frozenset(diagnosis["frames_read"])) if diagnosis is not None else None)
    with atomic_dir(out_dir) as tmp, VideoStream(path, bundle.extract, opts.chunk_size) as stream:
        fps = stream.fps
        snap_at = _snapshot_target(opts.snapshot, stream.n_frames_hint)
        snapshot: dict[str, Any] = {}
        parts: list[np.ndarray | None] = []
        n_frames = 0
        crop = None
        out = _Outputs(tmp, bundle, opts, fps)
        bar = tqdm(total=stream.n_frames_hint or None, desc=path.name, unit="frame", disable=not opts.progress,
                   dynamic_ncols=True, leave=False)
        try:
            for chunk in stream.chunks():
                parts.append(_process_chunk(chunk, bundle, out, fps, snap_at, snapshot, view))
                n_frames += len(chunk)
                crop = chunk.crop
                bar.update(len(chunk))
        finally:
            bar.close()
            out.close()
        severity: dict[str, Any] = {}
        if bundle.frame is not None:
            probs = np.concatenate(parts)
            counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
            severity = {**aggregate_video(probs, bundle, path.stem),
                        "frame_scores": {"counts": {str(c): int(n) for c, n in enumerate(counts)},
                                         "mean_probabilities": {str(c): float(v) for c, v in enumerate(probs.mean(0))}}}
        summary = {
            "video": str(path), "n_frames": n_frames,
            "fps": round(fps, 6) if math.isfinite(fps) else None,
            "frame_size": list(stream.reader.frame_shape or ())[::-1],
            **severity,
            **({"diagnosis": diagnosis} if diagnosis is not None else {}),
            "crop": {"x0": crop.box.x0, "y0": crop.box.y0, "x1": crop.box.x1, "y1": crop.box.y1,
                     "method": crop.method},
            "models": {"frame": bundle.description if bundle.frame is not None else None,
                       "folds": bundle.frame.folds if bundle.frame is not None else [],
                       "cnn_lstm": diagnosis["model"] if diagnosis is not None else None,
                       "segmentation": bundle.segmentation.names if out.seg is not None else [],
                       "export": str(bundle.root), "trained_on": bundle.manifest.get("data", {}).get("source")},
            "outputs": sorted(p.name for p in tmp.iterdir()) + ["video.json"]
                       + (["snapshot.png"] if "image" in snapshot else []),
        }
        if "image" in snapshot:
            import cv2

            from lus.report.localization import write_png

            write_png(tmp / "snapshot.png", cv2.cvtColor(snapshot["image"], cv2.COLOR_BGR2RGB))
        write_json(tmp / "video.json", summary)
        _apply_umask(tmp)
    return summary


def predict_videos(videos: Sequence[str | Path], bundle: Bundle, out_root: str | Path,
                   opts: PredictOptions = PredictOptions()) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Predict every video; a video that fails is reported and skipped (its folder is not written).

    Returns the summaries and the ``(video, error)`` pairs of the failures.
    """
    from lus.data.video import VideoError

    done, failed = [], []
    for path, folder in output_folders(videos, out_root).items():
        try:
            done.append(predict_video(path, bundle, folder, opts))
        except (VideoError, ValueError, OSError) as exc:
            failed.append((path, str(exc)))
    return done, failed
