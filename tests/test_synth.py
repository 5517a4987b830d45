"""Tests of the synthetic LUS generator (lus.synth, lus.data.sources.synthetic) on tiny configs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lus.config.base import ParamsError, load_section
from lus.config.synthetic import SyntheticSection
from lus.data.manifest import MANIFEST_COLUMNS, validate_manifest
from lus.data.sources.synthetic import generate
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
    import dataclasses
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
