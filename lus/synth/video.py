"""Render a whole synthetic video and write it as an MJPG AVI.

Why a separate module: the dataset loop (hospitals, patients, manifest) and the tests both need
"give me one video with its labels" without touching disk; writing is a separate, tiny step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lus.synth.geometry import Geometry, make_geometry
from lus.synth.labels import frame_label, simulate_annotators, video_score
from lus.synth.overlay import make_overlay
from lus.synth.plan import FindingParams, VideoPlan, make_plan
from lus.synth.render import FINDINGS, FrameRenderer
from lus.synth.style import HospitalStyle


@dataclass
class SyntheticVideo:
    """One rendered clip: frames/masks uint8 (T, H, W), labels int8 (T,), annotators int8 (A, T)."""

    frames: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    annotators: np.ndarray
    score: int
    overlay: np.ndarray          # uint8 (H, W) static burned-in layer (0 inside the sector)
    geom: Geometry
    plan: VideoPlan
    pleura_rows: np.ndarray      # float (T,) pleural row on the central scan line (for tests)
    findings: np.ndarray         # uint8 (T, F) per-frame flags of the findings shown, names in FINDINGS
    layers: list[dict[str, np.ndarray]] | None = None   # per-frame render layers (keep_layers=True only)


def render_video(rng: np.random.Generator, style: HospitalStyle, diagnosis: str, probe: str, n_frames: int,
                 fps: float, height: int, width: int, *, n_annotators: int = 4, annotator_noise: float = 0.03,
                 max_transitions: int = 2, findings: FindingParams | None = None, burned_text: bool = True,
                 score_rule: str = "mode", score_share: float = 0.25, score_noise: float = 0.1,
                 point: str = "R1", severity: np.ndarray | None = None, keep_layers: bool = False
                 ) -> SyntheticVideo:
    """Render one video; every random draw comes from ``rng`` in a fixed order (deterministic).

    ``findings``: diagnosis-specific finding params (None = the params defaults).
    ``severity`` (T,) optionally forces the per-frame severity (tests and example sheets);
    ``keep_layers`` keeps every frame's named render layers (tests; memory grows with T).
    """
    geom = make_geometry(height, width, probe, style.half_angle, style.apex_ratio)
    plan = make_plan(rng, diagnosis, n_frames, fps, style.pleura_depth, max_transitions, findings,
                     severity=severity)
    renderer = FrameRenderer(geom, style, plan, rng)
    depth_cm = 8.0 + 8.0 * (0.3 - plan.pleura_depth) / 0.15
    overlay = make_overlay(geom, style, point, depth_cm) if burned_text else np.zeros((height, width), np.uint8)
    frames = np.empty((n_frames, height, width), dtype=np.uint8)
    masks = np.empty((n_frames, height, width), dtype=np.uint8)
    labels = np.empty(n_frames, dtype=np.int8)
    flags = np.zeros((n_frames, len(FINDINGS)), dtype=np.uint8)
    kept = [] if keep_layers else None
    for t in range(n_frames):
        img, mask, layers = renderer.render(t, int(plan.severity[t]))
        frames[t] = np.maximum(img, overlay)
        masks[t] = mask
        labels[t] = frame_label(mask)
        flags[t] = layers["findings"]
        if kept is not None:
            kept.append(layers)
    annot = simulate_annotators(labels, n_annotators, annotator_noise, rng)
    score = video_score(labels, score_rule, score_share, score_noise, rng)
    rows = np.array([renderer.pleura_row(t) for t in range(n_frames)])
    return SyntheticVideo(frames, masks, labels, annot, score, overlay, geom, plan, rows, flags, kept)


def write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write grey frames (T, H, W) as an MJPG AVI (OpenCV's built-in, deterministic encoder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h), True)
    if not writer.isOpened():
        raise OSError(f"cannot open an MJPG video writer for {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(f"video writer produced no file: {path}")
