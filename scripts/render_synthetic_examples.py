"""Render example sheets of the synthetic data: per severity (default) or per diagnosis (``--by-diagnosis``).

Per severity (docs/img/synthetic_frames.png): rows = frame severity 0..3; each row shows ``--per-row`` frames
from different videos (diagnosis, probe, hospital in the caption; one per diagnosis where possible), each
followed by the same frame with its 5-class mask overlaid.

Per diagnosis (docs/img/synthetic_diagnoses.png): rows = covid / pneumonia / healthy; ``--per-row`` frames
from different patients of an 18-patient synthetic set (seed 0), chosen to show the diagnosis' findings (captions name the
findings the frame shows, from the generator's per-frame flags), then an over-time strip of the first
video (M-mode: one scan line, time to the right) through the finding: the moving air bronchograms of
pneumonia, the light-beam band of covid, the seashore sign (still wall, sliding lung) of a healthy lung.
Rendered in memory (nothing written but the PNG). Usage:

    .venv/bin/python scripts/render_synthetic_examples.py [--seed 0] [--out docs/img/synthetic_frames.png]
    .venv/bin/python scripts/render_synthetic_examples.py --by-diagnosis [--out docs/img/synthetic_diagnoses.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.synthetic import SyntheticSection  # noqa: E402
from lus.synth.dataset import DIAGNOSES, VideoSpec, iter_specs  # noqa: E402
from lus.synth.plan import FindingParams  # noqa: E402
from lus.synth.render import FINDINGS  # noqa: E402
from lus.synth.video import SyntheticVideo, render_video  # noqa: E402

# BGR colours of mask classes 1..4 (aerated lung, B-lines, consolidation/broken pleura, white lung).
COLOURS = np.array([[0, 0, 0], [200, 120, 0], [0, 220, 255], [0, 140, 255], [40, 40, 230]], dtype=np.float32)


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """BGR frame with the mask classes 1..4 tinted (class 0 left untouched)."""
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR).astype(np.float32)
    col = COLOURS[mask]
    a = np.where(mask[..., None] > 0, alpha, 0.0)
    return (bgr * (1 - a) + col * a).astype(np.uint8)


def render(spec: VideoSpec, cfg: SyntheticSection) -> SyntheticVideo:
    """One video of the dataset, rendered as the synthetic source renders it (in memory)."""
    return render_video(spec.rng(), spec.style, spec.diagnosis, spec.probe, spec.n_frames, spec.fps,
                        cfg.height, cfg.width, max_transitions=cfg.max_transitions,
                        findings=FindingParams.from_section(cfg))


def collect(cfg: SyntheticSection, seed: int, per_row: int) -> dict[int, list[tuple[np.ndarray, np.ndarray, str]]]:
    """Up to ``per_row`` (frame, mask, caption) per score, each from a different video.

    Prefers one example per diagnosis in each row (then fills up), so the sheet shows how covid,
    pneumonia and healthy lungs differ at the same score.
    """
    found: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {s: [] for s in range(4)}
    spare: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {s: [] for s in range(4)}
    for spec in iter_specs(cfg, seed):
        vid = render(spec, cfg)
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


# What each row of the per-diagnosis sheet should show (flags of lus.synth.render.FINDINGS), best first.
WANTED = {"covid": ("light_beam", "pleura_irregular", "subpleural_consolidation"),
          "pneumonia": ("air_bronchogram", "tissue_consolidation", "effusion"),
          "healthy": ("a_lines",)}
SHORT = {"a_lines": "A-lines", "b_lines": "B-lines", "light_beam": "light beam", "pleura_irregular": "irreg. pleura",
         "subpleural_consolidation": "subpl. cons.", "tissue_consolidation": "consolidation",
         "air_bronchogram": "bronchograms", "effusion": "effusion", "white_lung": "white lung"}


def _caption(vid: SyntheticVideo, t: int) -> str:
    shown = [SHORT[n] for n, f in zip(FINDINGS, vid.findings[t]) if f and n != "b_lines"]
    return f"score {vid.labels[t]}: " + ", ".join(shown[-2:])


def _mmode(vid: SyntheticVideo, diagnosis: str, t: int, height: int) -> np.ndarray:
    """Over-time strip of ``vid``: the scan line through its finding (pixel column; from just above the
    pleura to 56 px below it), one column per frame."""
    g, mask = vid.geom, vid.masks[t]
    if diagnosis == "pneumonia":      # the consolidation column with the most bright (bronchogram) echoes over time
        cons = vid.masks >= 3
        bright = cons & (vid.frames > np.percentile(vid.frames[cons], 90))
        cols = np.array([int(np.argmax(bright.sum(axis=(0, 1))))]) if cons.any() else np.array([], int)
    elif diagnosis == "covid":        # through a light-beam band
        cols = np.flatnonzero((mask == 2).sum(axis=0) > 10)
    else:
        cols = np.array([], int)
    x = int(np.median(cols)) if len(cols) else g.width // 2
    r0 = int(vid.pleura_rows.min())
    strip = vid.frames[:, max(0, r0 - 16):r0 + 56, x].T                 # (rows around the pleura, T), magnified
    return cv2.resize(strip, (min(3 * strip.shape[1], 150), height), interpolation=cv2.INTER_NEAREST)


def collect_diagnoses(cfg: SyntheticSection, seed: int, per_row: int) -> dict[str, list[tuple[SyntheticVideo, int]]]:
    """Per diagnosis, up to ``per_row`` (video, frame) pairs from different patients showing its findings.

    A frame qualifies if it shows all of ``WANTED[d]`` (healthy: score 0), else the frame with the most of them.
    """
    found: dict[str, list[tuple[int, SyntheticVideo, int, str]]] = {d: [] for d in DIAGNOSES}
    for spec in iter_specs(cfg, seed):
        if spec.probe != "convex" or any(p == spec.patient_id for *_, p in found[spec.diagnosis]):
            continue
        vid = render(spec, cfg)
        cols = [FINDINGS.index(n) for n in WANTED[spec.diagnosis]]
        hits = vid.findings[:, cols].sum(axis=1) - (vid.labels > 0) * (spec.diagnosis == "healthy")
        t = int(np.argmax(hits))
        found[spec.diagnosis].append((int(hits[t]), vid, t, spec.patient_id))
    return {d: [(v, t) for _, v, t, _ in sorted(found[d], key=lambda x: -x[0])[:per_row]] for d in DIAGNOSES}


def diagnosis_sheet(cfg: SyntheticSection, seed: int, per_row: int) -> np.ndarray:
    """BGR sheet: rows covid / pneumonia / healthy, ``per_row`` frames then the first video's M-mode strip."""
    found = collect_diagnoses(cfg, seed, per_row)
    h, w, cap_h, label_w = cfg.height, cfg.width, 12, 84
    rows = []
    for d in DIAGNOSES:
        tiles = []
        for vid, t in found[d]:
            tile = np.zeros((h + cap_h, w, 3), np.uint8)
            tile[:h] = cv2.cvtColor(vid.frames[t], cv2.COLOR_GRAY2BGR)
            cv2.putText(tile, _caption(vid, t), (2, h + cap_h - 3), cv2.FONT_HERSHEY_PLAIN, 0.65, (0, 255, 255), 1,
                        cv2.LINE_AA)
            tiles += [tile, np.full((h + cap_h, 4, 3), 255, np.uint8)]
        vid, t = found[d][0]
        strip = _mmode(vid, d, t, h)
        tile = np.zeros((h + cap_h, strip.shape[1], 3), np.uint8)
        tile[:h] = cv2.cvtColor(strip, cv2.COLOR_GRAY2BGR)
        cv2.putText(tile, "time ->", (2, h + cap_h - 3), cv2.FONT_HERSHEY_PLAIN, 0.65, (200, 200, 200), 1, cv2.LINE_AA)
        label = np.zeros((h + cap_h, label_w, 3), np.uint8)
        cv2.putText(label, d, (3, h // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label] + tiles + [tile], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)[:-4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-row", type=int, default=3)
    parser.add_argument("--by-diagnosis", action="store_true", help="rows per diagnosis with an over-time strip")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    cfg = SyntheticSection(patients_per_hospital=6, n_hospitals=3)
    if args.by_diagnosis:
        write_png(Path(args.out or "docs/img/synthetic_diagnoses.png"), diagnosis_sheet(cfg, args.seed, args.per_row))
        return
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
    write_png(Path(args.out or "docs/img/synthetic_frames.png"), np.concatenate(rows[:-1] + [legend], axis=0))


def write_png(out: Path, sheet: np.ndarray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
