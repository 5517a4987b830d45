"""Per-video random decisions: severity over time, where the findings are, how things move.

Why: a video is rendered frame by frame, but its anatomy must persist - the same ribs, the same
B-line sites (which switch on and off), the same consolidation growing from small to large when
the severity rises. Drawing all of that once into a :class:`VideoPlan` keeps the renderer a pure
function of (plan, frame index) and makes the diagnosis-specific findings explicit in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lus.config.synthetic import SyntheticSection
from lus.synth.texture import smooth_noise_1d

N_PROFILE = 257                      # samples of the lateral profiles over u in [-1.5, 1.5]
PROFILE_U = np.linspace(-1.5, 1.5, N_PROFILE).astype(np.float32)

# P(video base score) per diagnosis: covid = B-line dominated, pneumonia = consolidation
# dominated, healthy = A-lines with the odd isolated B-line. Sick patients' clips are mostly
# abnormal, as in curated sets (clips are recorded/kept because they show the findings).
SCORE_PRIOR = {
    "covid": (0.05, 0.35, 0.35, 0.25),
    "pneumonia": (0.08, 0.12, 0.40, 0.40),
    "healthy": (0.9, 0.1, 0.0, 0.0),
}
TISSUE = 10.0 ** (-28.0 / 20.0)      # hepatised lung: tissue-like echo (pleura = 1)
HYPO = 10.0 ** (-40.0 / 20.0)        # small covid subpleural patch: hypoechoic
MAX_SCORE = {"covid": 3, "pneumonia": 3, "healthy": 1}


@dataclass(frozen=True)
class FindingParams:
    """Strength and frequency of the diagnosis-specific findings: the params ``synthetic.<field>``
    (meanings, ranges and defaults in :class:`lus.config.synthetic.SyntheticSection`; built by
    :meth:`from_section`). They sit on top of the severity scheme: they change how a frame of a given
    score looks for a covid or a pneumonia patient, never its score or the meaning of its mask classes.
    """

    effusion_prob: float
    effusion_prob_covid: float
    covid_pleura: float
    light_beam_prob: float
    light_beam_width: float
    covid_subpleural: int
    bronchogram_prob: float
    bronchogram_strength: float
    bronchogram_motion: float

    @classmethod
    def from_section(cls, cfg: SyntheticSection) -> "FindingParams":
        """The finding knobs of a validated ``synthetic`` params section."""
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})

    @classmethod
    def default(cls) -> "FindingParams":
        """The section's defaults (tests, example sheets)."""
        return cls.from_section(SyntheticSection())


@dataclass(frozen=True)
class Consolidation:
    """Subpleural patch: centre ``u``, lateral half-width, depth extent below the pleura (depth units)."""

    u: float
    half_width: float
    extent: float
    border: np.ndarray          # (N_PROFILE,) irregular deep margin ("shred"), unit-std noise
    bronchi: np.ndarray         # (K, 3) air bronchograms: rel. lateral, rel. depth, length (0..1); K may be 0
    level: float                # echogenicity inside (hypoechoic covid patch vs tissue-like pneumonia)


@dataclass(frozen=True)
class VideoPlan:
    """Everything random about one video; arrays are per frame (T,) or lateral profiles (N_PROFILE,)."""

    diagnosis: str
    severity: np.ndarray        # int (T,) target severity per frame
    pleura_depth: float         # normalised depth of the pleural line at rest (central beam)
    pleura_flat: float          # 0 = pleura concentric with the probe, 1 = straight line in the patient
    pleura_tilt: float          # depth change across the field (depth units per lateral unit)
    pleura_noise: np.ndarray    # (N,) irregularity shape (scaled by severity)
    pleura_gaps: np.ndarray     # (N,) >0 where the pleura is broken at score >= 2
    ribs: tuple[tuple[float, float], ...]   # (u, half_width) of the visible ribs
    bline_u: np.ndarray         # (K,) B-line sites
    bline_w: np.ndarray         # (K,) lateral half-widths
    bline_amp: np.ndarray       # (K,) brightness
    bline_active: np.ndarray    # bool (T, K) which sites show a B-line in each frame
    small_cons: tuple[Consolidation, ...]   # shown at score 2 (and 3 for covid)
    large_cons: Consolidation | None        # shown at score 3 (pneumonia)
    white_lung: bool            # score 3 rendered as diffuse white lung (covid)
    effusion: tuple[float, float, float] | None  # (u, half_width, top depth) or None
    off_depth: np.ndarray       # (T,) breathing + probe pressure, depth units
    off_lat: np.ndarray         # (T,) probe jitter, lateral units
    slide: np.ndarray           # (T,) lung sliding (lateral shift below the pleura)
    wall_lines: np.ndarray      # (L, 2) fascia lines: depth as a fraction of the pleural depth, amplitude
    lung_gain: float            # multiplier of the aerated-lung reverberation level
    gain_db: float              # operator's gain tweak for this clip, added to the hospital gain (dB)
    pleura_gain: float          # multiplier of the pleural line brightness
    pleura_thick: float         # pleural line thickness factor (covid: thickened)
    white_u: float              # centre of the white-lung zone (lateral units)
    white_hw: float             # its half-width (lateral units)
    pleura_frag: np.ndarray     # (N,) >= 0: covid pleural echo interrupted (fragmented) at score >= 2 (else 0)
    pleura_rough: float         # multiplier of the pleural waviness at score >= 1 (covid: irregular, else 1)
    light_beam: bool            # covid: B-lines are broad bands ("light beam") with spared lung between
    bronchogram_amp: float      # brightness of the air bronchograms (0 = none)
    bronchogram_swing: float    # their excursion with breathing, consolidation extents
    breath: np.ndarray          # (T,) breathing phase signal in [-1, 1] (drives the bronchograms)


def severity_sequence(rng: np.random.Generator, diagnosis: str, n_frames: int, max_transitions: int) -> np.ndarray:
    """Piecewise-constant severity (T,) with 0..max_transitions random change points (+-1 steps)."""
    score = int(rng.choice(4, p=SCORE_PRIOR[diagnosis]))
    top = MAX_SCORE[diagnosis]
    p_n = np.array([0.45, 0.35, 0.2, 0.1, 0.05, 0.03, 0.02][:max_transitions + 1])
    if diagnosis == "healthy":        # a normal lung rarely shows even a transient isolated B-line
        p_n[0] *= 6.0
    n_trans = int(rng.choice(len(p_n), p=p_n / p_n.sum()))
    lo, hi = int(0.15 * n_frames), int(0.85 * n_frames)
    cuts = sorted(set(int(c) for c in rng.integers(lo, max(lo + 1, hi), size=n_trans)))
    cuts = [c for i, c in enumerate(cuts) if c > 2 and (i == 0 or c - cuts[i - 1] >= 3)]
    seq = np.empty(n_frames, dtype=np.int64)
    start = 0
    for cut in cuts + [n_frames]:
        seq[start:cut] = score
        step = int(rng.choice([-1, 1]))
        nxt = score + step
        score = nxt if 0 <= nxt <= top else score - step
        score = int(np.clip(score, 0, top))
        start = cut
    return seq


def _consolidation(rng: np.random.Generator, u: float, half_width: float, extent: float,
                   bronchi: bool, level: float) -> Consolidation:
    k = int(rng.integers(6, 12)) if bronchi else 0
    br = np.stack([rng.uniform(-0.75, 0.75, k), rng.uniform(0.2, 0.85, k), rng.uniform(0.4, 1.0, k)], axis=1) \
        if k else np.zeros((0, 3))
    return Consolidation(u, half_width, extent, smooth_noise_1d(rng, N_PROFILE, 6.0), br.astype(np.float32), level)


def _bline_activity(rng: np.random.Generator, severity: np.ndarray, n_sites: int, diagnosis: str,
                    light_beam: bool = False) -> np.ndarray:
    """bool (T, K): B-lines appear/disappear over time; count grows with severity; >= 1 at score >= 1.

    Broad light-beam bands are fewer at a time, so spared lung stays between them.
    """
    t_len = len(severity)
    base = {"covid": (0, 2, 3, 4), "pneumonia": (0, 1, 2, 2), "healthy": (0, 1, 1, 1)}[diagnosis]
    if light_beam:
        base = (0, 1, 2, 2)
    order = list(rng.permutation(n_sites))
    period = int(rng.integers(8, 16))
    extra = 0
    active = np.zeros((t_len, n_sites), dtype=bool)
    for t in range(t_len):
        if t and t % period == 0:
            i, j = rng.choice(n_sites, size=2, replace=False)
            order[i], order[j] = order[j], order[i]
            extra = int(rng.integers(-1, 2))
        s = int(severity[t])
        n = 0 if s == 0 else int(np.clip(base[s] + extra, 1, n_sites))
        active[t, order[:n]] = True
    return active


def make_plan(rng: np.random.Generator, diagnosis: str, n_frames: int, fps: float, pleura_depth: float,
              max_transitions: int, findings: FindingParams | None = None,
              severity: np.ndarray | None = None) -> VideoPlan:
    """Draw the plan of one video of a patient with ``diagnosis``.

    ``severity`` (T,) forces the per-frame severity (tests, examples); the random draw still
    happens so the rest of the plan does not depend on whether it is forced. ``findings`` sets
    the diagnosis-specific findings (default: the params defaults; lung-ultrasound literature):

    - covid: thickened pleural line, irregular at score >= 1, fragmented at score >= 2; patchy B-lines, often as
      broad "light beam" bands with spared lung between them; several small hypoechoic
      subpleural consolidations (score >= 2); effusion rare.
    - pneumonia: one focal tissue-like consolidation (small at score 2, lobar at 3) with
      dynamic air bronchograms; often an effusion; B-lines only next to the consolidation; the
      pleural line smooth (not irregular or thickened), broken at score >= 2 like every diagnosis.
    - healthy: A-lines, lung sliding, at most an isolated B-line.
    """
    f = findings or FindingParams.default()
    sev = severity_sequence(rng, diagnosis, n_frames, max_transitions)
    if severity is not None:
        sev = np.asarray(severity, dtype=np.int64).reshape(n_frames)
    covid, pneu = diagnosis == "covid", diagnosis == "pneumonia"
    p = float(np.clip(pleura_depth * rng.uniform(0.88, 1.12), 0.13, 0.32))
    # Breaks of the pleural line are the severity scheme's score-2 cue, so every diagnosis keeps them;
    # covid's line is broken more often (fragmented), pneumonia's is otherwise smooth (no extra roughness).
    gaps = smooth_noise_1d(rng, N_PROFILE, 7.0) - 0.7 + (0.35 * min(f.covid_pleura, 1.5) if covid else 0.0)
    frag = smooth_noise_1d(rng, N_PROFILE, 2.5)
    rib_u = 0.8 + rng.uniform(-0.05, 0.05)     # ribs at the sides of the field ("bat sign")
    ribs = [(-rib_u + rng.uniform(-0.04, 0.04), rng.uniform(0.12, 0.18)), (rib_u, rng.uniform(0.12, 0.18))]
    if rng.random() < 0.2:
        ribs.pop(int(rng.integers(2)))
    n_sites = 6
    light_beam = bool(rng.random() < f.light_beam_prob) and covid
    if pneu:   # focal: B-lines cluster around the consolidated segment
        centre = rng.uniform(-0.3, 0.3)
        bl_u = np.clip(centre + rng.uniform(-0.3, 0.3, n_sites), -0.5, 0.5)
    elif light_beam:   # bands on a coarse grid, so neighbours rarely merge and spared lung remains
        bl_u = np.linspace(-0.55, 0.55, n_sites) + rng.uniform(-0.04, 0.04, n_sites)
        centre = float(rng.uniform(-0.35, 0.35))
    else:      # multifocal, spread over the whole intercostal space
        bl_u = np.sort(rng.uniform(-0.5, 0.5, n_sites))
        centre = float(rng.uniform(-0.35, 0.35))
    bl_w = rng.uniform(0.035, 0.06, n_sites) * (f.light_beam_width if light_beam else 1.0)
    bl_amp = rng.uniform(0.8, 1.0, n_sites) if light_beam else rng.uniform(0.45, 1.0, n_sites)
    active = _bline_activity(rng, sev, n_sites, diagnosis, light_beam)
    bronchi = pneu and bool(rng.random() < f.bronchogram_prob)
    if pneu:
        small = (_consolidation(rng, centre, rng.uniform(0.2, 0.28), rng.uniform(0.15, 0.22), bronchi, TISSUE),)
        large = _consolidation(rng, centre, rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.42), bronchi, TISSUE)
    else:
        k = int(rng.integers(1, f.covid_subpleural + 1))
        us = np.linspace(-0.5, 0.5, k + 2)[1:-1] + rng.uniform(-0.1, 0.1, k) if covid else rng.uniform(-0.45, 0.45, k)
        small = tuple(_consolidation(rng, float(u), rng.uniform(0.08, 0.13), rng.uniform(0.06, 0.1), False, HYPO)
                      for u in us)
        large = None
    eff_p = f.effusion_prob if pneu else (f.effusion_prob_covid if covid else 0.0)
    effusion = None
    if rng.random() < eff_p:   # pneumonia: a larger, higher-reaching effusion than covid's thin basal rim
        top = rng.uniform(0.6, 0.75) if pneu else rng.uniform(0.7, 0.8)
        effusion = (float(rng.uniform(-0.4, 0.4)), float(rng.uniform(0.45, 0.75)), float(top))
    t = np.arange(n_frames, dtype=np.float64)
    breath_period = rng.uniform(2.5, 4.5) * fps
    phase = rng.uniform(0, 2 * np.pi)
    breath_wave = np.sin(2 * np.pi * t / breath_period + phase)
    breath = rng.uniform(0.006, 0.016) * breath_wave
    slide = rng.uniform(0.02, 0.05) * np.sin(2 * np.pi * t / breath_period + phase + np.pi / 2)
    jit_u = np.clip(np.cumsum(rng.normal(0, 0.003, n_frames)), -0.03, 0.03)
    jit_d = np.clip(np.cumsum(rng.normal(0, 0.0015, n_frames)), -0.012, 0.012)
    n_lines = int(rng.integers(2, 4))
    wall = np.stack([np.sort(rng.uniform(0.3, 0.85, n_lines)), rng.uniform(0.5, 1.0, n_lines)], axis=1)
    thick = rng.uniform(0.9, 1.1)
    return VideoPlan(
        diagnosis=diagnosis, severity=sev, pleura_depth=p,
        pleura_flat=float(rng.uniform(0.4, 1.0)), pleura_tilt=float(rng.uniform(-0.03, 0.03)),
        pleura_noise=smooth_noise_1d(rng, N_PROFILE, 4.0), pleura_gaps=gaps.astype(np.float32),
        ribs=tuple((float(u), float(w)) for u, w in ribs),
        bline_u=bl_u.astype(np.float32), bline_w=bl_w.astype(np.float32), bline_amp=bl_amp.astype(np.float32),
        bline_active=active, small_cons=small, large_cons=large, white_lung=not pneu, effusion=effusion,
        off_depth=(breath + jit_d).astype(np.float32), off_lat=jit_u.astype(np.float32),
        slide=slide.astype(np.float32), wall_lines=wall.astype(np.float32),
        lung_gain=float(rng.uniform(0.8, 1.25)), gain_db=float(rng.uniform(-3.0, 3.0)),
        pleura_gain=float(rng.uniform(0.85, 1.0)),
        pleura_thick=float(thick * (1.0 + f.covid_pleura * 0.8) if covid else thick),
        white_u=float(rng.uniform(-0.25, 0.25)), white_hw=float(rng.uniform(0.45, 0.8)),
        pleura_frag=(np.clip(frag, 0.0, None) * (f.covid_pleura if covid else 0.0)).astype(np.float32),
        pleura_rough=float(1.0 + 1.5 * f.covid_pleura if covid else 1.0),
        light_beam=light_beam,
        bronchogram_amp=float(f.bronchogram_strength if bronchi else 0.0),
        bronchogram_swing=float(f.bronchogram_motion if bronchi else 0.0),
        breath=breath_wave.astype(np.float32),
    )
