"""Frame extraction: each manifest video -> one grey, sector-cropped, resized shard ``<video_id>.npz``.

Per video, in one decoding pass (never twice):

1. the first ``crop_buffer`` frames are kept as full-resolution grey images and the sector is
   detected on them (:func:`lus.data.sector.find_sector`);
2. those buffered frames and every later *selected* frame are cropped to the sector's bounding
   box, converted to grey, resized (:func:`resize_area`) and, with ``crop: auto``, faded to black
   outside the sector's hull (text in the corners of a fan's box); frames the selection drops are
   only grabbed by the decoder, never converted, which makes ``stride``/``target_fps`` cheaper;
3. frame labels, annotator labels and masks (if the manifest row has them) go through exactly the
   same selection, and masks through the same crop (nearest-neighbour resize, so class ids are
   never blended); their length must equal the decoded frame count.

Memory per worker is bounded by one video: the crop buffer, the small output frames and the
video's annotation arrays. Videos run in a process pool (``extract.workers``, spawned workers,
longest files first); each worker decodes with one FFmpeg thread, since the parallelism comes from
the processes, and writes its video's shard itself (atomically) into the folder the stage swaps in
place at the end; the parent fsyncs each shard as its result arrives. A failed write is a
:class:`lus.io.WriteError`, never mistaken for a bad video.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from lus.config.extract import ExtractSection
from lus.data.sector import CropBox, Sector, find_sector
from lus.data.shards import INDEX_COLUMNS, LABEL_RANGE, MASK_CLASSES, write_shard
from lus.data.video import VideoError, VideoReader
from lus.io import WriteError, fsync_file

if TYPE_CHECKING:
    import pandas as pd

# pandas (and lus.data.manifest, which imports it) are imported inside the parent-only functions:
# spawned pool workers import this module, and pandas alone would add ~1 s to their start-up.

# Errors that concern one video (its file, its annotations): recorded under on_error=skip.
VIDEO_ERRORS = (ValueError, OSError)


@dataclass(frozen=True)
class VideoJob:
    """One video to extract. ``where`` names its manifest row in error messages."""

    video_id: str
    video: Path
    labels: Path | None = None
    masks: Path | None = None
    fps_hint: float = float("nan")  # manifest fps, used only when the container has none
    where: str = ""


@dataclass
class ExtractResult:
    """``index``: one row per extracted video (``INDEX_COLUMNS``); ``report``: JSON-ready summary;
    ``seconds``: wall time. The time is kept out of ``report`` because the report is written into the
    DVC-tracked frames folder, whose hash must depend only on the frames (a timing there gave every
    extraction a new hash and made the downstream stages rerun for identical frames)."""

    index: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- frame selection

def frame_selector(cfg: ExtractSection, fps: float, name: str = "video") -> Callable[[int], bool]:
    """``keep(i)`` for source frame ``i``: every ``stride``-th frame, or about ``target_fps`` per second.

    By time: frame ``i`` sits at ``i / fps`` seconds; a frame is kept when it is the first one in a
    new ``1 / target_fps`` period, so the kept frames are as evenly spaced in time as the source
    allows and the first frame is always kept. A target at or above the source rate keeps all.
    """
    if cfg.target_fps > 0:
        if not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"{name}: frame rate unknown (container and manifest), cannot subsample "
                             "by time; set extract.target_fps: 0 and use extract.stride")
        ratio = cfg.target_fps / fps
        if ratio >= 1.0:
            return lambda i: True
        return lambda i: i == 0 or math.floor(i * ratio + 1e-9) > math.floor((i - 1) * ratio + 1e-9)
    stride = cfg.stride
    return lambda i: i % stride == 0


def spread(n: int, k: int) -> np.ndarray:
    """Positions of ``k`` of ``n`` items spread evenly (``round(linspace)``, first and last included)."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


# --------------------------------------------------------------------------- image ops

def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased downscale to (height, width): area (box) means in stages, for speed.

    One INTER_AREA call with a fractional factor takes OpenCV's generic path, which costs about
    40% of the decode time of the frame at 350 px and 60% at 850 px (to 64 px). So:

    * image under twice the target (e.g. a 350 px crop to a 224 px preset, or any upscale): one
      INTER_AREA call, exactly as specified;
    * otherwise it is halved with INTER_AREA (exact 2x2 box means on OpenCV's fast integer path,
      odd last row/column dropped) while it is at least twice the target, and the remaining
      factor (< 2) is a bilinear step: after box pre-filtering, bilinear at a factor below 2
      does not alias, and it is as close to one INTER_AREA call as an INTER_AREA last step
      (measured on real crops to 64x64: 1.1-1.8 grey levels mean absolute difference, frame std
      ~27) at 4-5x less cost than INTER_AREA (about 6% of decode time). This is what keeps
      extraction above 80% of the raw decode rate.
    """
    h, w = image.shape[:2]
    if h < 2 * height or w < 2 * width:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    while h >= 2 * height and w >= 2 * width:
        image = cv2.resize(image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_nearest(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize: class ids stay class ids."""
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def hull_weight(sector: Sector, box: CropBox, width: int, height: int) -> np.ndarray | None:
    """uint8 (height, width) weight of the output grid: 255 inside the sector hull, 0 outside, or
    None when the hull covers the whole box (nothing to blank).

    Used with ``crop: auto`` to fade burned-in text in the corners of a fan's bounding box to
    black. Drawn directly at output resolution (anti-aliased, sub-pixel vertices, so the edge is a
    soft ramp of about one output pixel), which costs microseconds.
    """
    if sector.hull is None:
        return None
    sx, sy = width / box.width, height / box.height
    # Hull vertices are pixel corners; fillConvexPoly takes pixel centres: shift by half a pixel.
    pts = np.stack([(sector.hull[:, 0] - box.x0) * sx - 0.5, (sector.hull[:, 1] - box.y0) * sy - 0.5], axis=1)
    weight = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(weight, np.round(pts * 16).astype(np.int32), 255, lineType=cv2.LINE_AA, shift=4)
    return None if (weight == 255).all() else weight


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def frame_converter(box: CropBox, frame_shape: tuple[int, int], width: int, height: int,
                    weight: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``convert(frame) -> uint8 (height, width)``: crop ``box`` of a BGR or grey frame, grey, resize,
    then scale by ``weight`` (uint8 (height, width), 255 = keep; see :func:`hull_weight`) if given.

    A box covering most of the frame is converted to grey whole (contiguous rows convert faster
    than a strided view); a small box is cropped first. Decided once per video.
    """
    whole = 2 * box.area >= frame_shape[0] * frame_shape[1]
    scale = 1.0 / 255.0
    scratch = np.empty(frame_shape if whole else (box.height, box.width), np.uint8)  # grey, reused

    def convert(frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            grey = box.apply(frame)
        elif whole:
            grey = box.apply(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=scratch))
        else:
            grey = cv2.cvtColor(box.apply(frame), cv2.COLOR_BGR2GRAY, dst=scratch)
        small = resize_area(grey, width, height)
        if weight is not None:
            small = cv2.multiply(small, weight, scale=scale)  # round(v * w / 255), one C call
        return small

    return convert


# --------------------------------------------------------------------------- annotations

@dataclass
class Annotations:
    labels: np.ndarray | None = None  # int (T,)
    annotators: np.ndarray | None = None  # int (A, T)
    masks: np.ndarray | None = None  # uint8 (T, H, W)


def _load_npz(path: Path, keys: Sequence[str], required: str) -> dict[str, np.ndarray]:
    """Arrays ``keys`` (those present; ``required`` must be) of an .npz file, errors naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz annotation file ({exc})") from exc
    if not hasattr(data, "files"):  # a plain .npy array
        raise ValueError(f"{path}: expected an .npz archive with an array named '{required}'")
    with data:
        if required not in data.files:
            found = ", ".join(data.files) or "none"
            raise ValueError(f"{path}: expected an array named '{required}', found {found}")
        try:
            return {key: data[key] for key in keys if key in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable .npz annotation file ({exc})") from exc


def _check_ints(arr: np.ndarray, path: Path, key: str, ndim: int, lo: int, hi: int) -> np.ndarray:
    if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{path}: '{key}' must be an integer array with {ndim} dimension(s), "
                         f"got {arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise ValueError(f"{path}: '{key}' values must lie in {lo}..{hi}, got {int(arr.min())}..{int(arr.max())}")
    return arr


def load_annotations(job: VideoJob) -> Annotations:
    """Read and type-check a job's frame labels / annotators / masks (lengths are checked after decoding)."""
    ann = Annotations()
    if job.labels is not None:
        data = _load_npz(job.labels, ("labels", "annotators"), "labels")
        ann.labels = _check_ints(data["labels"], job.labels, "labels", 1, *LABEL_RANGE)
        if "annotators" in data:
            ann.annotators = _check_ints(data["annotators"], job.labels, "annotators", 2, *LABEL_RANGE)
            if ann.annotators.shape[1] != len(ann.labels):
                raise ValueError(f"{job.labels}: 'annotators' covers {ann.annotators.shape[1]} frames, "
                                 f"'labels' {len(ann.labels)}")
    if job.masks is not None:
        data = _load_npz(job.masks, ("masks",), "masks")
        ann.masks = _check_ints(data["masks"], job.masks, "masks", 3, 0, MASK_CLASSES - 1).astype(np.uint8, copy=False)
    return ann


def _check_length(n: int, n_decoded: int, path: Path | None, key: str, video: Path) -> None:
    if n != n_decoded:
        raise ValueError(f"{path}: '{key}' has {n} frames but {video} decodes to {n_decoded} frames; "
                         "annotations must have one entry per decoded frame")


# --------------------------------------------------------------------------- one video

def extract_video(job: VideoJob, cfg: ExtractSection, out_dir: Path, threads: int | None = None,
                  durable: bool = True) -> dict[str, Any]:
    """Extract one video into ``out_dir/<video_id>.npz``; return its index row plus ``crop_method``.

    Raises ``VideoError``/``ValueError`` (bad video or annotations) or ``FileNotFoundError``, all
    naming the file, and nothing is written for such a video; :class:`lus.io.WriteError` if the shard
    cannot be written. ``durable=False`` leaves the fsync to the caller (:func:`lus.io.fsync_file`).
    """
    try:
        arrays, row = extract_arrays(job, cfg, threads)
    except VIDEO_ERRORS as exc:
        located = _with_manifest_row(exc, job.where)
        if located is exc:
            raise
        raise located from exc
    target = Path(out_dir) / row["shard"]
    try:
        write_shard(target, durable=durable, **arrays)
    except Exception as exc:  # disk full, permissions: not the video's fault, so never skipped as a bad video
        raise WriteError(f"{target}: could not write the frame shard ({exc})") from exc
    return row


def _with_manifest_row(exc: BaseException, where: str) -> BaseException:
    """``exc`` with the manifest row in front of its message (which already names the file), so a
    user with many videos finds the entry; ``exc`` itself if there is no row or the type cannot be
    rebuilt from one message (e.g. UnicodeDecodeError)."""
    if not where or str(exc).startswith(where):
        return exc
    try:
        return type(exc)(f"{where}: {exc}")
    except Exception:
        return exc


# The crop buffer of this process, reused from video to video (one extraction at a time per process).
_HEAD: dict[str, np.ndarray] = {}


def _head_slot(k: int, n: int, frame: np.ndarray) -> np.ndarray:
    """Grey copy of ``frame`` in slot ``k`` of the crop buffer uint8 (n, H, W), returned as a view.

    The buffer is allocated once per process and frame size: allocating ~4 MB afresh for every
    video cost page faults worth 2-3% of the decode time (measured on covid-blues).
    """
    shape = (n, *frame.shape[:2])
    buf = _HEAD.get("buf")
    if buf is None or buf.shape != shape:
        buf = _HEAD["buf"] = np.empty(shape, np.uint8)
    if frame.ndim == 2:
        buf[k] = frame
    else:
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=buf[k])
    return buf[k]


@dataclass
class _Decoded:
    """What one pass over a video produced: kept output frames, their source numbers, the crop."""

    frames: list[np.ndarray]
    index: list[int]
    box: CropBox
    sector: Sector | None
    method: str
    n_decoded: int
    frame_shape: tuple[int, int]
    fps: float
    weight: np.ndarray | None = None  # hull weight applied to the frames (crop: auto), see hull_weight


@dataclass(frozen=True)
class SectorCrop:
    """How every frame of one video is preprocessed, decided once from its first frames.

    ``convert(frame) -> uint8 (cfg.height, cfg.width)`` takes a grey or BGR full-resolution frame;
    ``sector`` is None with ``crop: none``; ``weight`` is the hull weight (``crop: auto``), see
    :func:`hull_weight`.
    """

    box: CropBox
    sector: Sector | None
    weight: np.ndarray | None
    convert: Callable[[np.ndarray], np.ndarray]

    @property
    def method(self) -> str:
        return self.sector.method if self.sector is not None else "none"


def settle_sector(head: Sequence[np.ndarray], frame_shape: tuple[int, int], cfg: ExtractSection) -> SectorCrop:
    """The crop and frame converter of a video from its first ``cfg.crop_buffer`` frames (grey or BGR).

    Shared by extraction and ``lus predict``, so a new video is cropped, blanked and resized exactly
    like the training shards. With ``crop: none`` (or no head frames) the whole frame is kept.
    """
    if cfg.crop != "none" and len(head):
        sector: Sector | None = find_sector(head)
        box = sector.box
        weight = hull_weight(sector, box, cfg.width, cfg.height) if cfg.crop == "auto" else None
    else:
        sector, box, weight = None, CropBox(0, 0, frame_shape[1], frame_shape[0]), None
    return SectorCrop(box, sector, weight, frame_converter(box, frame_shape, cfg.width, cfg.height, weight))


def _decode_and_crop(job: VideoJob, cfg: ExtractSection, threads: int | None) -> _Decoded:
    """Single streaming pass: buffer the first ``crop_buffer`` frames (grey) to find the sector,
    then convert buffered and later selected frames; unselected frames are only grabbed."""
    frames: list[np.ndarray] = []
    index: list[int] = []
    head: list[tuple[int, np.ndarray]] = []  # (frame number, full-resolution grey), bounded
    n_buffer = cfg.crop_buffer if cfg.crop != "none" else 0
    crop: SectorCrop | None = None
    with VideoReader(job.video, threads=threads, reuse_buffer=True) as reader:
        fps = reader.fps if math.isfinite(reader.fps) else float(job.fps_hint)
        keep = frame_selector(cfg, fps, str(job.video))

        def settle_crop(shape: tuple[int, int]) -> None:
            nonlocal crop
            crop = settle_sector([grey for _, grey in head], shape, cfg)
            for i, grey in head:
                if keep(i):
                    frames.append(crop.convert(grey))
                    index.append(i)
            head.clear()

        for i, frame in reader.frames(want=lambda i: i < n_buffer or keep(i)):
            if frame is None:
                continue
            if crop is None:
                if i < n_buffer:
                    head.append((i, _head_slot(len(head), n_buffer, frame)))
                    if len(head) < n_buffer:
                        continue
                settle_crop(frame.shape[:2])
                if i < n_buffer:
                    continue
            frames.append(crop.convert(frame))
            index.append(i)
        if crop is None:  # clip shorter than the crop buffer
            settle_crop(reader.frame_shape)
        return _Decoded(frames, index, crop.box, crop.sector, crop.method, reader.n_decoded,
                        reader.frame_shape, fps, crop.weight)


def _annotation_arrays(ann: Annotations, job: VideoJob, dec: _Decoded, index: np.ndarray,
                       cfg: ExtractSection) -> dict[str, np.ndarray]:
    """Labels/annotators/masks of the kept frames; masks cropped like the frames (nearest resize) and
    set to background where ``crop: auto`` blanked the frames."""
    out: dict[str, np.ndarray] = {}
    if ann.labels is not None:
        _check_length(len(ann.labels), dec.n_decoded, job.labels, "labels", job.video)
        out["labels"] = ann.labels[index].astype(np.int8)
        if ann.annotators is not None:
            out["annotators"] = ann.annotators[:, index].astype(np.int8)
    if ann.masks is not None:
        _check_length(len(ann.masks), dec.n_decoded, job.masks, "masks", job.video)
        if ann.masks.shape[1:] != dec.frame_shape:
            raise ValueError(f"{job.masks}: masks are {ann.masks.shape[2]}x{ann.masks.shape[1]} pixels but "
                             f"{job.video} is {dec.frame_shape[1]}x{dec.frame_shape[0]}; masks must be in "
                             "video pixels")
        masks = np.stack([resize_nearest(np.ascontiguousarray(dec.box.apply(ann.masks[i])), cfg.width, cfg.height)
                          for i in index])
        if dec.weight is not None:  # where the frames were blanked, the masks say background
            masks[:, dec.weight < 128] = 0
        out["masks"] = masks
    return out


def extract_arrays(job: VideoJob, cfg: ExtractSection,
                   threads: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The shard arrays of one video and its index row (plus ``crop_method``), without writing
    (:func:`extract_video` writes them)."""
    if not job.video_id or Path(job.video_id).name != job.video_id or job.video_id.startswith("."):
        raise ValueError(f"{job.where or job.video}: video_id '{job.video_id}' cannot name a shard file")
    ann = load_annotations(job)  # fail fast, before decoding
    dec = _decode_and_crop(job, cfg, threads)
    positions = spread(len(dec.index), cfg.max_frames)
    index = np.asarray(dec.index, dtype=np.int32)[positions]
    frames = np.stack([dec.frames[p] for p in positions])
    dec.frames.clear()
    arrays = {"frames": frames, "frame_index": index, **_annotation_arrays(ann, job, dec, index, cfg)}
    box, fps = dec.box, dec.fps
    return arrays, {
        "video_id": job.video_id, "shard": f"{job.video_id}.npz", "n_frames": int(len(index)),
        "n_decoded": int(dec.n_decoded), "fps": round(fps, 6) if math.isfinite(fps) else float("nan"),
        "crop_x0": box.x0, "crop_y0": box.y0, "crop_x1": box.x1, "crop_y1": box.y1,
        "has_labels": int("labels" in arrays), "has_masks": int("masks" in arrays), "crop_method": dec.method,
    }


# --------------------------------------------------------------------------- all videos

def jobs_from_manifest(manifest: pd.DataFrame, root: Path, source: str = "manifest.csv") -> list[VideoJob]:
    """One job per manifest row; paths resolved against the data ``root`` and kept inside it."""
    from lus.data.manifest import resolve_inside

    jobs = []
    for i, row in enumerate(manifest.to_dict("records"), start=1):
        where = f"{source}, row {i} (video_id {row['video_id']})"

        def opt(col: str) -> Path | None:
            value = row.get(col)
            if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
                return None
            return resolve_inside(root, str(value).strip(), where)

        try:
            fps_hint = float(row.get("fps"))
        except (TypeError, ValueError):  # None, pd.NA, text
            fps_hint = float("nan")
        jobs.append(VideoJob(str(row["video_id"]), resolve_inside(root, str(row["path"]), where),
                             opt("frame_labels"), opt("masks"), fps_hint, where))
    return jobs


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the worker processes


def _extract_in_worker(job: VideoJob, cfg: ExtractSection, out_dir: Path) -> dict[str, Any]:
    # The worker writes its own shard and returns only the index row: sending the frames back for
    # the parent to write cost ~1.5 % of the CPU of an extraction (COVID-BLUES, 312 videos, measured
    # 2026-11-30). The parent does the fsync, so no worker core sits idle waiting for the disk.
    return extract_video(job, cfg, out_dir, threads=1, durable=False)


def _size(job: VideoJob) -> int:
    try:
        return job.video.stat().st_size
    except OSError:
        return 0


def extract_all(jobs: list[VideoJob], cfg: ExtractSection, out_dir: Path, progress: bool = True) -> ExtractResult:
    """Extract every job into ``out_dir`` (``cfg.workers`` processes); return the index and report.

    ``on_error: fail``: the first bad video raises its error (naming the file); queued videos are
    cancelled. The caller builds ``out_dir`` with :func:`lus.io.atomic_dir`, so no partial output
    survives. ``on_error: skip``: the video and the reason go to the report; if no video is left,
    ``ValueError``. Index rows follow the job (manifest) order whatever the completion order.
    """
    import pandas as pd

    if not jobs:
        raise ValueError("no videos to extract: the manifest is empty")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: dict[int, dict[str, Any]] = {}
    skipped: dict[int, dict[str, str]] = {}
    bar = tqdm(total=len(jobs), desc="extract_frames", unit="video", disable=not progress, dynamic_ncols=True)
    frames_done = 0

    def settle(pos: int, outcome: dict[str, Any] | BaseException) -> None:
        nonlocal frames_done
        bar.update(1)
        if isinstance(outcome, BaseException):
            job = jobs[pos]
            skipped[pos] = {"video_id": job.video_id, "path": str(job.video), "reason": str(outcome)}
            bar.write(f"extract_frames: skipped {job.video}: {outcome}")
        else:
            rows[pos] = outcome
            frames_done += outcome["n_decoded"]
            bar.set_postfix(frames=frames_done, refresh=False)

    workers = min(cfg.workers, len(jobs))
    try:
        if workers <= 1:
            for pos, job in enumerate(jobs):
                try:
                    outcome = extract_video(job, cfg, out_dir)
                except VIDEO_ERRORS as exc:
                    if cfg.on_error == "fail":
                        raise
                    outcome = exc  # type: ignore[assignment]
                settle(pos, outcome)
        else:
            # spawn: workers start clean (no inherited OpenCV/FFmpeg threads or locks from the parent).
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker)
            try:
                # Longest files first: on few cores the last long video otherwise runs alone at the end.
                order = sorted(range(len(jobs)), key=lambda p: -_size(jobs[p]))
                futures = {pool.submit(_extract_in_worker, jobs[p], cfg, out_dir): p for p in order}
                for fut in as_completed(futures):
                    try:
                        outcome = fut.result()
                    except VIDEO_ERRORS as exc:  # the video's own problem, raised in the worker
                        if cfg.on_error == "fail":
                            raise
                        outcome = exc
                    else:
                        shard = out_dir / outcome["shard"]
                        try:
                            fsync_file(shard)
                        except OSError as exc:
                            raise WriteError(f"{shard}: could not flush the frame shard to disk ({exc})") from exc
                    settle(futures[fut], outcome)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
        _HEAD.clear()  # the in-process path (workers=1) should not keep the crop buffer alive

    seconds = time.perf_counter() - start
    if not rows:
        first = next(iter(skipped.values()))["reason"] if skipped else "unknown"
        raise ValueError(f"no video could be extracted ({len(skipped)} skipped); first error: {first}")
    ordered = [rows[p] for p in sorted(rows)]
    methods: dict[str, int] = {}
    for r in ordered:
        methods[r["crop_method"]] = methods.get(r["crop_method"], 0) + 1
    index = pd.DataFrame(ordered)[INDEX_COLUMNS]
    decoded, kept = int(index["n_decoded"].sum()), int(index["n_frames"].sum())
    report = {
        "videos": len(jobs),
        "extracted": len(ordered),
        "skipped_count": len(skipped),
        "skipped": [skipped[p] for p in sorted(skipped)],
        "frames_decoded": decoded,
        "frames_kept": kept,
        "crop_methods": {str(k): int(v) for k, v in sorted(methods.items())},
        "crop_fallbacks": [{"video_id": r["video_id"], "method": r["crop_method"]} for r in ordered
                           if r["crop_method"] not in ("motion", "none")],
        "params": cfg.to_dict(),
    }
    return ExtractResult(index=index, report=report, seconds=seconds)
