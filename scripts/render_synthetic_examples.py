"""Render docs/img/synthetic_frames.png: example synthetic frames per severity, mask overlaid beside.

Rows = frame severity 0..3; each row shows ``--per-row`` frames from different videos
(diagnosis, probe, hospital in the caption; one per diagnosis where possible), each followed by the same frame with its 5-class mask overlaid.
Rendered in memory (nothing written but the PNG). Usage:

    .venv/bin/python scripts/render_synthetic_examples.py [--seed 0] [--out docs/img/synthetic_frames.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.synthetic import SyntheticSection  # noqa: E402
from lus.synth.dataset import iter_specs  # noqa: E402
from lus.synth.video import render_video  # noqa: E402

# BGR colours of mask classes 1..4 (aerated lung, B-lines, consolidation/broken pleura, white lung).
COLOURS = np.array([[0, 0, 0], [200, 120, 0], [0, 220, 255], [0, 140, 255], [40, 40, 230]], dtype=np.float32)


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """BGR frame with the mask classes 1..4 tinted (class 0 left untouched)."""
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR).astype(np.float32)
    col = COLOURS[mask]
    a = np.where(mask[..., None] > 0, alpha, 0.0)
    return (bgr * (1 - a) + col * a).astype(np.uint8)


def collect(cfg: SyntheticSection, seed: int, per_row: int) -> dict[int, list[tuple[np.ndarray, np.ndarray, str]]]:
    """Up to ``per_row`` (frame, mask, caption) per score, each from a different video.

    Prefers one example per diagnosis in each row (then fills up), so the sheet shows how covid,
    pneumonia and healthy lungs differ at the same score.
    """
    found: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {s: [] for s in range(4)}
    spare: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {s: [] for s in range(4)}
    for spec in iter_specs(cfg, seed):
        vid = render_video(spec.rng(), spec.style, spec.diagnosis, spec.probe, spec.n_frames, spec.fps,
                           cfg.height, cfg.width, max_transitions=cfg.max_transitions,
                           effusion_prob=cfg.effusion_prob)
        for s in range(4):
            idx = np.flatnonzero(vid.labels == s)
            if not len(idx):
                continue
            t = int(idx[len(idx) // 2])
            item = (vid.frames[t], vid.masks[t], f"{spec.diagnosis} {spec.probe} h{spec.hospital[-1]}")
            seen = {cap.split()[0] for _, _, cap in found[s]}
            if len(found[s]) < per_row and spec.diagnosis not in seen:
                found[s].append(item)
            else:
                spare[s].append(item)
        if all(len(v) >= per_row for v in found.values()):
            break
    for s in range(4):
        found[s] += spare[s][:per_row - len(found[s])]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-row", type=int, default=3)
    parser.add_argument("--out", default="docs/img/synthetic_frames.png")
    args = parser.parse_args()
    cfg = SyntheticSection(patients_per_hospital=6, n_hospitals=3)
    found = collect(cfg, args.seed, args.per_row)
    h, w = cfg.height, cfg.width
    cap_h, label_w = 12, 18
    blank = np.zeros((h + cap_h, w, 3), np.uint8)
    rows = []
    for s in range(4):
        tiles = []
        for i in range(args.per_row):
            if i < len(found[s]):
                frame, mask, cap = found[s][i]
                left = np.zeros((h + cap_h, w, 3), np.uint8)
                left[:h] = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                cv2.putText(left, cap, (2, h + cap_h - 3), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 255, 255), 1,
                            cv2.LINE_AA)
                right = np.zeros_like(left)
                right[:h] = overlay(frame, mask)
                cv2.putText(right, "mask", (2, h + cap_h - 3), cv2.FONT_HERSHEY_PLAIN, 0.7, (200, 200, 200), 1,
                            cv2.LINE_AA)
                tiles += [left, right]
            else:
                tiles += [blank, blank]
            tiles.append(np.full((h + cap_h, 4, 3), 255, np.uint8))
        label = np.zeros((h + cap_h, label_w, 3), np.uint8)
        cv2.putText(label, str(s), (4, h // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label] + tiles[:-1], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    legend = np.zeros((14, rows[0].shape[1], 3), np.uint8)
    x = 4
    for c, name in enumerate(["lung (0)", "B-lines (1)", "consolidation/broken pleura (2)", "white lung/large cons. (3)"],
                             start=1):
        cv2.rectangle(legend, (x, 3), (x + 8, 11), tuple(int(v) for v in COLOURS[c]), -1)
        cv2.putText(legend, name, (x + 11, 11), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        x += 20 + 7 * len(name)
    sheet = np.concatenate(rows[:-1] + [legend], axis=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
