"""Tests of the synthetic LUS generator (lus.synth, lus.data.sources.synthetic) on tiny configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from lus.config.base import ParamsError, load_section
from lus.config.synthetic import SyntheticSection
from lus.data.manifest import MANIFEST_COLUMNS, validate_manifest
from lus.data.sources.synthetic import generate
from lus.synth.plan import FindingParams
from lus.synth.style import sample_style
from lus.synth.video import render_video

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_hospitals=2, patients_per_hospital=3, videos_per_patient=2, frames_min=10, frames_max=16,
            width=96, height=80)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    cfg = SyntheticSection(**TINY)
    df = generate(cfg, seed=0, out_dir=out, progress=False)
    return cfg, df, out


def _video(diagnosis: str, severity: list[int], seed: int = 3, probe: str = "convex", **kw):
    rng = np.random.default_rng(seed)
    style = sample_style(np.random.default_rng([seed, 1]), 0)
    sev = np.array(severity)
    return render_video(rng, style, diagnosis, probe, len(sev), 20, 128, 160, severity=sev, **kw)


def _fp(**changes):
    """Default finding params with ``changes``."""
    return dataclasses.replace(FindingParams.default(), **changes)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_schema_and_validation(tiny):
    cfg, df, out = tiny
    assert list(df.columns) == MANIFEST_COLUMNS
    assert len(df) == cfg.n_hospitals * cfg.patients_per_hospital * cfg.videos_per_patient
    clean = validate_manifest(df, out, source="synthetic generator")
    assert set(clean["diagnosis"]) <= {"covid", "pneumonia", "healthy"}
    assert (clean["covid_positive"] == (clean["diagnosis"] == "covid").astype(int)).all()
    assert clean["video_score"].between(0, 3).all()
    assert set(clean["probe"]) <= {"convex", "linear"}
    assert clean["patient_id"].str.match(r"^h\d+_p\d\d$").all()


def test_patients_never_span_hospitals(tiny):
    _, df, _ = tiny
    assert (df.groupby("patient_id")["hospital"].nunique() == 1).all()
    assert (df.groupby("patient_id")["diagnosis"].nunique() == 1).all()
    assert df["video_id"].is_unique


def test_npz_contents_and_label_equals_max_mask_score(tiny):
    cfg, df, out = tiny
    for rec in df.itertuples():
        z = np.load(out / rec.frame_labels)
        labels, ann, masks = z["labels"], z["annotators"], z["masks"]
        assert labels.dtype == np.int8 and ann.dtype == np.int8 and masks.dtype == np.uint8
        assert labels.shape == (rec.n_frames,)
        assert ann.shape == (cfg.n_annotators, rec.n_frames)
        assert masks.shape == (rec.n_frames, cfg.height, cfg.width)
        assert masks.max() <= 4 and ann.min() >= 0 and ann.max() <= 3
        expected = np.maximum(masks.reshape(len(masks), -1).max(axis=1).astype(int) - 1, 0)
        np.testing.assert_array_equal(labels, expected)


def test_decoded_frame_count_matches_manifest(tiny):
    cfg, df, out = tiny
    for rec in df.itertuples():
        cap = cv2.VideoCapture(str(out / rec.path))
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape[:2] == (cfg.height, cfg.width)
            n += 1
        cap.release()
        assert n == rec.n_frames


def test_same_seed_identical_bytes_different_seed_differs(tiny, tmp_path):
    cfg, _, out = tiny
    generate(cfg, seed=0, out_dir=tmp_path / "b", progress=False)
    generate(cfg, seed=1, out_dir=tmp_path / "c", progress=False)
    a, b, c = _files(out), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a.keys() == b.keys() and any(k.endswith(".avi") for k in a) and any(k.endswith(".npz") for k in a)
    assert all(a[k] == b[k] for k in a), "same seed must give byte-identical videos and labels"
    assert sum(a[k] != c.get(k) for k in a) >= len(a) // 2


def test_video_score_is_not_just_the_max_frame_label(tmp_path):
    cfg = SyntheticSection(**{**TINY, "patients_per_hospital": 6, "video_score_noise": 0.0})
    df = generate(cfg, seed=5, out_dir=tmp_path, progress=False)
    maxima = np.array([np.load(tmp_path / r)["labels"].max() for r in df["frame_labels"]])
    assert (df["video_score"].to_numpy() != maxima).any()
    assert (df["video_score"].to_numpy() <= maxima).all()      # mode never exceeds the max (no noise)


def test_bline_columns_brighter_than_score0_at_same_place():
    vid = _video("covid", [0] * 6 + [1] * 6)
    m1 = vid.masks[6:] == 2
    assert m1.any()
    f0, f1 = vid.frames[:6].astype(float), vid.frames[6:].astype(float)
    # compare the same pixels: B-line columns of the score-1 frames vs those pixels at score 0
    cols = m1.any(axis=0)
    assert f1[:, cols].mean() > f0[:, cols].mean() + 15


def test_masks_cover_rendered_markers_and_findings_grow_with_score():
    vid = _video("covid", [0, 0, 1, 1, 2, 2, 3, 3])
    assert list(vid.labels) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert (vid.masks[:2] <= 1).all()
    for t, s in enumerate(vid.plan.severity):
        assert vid.masks[t].max() == s + 1
    pneu = _video("pneumonia", [3] * 4, seed=4)
    assert (pneu.masks == 4).any() and (pneu.labels == 3).all()


def test_a_lines_at_multiples_of_pleural_depth():
    vid = _video("healthy", [0] * 8)
    g = vid.geom
    cx = g.width // 2
    for t in range(len(vid.frames)):
        col = vid.frames[t, :, cx - 2:cx + 3].astype(float).mean(axis=1)
        prow = vid.pleura_rows[t]
        a2 = int(round(2 * prow - g.top))               # reverberation at twice the skin-pleura distance
        peak = col[a2 - 2:a2 + 3].max()
        trough = col[int(round(1.5 * prow - 0.5 * g.top)) - 1:int(round(1.5 * prow - 0.5 * g.top)) + 2].mean()
        assert peak > trough + 10, (t, peak, trough)


def test_burned_text_outside_sector_and_static():
    vid = _video("covid", [1] * 6, burned_text=True)
    on = vid.overlay > 0
    assert on.sum() > 20
    assert not (on & vid.geom.inside).any()
    for frame in vid.frames:
        np.testing.assert_array_equal(frame[on], vid.overlay[on])
    # outside the sector and the overlay everything is black
    assert (vid.frames[:, ~vid.geom.inside & ~on] == 0).all()


def test_linear_probe_renders():
    vid = _video("pneumonia", [0, 1, 2, 3], probe="linear")
    assert vid.geom.probe == "linear" and list(vid.labels) == [0, 1, 2, 3]


def test_params_section_loads_and_validates():
    cfg = load_section(SyntheticSection, ROOT / "params.yaml")
    assert cfg.frames_min <= cfg.frames_max
    with pytest.raises(ParamsError):
        SyntheticSection.from_dict({"frames_min": 50, "frames_max": 20})
    with pytest.raises(ParamsError):
        SyntheticSection.from_dict({"video_score_rule": "median"})
    with pytest.raises(ParamsError):
        SyntheticSection.from_dict({"fps": [7]})


def test_annotators_disagree_mostly_near_transitions():
    from lus.synth.labels import simulate_annotators
    labels = np.array([0] * 40 + [2] * 40 + [1] * 40, dtype=np.int8)
    ann = simulate_annotators(labels, 4, 0.03, np.random.default_rng(0))
    wrong = ann != labels[None]
    near = np.zeros(len(labels), bool)
    near[34:46] = near[74:86] = True
    assert wrong[:, near].mean() > 3 * wrong[:, ~near].mean()
    assert wrong[:, ~near].mean() < 0.1


def test_video_score_rules():
    from lus.synth.labels import video_score
    rng = np.random.default_rng(0)
    labels = np.array([0] * 16 + [3] * 2 + [1] * 6)
    assert video_score(labels, "max", 0.25, 0.0, rng) == 3
    assert video_score(labels, "mode", 0.25, 0.0, rng) == 0
    assert video_score(labels, "sustained", 0.25, 0.0, rng) == 1    # 3 held on 2/24 frames only


def _numeric_style(style) -> dict[str, float]:
    # image-style numbers only (the overlay text layout stays per hospital even at style_shift 0)
    return {k: v for k, v in dataclasses.asdict(style).items() if isinstance(v, float) and k != "font_scale"}


def test_hospital_styles_differ_and_style_shift_zero_removes_them():
    from lus.synth.dataset import iter_specs
    styles = {s.hospital: _numeric_style(s.style) for s in iter_specs(SyntheticSection(**TINY), seed=0)}
    assert styles["hospital_0"] != styles["hospital_1"]
    flat = {s.hospital: _numeric_style(s.style)
            for s in iter_specs(SyntheticSection(**{**TINY, "style_shift": 0.0}), seed=0)}
    assert flat["hospital_0"] == flat["hospital_1"]


def test_prepare_stage_on_synthetic(tmp_path):
    import yaml

    from stages.prepare import build_parser, main
    params = {"base": {"seed": 0}, "data": {"source": "synthetic"},
              "synthetic": {**TINY, "patients_per_hospital": 2, "videos_per_patient": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = build_parser().parse_args(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")])
    main(args)
    from lus.data.manifest import read_manifest
    man = read_manifest(tmp_path / "raw" / "manifest.csv")
    assert len(man) == 4 and (tmp_path / "raw" / "synthetic" / man["path"][0]).is_file()


def test_decoded_overlay_static_and_outside_sector(tiny):
    """After MJPG decoding, everything in JPEG blocks the sector does not touch is still static."""
    from lus.synth.dataset import iter_specs
    from lus.synth.geometry import make_geometry
    from lus.synth.overlay import jpeg_keep_out
    cfg, df, out = tiny
    n_text = 0
    for spec in iter_specs(cfg, seed=0):
        geom = make_geometry(cfg.height, cfg.width, spec.probe, spec.style.half_angle, spec.style.apex_ratio)
        free = ~jpeg_keep_out(geom.inside, margin=0)
        cap = cv2.VideoCapture(str(out / f"videos/{spec.video_id}.avi"))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame[..., 0])
        cap.release()
        stack = np.stack(frames)
        assert (stack[:, free] == stack[:1, free]).all(), spec.video_id
        n_text += int((stack[0][free] > 100).sum())
    assert n_text > 0


# --- diagnosis-specific findings (issue 14) -------------------------------------------------------------

def _flags(vid, name: str) -> np.ndarray:
    from lus.synth.render import FINDINGS
    return vid.findings[:, FINDINGS.index(name)].astype(bool)


def _pleura_roughness(vid, exclude: np.ndarray | None = None) -> float:
    """Mean |row of the brightest pixel near the pleura - smooth fit| over the central columns, px.

    ``exclude`` bool (W,) drops columns (e.g. those under a consolidation)."""
    g, out = vid.geom, []
    for t in range(len(vid.frames)):
        r0 = int(round(vid.pleura_rows[t]))
        keep = g.inside[r0] & (np.abs(g.lateral[r0]) < 0.6)
        if exclude is not None:
            keep &= ~exclude
        cols = np.flatnonzero(keep)
        rows = vid.frames[t, r0 - 10:r0 + 12][:, cols].astype(float).argmax(axis=0)
        out.append(np.abs(rows - np.polyval(np.polyfit(cols, rows, 2), cols)).mean())
    return float(np.mean(out))


def test_covid_pleura_irregular_unlike_pneumonia_away_from_its_consolidation():
    from scipy.ndimage import binary_dilation
    sev = [1] * 4 + [2] * 4
    for seed in (3, 4):
        covid = _video("covid", sev, seed=seed)
        pneu = _video("pneumonia", sev, seed=seed, keep_layers=True)
        assert _flags(covid, "pleura_irregular").all() and not _flags(pneu, "pleura_irregular").any()
        near = np.zeros(covid.geom.width, bool)
        for lay in pneu.layers:
            near |= ((lay["cons_small"] > -0.3) | (lay["cons_large"] > -0.3)).any(axis=0)
        near = binary_dilation(near, iterations=8)
        assert near.any() and not near.all()
        rough_c, rough_p = _pleura_roughness(covid), _pleura_roughness(pneu, near)
        assert rough_c > 2.0 * rough_p and rough_c > 1.5, (seed, rough_c, rough_p)
    # the strength knob turns the finding off
    plain = _video("covid", [1] * 4, seed=3, findings=_fp(covid_pleura=0.0))
    assert not _flags(plain, "pleura_irregular").any()
    assert _pleura_roughness(plain) < 0.6 * _pleura_roughness(_video("covid", [1] * 4, seed=3))


def test_covid_light_beam_bands_with_spared_lung_and_small_subpleural_consolidations():
    sev = [1] * 6 + [2] * 6
    beam = _video("covid", sev, findings=_fp(light_beam_prob=1.0, covid_subpleural=4))
    lines = _video("covid", sev, findings=_fp(light_beam_prob=0.0, covid_subpleural=4))
    assert _flags(beam, "light_beam").any() and not _flags(lines, "light_beam").any()
    assert (_flags(beam, "light_beam") == _flags(beam, "b_lines")).all()

    def band_width(vid) -> float:   # widest run of B-line columns, px, on a row well below the pleura
        widths = []
        for t, m in enumerate(vid.masks):
            row = m[int(vid.pleura_rows[t]) + 25] == 2
            runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))).tolist()[::2]
            widths.append(max(runs, default=0))
        return float(np.mean(widths))

    assert band_width(beam) > 1.8 * band_width(lines)
    for t, m in enumerate(beam.masks):     # spared aerated lung beside the bands at the same depth
        row = m[int(beam.pleura_rows[t]) + 25]
        assert (row == 2).any() and (row == 1).sum() > 0.3 * ((row == 1) | (row == 2)).sum()
    # small subpleural consolidations at score 2 only: flagged, masked (class 3) and small
    sub = _flags(beam, "subpleural_consolidation")
    assert not sub[:6].any() and sub[6:].all()
    assert not _flags(beam, "tissue_consolidation").any() and not _flags(beam, "air_bronchogram").any()
    assert len(beam.plan.small_cons) >= 1 and all(c.half_width <= 0.13 for c in beam.plan.small_cons)
    assert all(((m == 3).sum() > 0) for m in beam.masks[6:])


def test_pneumonia_dynamic_air_bronchograms_bright_and_moving_with_breath():

    def bronchogram_track(motion: float):
        vid = _video("pneumonia", [3] * 40, seed=4, keep_layers=True,
                     findings=_fp(bronchogram_prob=1.0, bronchogram_motion=motion))
        assert _flags(vid, "tissue_consolidation").all() and _flags(vid, "air_bronchogram").all()
        rel, bright, tissue = [], [], []
        for t, lay in enumerate(vid.layers):
            cons = lay["cons_large"] > 0.3
            bron = (lay["bronchi"] > 0.5) & vid.geom.inside
            frame = vid.frames[t].astype(float)
            bright.append(frame[bron].mean())
            tissue.append(frame[cons & (lay["bronchi"] < 0.05)].mean())
            # in pixels only: where the bright echoes sit inside the consolidation, relative to it
            rel.append(np.nonzero(cons & (frame >= 140))[0].mean() - np.nonzero(cons)[0].mean())
        return vid, np.array(rel), np.array(bright), np.array(tissue)

    vid, moving, bright, tissue = bronchogram_track(0.25)
    assert (bright > tissue + 50).all()       # bright branching echoes in grey tissue-like lung
    assert (vid.masks[0][vid.layers[0]["bronchi"] > 0.5] == 4).all()   # inside the class-4 consolidation
    _, static, _, _ = bronchogram_track(0.0)
    assert np.ptp(moving) > 2.0 * np.ptp(static) and np.ptp(moving) > 1.5
    assert np.corrcoef(moving, vid.plan.breath)[0, 1] > 0.8   # they move with breathing


def test_pneumonia_effusion_often_covid_rarely_healthy_never():
    vid = _video("pneumonia", [0] * 3 + [2] * 3, keep_layers=True, findings=_fp(effusion_prob=1.0))
    eff = _flags(vid, "effusion")
    assert eff.all() and _flags(vid, "tissue_consolidation").tolist() == [False] * 3 + [True] * 3
    lay, frame = vid.layers[0], vid.frames[0].astype(float)
    fluid = (lay["effusion"] > 0.9) & vid.geom.inside & (lay["shadow"] < 0.5)
    above = (lay["rel"] > 0.05) & (lay["effusion"] < 0.01) & vid.geom.inside & (lay["shadow"] < 0.5)
    assert fluid.sum() > 300 and frame[fluid].mean() < frame[above].mean() - 25   # anechoic
    assert (vid.masks[0][fluid] == 0).all() and vid.labels[0] == 0     # effusion does not change the score
    none = _video("pneumonia", [2] * 3, findings=_fp(effusion_prob=0.0))
    assert not _flags(none, "effusion").any()
    # frequencies over many plans follow the params
    from lus.synth.plan import make_plan
    rate = {d: np.mean([make_plan(np.random.default_rng([i, 7]), d, 8, 20, 0.2, 2).effusion is not None
                        for i in range(300)]) for d in ("pneumonia", "covid", "healthy")}
    f = FindingParams.default()
    assert abs(rate["pneumonia"] - f.effusion_prob) < 0.09 and abs(rate["covid"] - f.effusion_prob_covid) < 0.05 \
        and rate["healthy"] == 0.0, rate


def _lateral_shift(a: np.ndarray, b: np.ndarray, max_s: int = 8) -> int:
    """Column shift (px) of ``b`` that best matches ``a`` (correlation)."""
    scores = [np.corrcoef(a[:, max_s + s:a.shape[1] - max_s + s].ravel(), b[:, max_s:b.shape[1] - max_s].ravel())[0, 1]
              for s in range(-max_s, max_s + 1)]
    return int(np.argmax(scores)) - max_s


def test_healthy_a_lines_sliding_and_no_disease_findings():
    vid = _video("healthy", [0] * 34 + [1] * 6)
    assert _flags(vid, "a_lines").all() and not _flags(vid, "b_lines")[:34].any()
    for name in ("light_beam", "pleura_irregular", "subpleural_consolidation", "tissue_consolidation",
                 "air_bronchogram", "effusion", "white_lung"):
        assert not _flags(vid, name).any(), name
    # lung sliding, in pixels: the lung speckle just below the pleura moves sideways, the chest wall does not
    t0, t1 = int(np.argmin(vid.plan.slide)), int(np.argmax(vid.plan.slide))
    r, c = int(vid.pleura_rows[t0]), vid.geom.width // 2
    lung = [vid.frames[t][r + 3:r + 12, c - 30:c + 30].astype(float) for t in (t0, t1)]
    wall = [vid.frames[t][r - 14:r - 4, c - 30:c + 30].astype(float) for t in (t0, t1)]
    assert abs(_lateral_shift(*lung) - _lateral_shift(*wall)) >= 2


def test_npz_records_findings_consistent_with_diagnosis_and_masks(tiny):
    from lus.synth.render import FINDINGS
    cfg, df, out = tiny
    seen = {d: np.zeros(len(FINDINGS), bool) for d in ("covid", "pneumonia", "healthy")}
    for rec in df.itertuples():
        z = np.load(out / rec.frame_labels)
        assert z["finding_names"].tolist() == list(FINDINGS)
        flags = z["findings"].astype(bool)
        assert z["findings"].dtype == np.uint8 and flags.shape == (rec.n_frames, len(FINDINGS))
        col = {n: flags[:, i] for i, n in enumerate(FINDINGS)}
        cons = col["subpleural_consolidation"] | col["tissue_consolidation"]
        assert (z["labels"][cons] >= 2).all()
        np.testing.assert_array_equal(col["b_lines"], (z["masks"] == 2).any(axis=(1, 2)))
        seen[rec.diagnosis] |= flags.any(axis=0)
    only = {"covid": {"tissue_consolidation", "air_bronchogram"},
            "pneumonia": {"light_beam", "pleura_irregular", "subpleural_consolidation", "white_lung"},
            "healthy": set(FINDINGS) - {"a_lines", "b_lines"}}
    for diag, forbidden in only.items():
        assert not any(seen[diag][FINDINGS.index(n)] for n in forbidden), diag
    assert seen["healthy"][FINDINGS.index("a_lines")]


def test_output_identical_for_any_worker_count(tiny, tmp_path):
    cfg, _, out = tiny
    generate(dataclasses.replace(cfg, workers=1), seed=0, out_dir=tmp_path / "one", progress=False)
    a, b = _files(out), _files(tmp_path / "one")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_finding_params_validated():
    for bad in ({"covid_subpleural": 0}, {"light_beam_width": 0.5}, {"bronchogram_motion": -0.1},
                {"effusion_prob_covid": 1.5}):
        with pytest.raises(ParamsError):
            SyntheticSection.from_dict(bad)
    fp = FindingParams.from_section(SyntheticSection.from_dict({"bronchogram_strength": 0.9}))
    assert fp.bronchogram_strength == 0.9
