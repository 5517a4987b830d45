"""Dataset structure: hospitals -> patients -> videos, each with its own random stream.

Why separate streams: seeding every hospital, patient and video from ``(seed, h, p, v)`` keeps
one video's pixels independent of how many other videos are generated (changing
``videos_per_patient`` does not redraw the existing ones) and makes the output reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from lus.config.synthetic import SyntheticSection
from lus.labels import DIAGNOSES
from lus.synth.style import HospitalStyle, sample_style

POINTS = ("L1", "L2", "L3", "R1", "R2", "R3")


@dataclass(frozen=True)
class VideoSpec:
    """What to render for one manifest row."""

    video_id: str
    patient_id: str
    hospital: str
    style: HospitalStyle
    diagnosis: str
    probe: str
    fps: int
    n_frames: int
    point: str
    stream: tuple[int, int, int, int]   # (seed, hospital, patient, video) entropy of the video's rng

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(list(self.stream))


def iter_specs(cfg: SyntheticSection, seed: int) -> Iterator[VideoSpec]:
    """All videos of the dataset in a fixed order."""
    for h in range(cfg.n_hospitals):
        h_rng = np.random.default_rng([seed, h, 0xA11])
        style = sample_style(h_rng, h, cfg.style_shift)
        # Balanced diagnoses within each hospital (random order), so no site is all-healthy.
        n_p = cfg.patients_per_hospital
        diags = [DIAGNOSES[i % 3] for i in range(n_p + int(h_rng.integers(3)))][-n_p:]
        diags = [diags[i] for i in h_rng.permutation(n_p)]
        fps_pref = h_rng.permutation(cfg.fps)       # hospital habit: a preferred frame rate
        for p in range(n_p):
            p_rng = np.random.default_rng([seed, h, p, 0xBEE])
            points = p_rng.permutation(POINTS)
            for v in range(cfg.videos_per_patient):
                v_rng = np.random.default_rng([seed, h, p, v, 0xC0DE])
                probe = "linear" if v_rng.random() < cfg.linear_fraction else "convex"
                fps = int(fps_pref[0] if v_rng.random() < 0.6 else v_rng.choice(cfg.fps))
                n_frames = int(v_rng.integers(cfg.frames_min, cfg.frames_max + 1))
                pid = f"h{h}_p{p:02d}"
                yield VideoSpec(
                    video_id=f"{pid}_v{v}", patient_id=pid, hospital=f"hospital_{h}", style=style,
                    diagnosis=diags[p], probe=probe, fps=fps, n_frames=n_frames,
                    point=str(points[v % len(points)]), stream=(seed, h, p, v),
                )
