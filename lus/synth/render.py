"""Render one frame (grey image + 5-class mask) from a geometry, a hospital style and a video plan.

Image model, as in a B-mode scanner: an *echo amplitude* map (linear, pleura ~ 1) is built from
layers - chest wall above the pleura, aerated lung below it (A-line reverberations, or B-line
comet tails / white lung / consolidations depending on the frame's severity), the pleural line,
rib echoes and shadows - multiplied by depth attenuation and by tissue-locked Rayleigh speckle,
then log-compressed to the display (``dynamic_range`` dB -> 0..1), given a gain and a gamma, and
finally fresh electronic noise is added (so the sector flickers like a live image while the
overlays stay still). Echo levels are set in dB relative to the pleura (constants below).

Mask classes: 0 background / outside lung / above pleura / rib shadow / effusion, 1 aerated lung
(score-0 region), 2 B-line columns (score 1), 3 small consolidations and broken pleura
(score 2), 4 white lung and large consolidations (score 3). Frame label = max region score.
"""

from __future__ import annotations

import numpy as np

from lus.synth.findings import (bline_columns, bronchogram_map, consolidation_echo, consolidation_region,
                                effusion_region, profile_at, rib_layers)
from lus.synth.geometry import Geometry
from lus.synth.plan import Consolidation, VideoPlan
from lus.synth.style import HospitalStyle
from lus.synth.texture import SpeckleField, gauss, smoothstep


def db(level: float) -> float:
    """Linear echo amplitude of a level in dB relative to the pleural line."""
    return float(10.0 ** (level / 20.0))


IRREGULARITY = {"covid": (0.006, 0.012, 0.016, 0.02), "pneumonia": (0.002, 0.005, 0.01, 0.014),
                "healthy": (0.002, 0.004, 0.004, 0.004)}     # pleural line waviness per score, depth units
A_LINE = (db(-23.0), db(-30.0), db(-40.0), 0.0)               # first A-line amplitude per score
A_LINE_DECAY = 0.5                                            # amplitude ratio of successive A-lines
CONFLUENCE = (1.0, 1.0, 1.6, 2.0)                             # B-line widening per score
B_LINE = db(-11.0)                                            # B-line amplitude just below the pleura
WHITE = db(-15.0)                                             # diffuse white-lung echo
LUNG = db(-34.0)                                              # aerated-lung reverberation floor
PLEURA_DIM = (1.0, 0.8, 0.65, 0.6)                            # pleural brightness per score (thickened, coarse)
RIB = db(-5.0)
SHADOW = db(-24.0)                                            # residual echo in an acoustic shadow (fraction)
EFFUSION = db(-30.0)                                          # residual echo in anechoic fluid (fraction)


# Findings recorded per frame (label npz key ``findings`` (T, F) uint8, names in ``finding_names``).
FINDINGS = ("a_lines", "b_lines", "light_beam", "pleura_irregular", "subpleural_consolidation",
            "tissue_consolidation", "air_bronchogram", "effusion", "white_lung")


def frame_findings(plan: VideoPlan, s: int, mask: np.ndarray, layers: dict[str, np.ndarray],
                   visible: np.ndarray) -> np.ndarray:
    """uint8 (F,) flags, in :data:`FINDINGS` order: which findings frame of score ``s`` shows.

    Read from the rendered layers (what is on screen), not from the plan alone: e.g. a
    bronchogram counts only if some visible pixel of it is bright, an effusion only if it
    covers visible pixels.
    """
    cons = (layers["cons_small"] > 0) | (layers["cons_large"] > 0)
    blines = bool((mask == 2).any())
    flags = {
        "a_lines": A_LINE[s] > 0,
        "b_lines": blines,
        "light_beam": blines and plan.light_beam,
        "pleura_irregular": s >= 1 and plan.pleura_rough > 1.0,
        "subpleural_consolidation": plan.diagnosis != "pneumonia" and bool((cons & visible).any()),
        "tissue_consolidation": plan.diagnosis == "pneumonia" and bool((cons & visible).any()),
        "air_bronchogram": bool(((layers["bronchi"] > 0.5) & visible).any()),
        "effusion": bool(((layers["effusion"] > 0.5) & visible).any()),
        "white_lung": bool(((layers["white"] > 0.5) & visible).any()),
    }
    return np.array([flags[k] for k in FINDINGS], dtype=np.uint8)


class FrameRenderer:
    """Renders frames of one video; holds the precomputed grids and the speckle textures."""

    def __init__(self, geom: Geometry, style: HospitalStyle, plan: VideoPlan, rng: np.random.Generator) -> None:
        self.geom, self.style, self.plan, self.rng = geom, style, plan, rng
        h, w = geom.height, geom.width
        # Lung/tissue speckle (lateral grain ~2x axial) and a chest-wall texture with long lateral
        # correlation (the layered, streaky look of muscle and fascia).
        self.speckle = SpeckleField(rng, h, w, grain_lat=1.6 * style.grain, grain_ax=0.7 * style.grain,
                                    contrast=style.speckle)
        self.wall_tex = SpeckleField(rng, h, w, grain_lat=5.0 * style.grain, grain_ax=0.8 * style.grain,
                                     contrast=style.speckle)
        self.px = geom.px_per_depth
        self.w_pl = 0.9 / self.px                 # pleural line sigma: ~1 px whatever the depth setting
        self.striation = profile_at(rng.standard_normal(257).astype(np.float32), geom.lateral)
        self.attn = (10.0 ** (-style.attenuation * np.clip(geom.depth, 0, 1) / 20.0)).astype(np.float32)
        self._bmaps: dict[int, np.ndarray] = {}
        self.edge = (10.0 ** (-4.0 * np.clip(np.abs(geom.lateral), 0, 1) ** 4 / 20.0)).astype(np.float32)

    def _bmap(self, c: Consolidation) -> np.ndarray | None:
        """Cached bronchogram map of consolidation ``c`` (None if it has no air bronchograms)."""
        if not len(c.bronchi):
            return None
        key = id(c)
        if key not in self._bmaps:
            self._bmaps[key] = bronchogram_map(c)
        return self._bmaps[key]

    def pleura_base(self, u: np.ndarray) -> np.ndarray:
        """Smooth pleural depth along each beam (H, W), at rest.

        The pleura is a (nearly) straight surface in the patient, not an arc around the probe's
        apex, so along an oblique beam of a convex probe it lies deeper: r(theta) = r_p / cos(theta).
        ``pleura_flat`` blends between the two shapes and ``pleura_tilt`` makes it oblique.
        """
        plan, g = self.plan, self.geom
        out = plan.pleura_depth + plan.pleura_tilt * u
        if g.half_angle is not None and g.radii is not None:
            r0, r1 = g.radii
            r_p = r0 + plan.pleura_depth * (r1 - r0)
            theta = np.clip(u, -1.3, 1.3) * g.half_angle
            out = out + plan.pleura_flat * r_p * (1.0 / np.cos(theta) - 1.0) / (r1 - r0)
        return out.astype(np.float32)

    def pleura_row(self, t: int) -> float:
        """Pixel row of the pleural line at rest shape on the central scan line in frame ``t``."""
        return self.geom.depth_to_row(self.plan.pleura_depth + float(self.plan.off_depth[t]))

    def _wall(self, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Chest-wall echo amplitude (H, W): skin line, dark fat, muscle, bright fascia lines
        (layers at fixed fractions of the skin-pleura distance ``p`` of each beam)."""
        plan, st = self.plan, self.style
        fat = smoothstep(d - 0.1 * p, 0.01) * (1 - smoothstep(d - 0.35 * p, 0.015))
        wall = db(st.wall_db) * (1.0 - 0.55 * fat)
        wall = wall + db(-14.0) * gauss(d - 0.01, 0.8 / self.px)
        for frac, amp in plan.wall_lines:
            wall = wall + db(-24.0) * amp * gauss(d - frac * p, 0.8 / self.px)
        return wall

    def render(self, t: int, s: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Frame ``t`` at severity ``s``: uint8 image (H, W), uint8 mask (H, W) and named float layers."""
        g, plan, st = self.geom, self.plan, self.style
        d = g.depth - plan.off_depth[t]                       # content depth (probe pressure, breathing)
        u = g.lateral - plan.off_lat[t]                       # content lateral (probe jitter)
        p = plan.pleura_depth
        base = self.pleura_base(u)                            # smooth pleura (depth per beam)
        rough = IRREGULARITY[plan.diagnosis][s] * (plan.pleura_rough if s >= 1 else 1.0)
        pleura = base + rough * profile_at(plan.pleura_noise, u)
        rel = d - pleura                                      # depth below the pleural line
        below = smoothstep(rel - 1.0 * self.w_pl, self.w_pl)
        ul = u - plan.slide[t] * below                        # lung content slides under the pleura
        spk_lung = self.speckle.sample(d, u, plan.slide[t] * below)
        spk_wall = self.wall_tex.sample(d, u)
        spk = spk_wall + (spk_lung - spk_wall) * below

        # Aerated lung: reverberation floor fading with depth + A-lines at multiples of the
        # skin-pleura distance (they follow the true distance, not the content shift).
        lung = LUNG * plan.lung_gain * np.clip(1.0 - 0.6 * rel, 0.35, 1.0)
        a_amp = A_LINE[s]
        if a_amp > 0:
            p_abs = base + float(plan.off_depth[t])           # skin-pleura distance of each beam
            k = np.clip(np.rint(g.depth / p_abs), 2, 4)       # nearest reverberation order 2..4
            lung = lung + a_amp * A_LINE_DECAY ** (k - 2) * gauss(g.depth - k * p_abs, 1.3 / self.px)
        layers: dict[str, np.ndarray] = {}
        act = plan.bline_active[t]
        bl_w = np.zeros_like(d)
        if act.any():
            bl_w, bl_e = bline_columns(ul, rel, plan.bline_u[act], plan.bline_w[act], plan.bline_amp[act],
                                       CONFLUENCE[s])
            lung = lung * (1 - bl_w) + B_LINE * bl_e          # B-lines erase the A-lines they cross
        layers["bline"] = bl_w
        white = np.zeros_like(d)
        if s == 3 and plan.white_lung:
            white = below * smoothstep(1.0 - np.abs(ul - plan.white_u) / plan.white_hw, 0.12)
            level = WHITE * (0.9 + 0.15 * self.striation) * np.clip(1 - 0.4 * rel, 0.5, 1)
            lung = lung + (np.maximum(lung, level) - lung) * white
        img = self._wall(d, base) * (1 - below) + lung * below

        # Consolidations: small ones at 2 (and with white lung at 3), the large lobar one at 3.
        cons_small, cons_large = np.full_like(d, -1.0), np.full_like(d, -1.0)
        shown = list(plan.small_cons) if s == 2 or (s == 3 and plan.white_lung) else []
        big = plan.large_cons if s == 3 else None
        broken = np.zeros_like(d)
        bronchi = np.zeros_like(d)
        # Dynamic air bronchograms: they swing along the beam with the breathing cycle.
        phase = plan.bronchogram_swing * float(plan.breath[t])
        for c, target in [(c, cons_small) for c in shown] + ([(big, cons_large)] if big is not None else []):
            region = consolidation_region(ul, rel, c)
            w, e, b = consolidation_echo(ul, rel, c, region, phase, self._bmap(c), plan.bronchogram_amp)
            img = img * (1 - w) + e
            np.maximum(bronchi, b, out=bronchi)
            np.maximum(target, region, out=target)
            broken = np.maximum(broken, smoothstep(1.0 - np.abs(ul - c.u) / c.half_width, 0.1))
        # Effusion: anechoic fluid at the base (the consolidated lung stays drawn over it).
        eff = np.zeros_like(d)
        if plan.effusion is not None:
            eff = effusion_region(u, d, plan.effusion) * (1 - smoothstep(np.maximum(cons_small, cons_large), 0.05))
            img = img * (1 - (1 - EFFUSION) * eff)

        # Pleural line: continuous (0), irregular and coarse (1), broken (2-3).
        bright = np.full_like(d, PLEURA_DIM[s] * plan.pleura_gain)
        if s >= 1:
            bright = bright * np.clip(0.75 + 0.25 * self.striation, 0.3, 1.2)
        gaps = np.zeros_like(d)
        if s >= 2:
            gaps = np.maximum(smoothstep(profile_at(plan.pleura_gaps, ul), 0.1), broken)
            bright = bright * (1 - 0.85 * gaps)
            # covid: between the breaks the echo is fragmented too (pleura_frag is 0 for the other diagnoses)
            bright = bright * (1 - 0.7 * np.clip(profile_at(plan.pleura_frag, ul), 0.0, 1.0))
        width = self.w_pl * (1.0 if s == 0 else 1.4) * plan.pleura_thick
        img = img + bright * gauss(rel, width)

        # Ribs: bright surface echo with acoustic shadow at the sides of the field.
        shadow, rib = rib_layers(u, d, base, plan.ribs)
        img = img * (1 - (1 - SHADOW) * shadow) + RIB * rib

        amp = img * self.attn * self.edge * spk
        floor = db(st.noise_floor) * self.rng.rayleigh(0.8, amp.shape).astype(np.float32)
        amp = np.maximum(amp + floor, 1e-5)
        disp = (20.0 * np.log10(amp) + st.gain_db + plan.gain_db + st.dynamic_range) / st.dynamic_range
        disp = np.clip(disp, 0.0, 1.0) ** st.gamma
        disp = disp + self.rng.normal(0.0, st.noise, disp.shape).astype(np.float32)
        out = np.where(g.inside, np.clip(disp * 255.0 + 0.5, 0, 255), 0).astype(np.uint8)

        # 5-class mask from the same layers.
        visible = g.inside & (shadow < 0.5)
        lung_px = visible & (rel > 1.0 * self.w_pl) & (eff < 0.5)
        mask = np.where(lung_px, 1, 0).astype(np.uint8)
        mask[lung_px & (bl_w > 0.4)] = 2
        if s >= 2:
            band = visible & (gaps > 0.5) & (rel > -2 * width) & (rel < 0.06)
            mask[band | (visible & (cons_small > 0))] = 3
        if s == 3:
            mask[(lung_px & (white > 0.5)) | (visible & (cons_large > 0))] = 4
            if plan.white_lung:
                mask[visible & (cons_small > 0)] = 4
        layers.update(shadow=shadow, effusion=eff, rel=rel, white=white, pleura=pleura,
                      bronchi=bronchi * g.inside, cons_small=cons_small, cons_large=cons_large)
        layers["findings"] = frame_findings(plan, s, mask, layers, visible)
        return out, mask, layers
