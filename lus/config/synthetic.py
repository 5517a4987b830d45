"""Params section ``synthetic``: the built-in synthetic lung-ultrasound dataset (DATA.md section 1).

The defaults give a small dataset (3 hospitals x 6 patients x 3 videos, 30-60 frames of 160x128)
that renders in seconds on a CPU, so CI and the end-to-end test can run the whole pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

FPS_CHOICES = (10, 12, 15, 20, 24, 25, 30, 50, 60)
VIDEO_SCORE_RULES = ("sustained", "max", "mode")


@dataclass(frozen=True)
class SyntheticSection(Section):
    """Size, geometry, label and style knobs of the synthetic generator (all deterministic from base.seed)."""

    NAME = "synthetic"
    n_hospitals: int = bounded(3, 1, 50, "hospitals; each has its own image style and text layout")
    patients_per_hospital: int = bounded(12, 1, 500, "patients per hospital (diagnoses balanced within a hospital)")
    videos_per_patient: int = bounded(3, 1, 20, "videos (scan points) per patient")
    frames_min: int = bounded(30, 4, 2000, "shortest video, frames")
    frames_max: int = bounded(60, 4, 2000, "longest video, frames")
    width: int = bounded(160, 64, 1024, "video width, pixels")
    height: int = bounded(128, 64, 1024, "video height, pixels")
    fps: list[int] = listof([15, 20, 25, 30], FPS_CHOICES, "frame rates drawn per video")
    n_annotators: int = bounded(4, 1, 8, "simulated raters of every frame (noisier near transitions)")
    annotator_noise: float = bounded(0.03, 0.0, 0.5, "per-frame chance a rater is off by one away from transitions")
    linear_fraction: float = bounded(0.1, 0.0, 1.0, "share of videos from a linear probe (rest convex)")
    burned_text: bool = True
    effusion_prob: float = bounded(0.6, 0.0, 1.0, "chance a pneumonia video shows a pleural effusion")
    effusion_prob_covid: float = bounded(0.05, 0.0, 1.0, "chance a covid video shows a (thin, basal) effusion")
    covid_pleura: float = bounded(1.0, 0.0, 3.0, "covid pleural line: irregularity (score >= 1), thickening and "
                                  "fragmentation (score >= 2) strength (0 = like the other diagnoses)")
    light_beam_prob: float = bounded(0.85, 0.0, 1.0, "chance a covid video's B-lines are broad 'light beam' bands")
    light_beam_width: float = bounded(2.0, 1.0, 5.0, "light-beam band width relative to an ordinary B-line")
    covid_subpleural: int = bounded(3, 1, 6, "covid: up to this many small subpleural consolidations at score >= 2")
    bronchogram_prob: float = bounded(0.9, 0.0, 1.0, "chance a pneumonia consolidation has air bronchograms")
    bronchogram_strength: float = bounded(0.6, 0.0, 2.0, "air bronchogram brightness (linear echo amplitude, "
                                          "pleura = 1; the consolidation itself is ~0.04)")
    bronchogram_motion: float = bounded(0.25, 0.0, 1.0, "dynamic air bronchograms: excursion along the beam over "
                                        "a breath, in consolidation depths (0 = static)")
    max_transitions: int = bounded(2, 0, 6, "most severity changes within one video")
    video_score_rule: str = choice("mode", VIDEO_SCORE_RULES,
                                   "mode = most frequent frame score; max = worst frame; sustained = highest score "
                                   "held on >= video_score_share of frames")
    video_score_share: float = bounded(0.25, 0.01, 1.0, "share of frames a score must be held for 'sustained'")
    video_score_noise: float = bounded(0.1, 0.0, 0.5, "chance the video score is off by one (rater noise)")
    style_shift: float = bounded(1.0, 0.0, 3.0, "strength of the per-hospital style differences (0 = identical)")
    workers: int = bounded(2, 1, 64, "processes rendering videos (the output does not depend on it)")

    def validate(self) -> None:
        if self.frames_min > self.frames_max:
            raise ParamsError(f"params key 'synthetic.frames_min': {self.frames_min} is larger than "
                              f"synthetic.frames_max={self.frames_max}")
        if not self.fps:
            raise ParamsError("params key 'synthetic.fps': give at least one frame rate, e.g. [25]")
