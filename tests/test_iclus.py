"""ICLUS frame predictions: pickle safety, xlsx join, folds, and (when present) the real files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lus.cli import main as cli_main
from lus.config.aggregator import paper_config
from lus.data import iclus
from lus.data.folds import make_patient_folds
from lus.data.iclus import (
    PINNED_SHA256, PickleTrustError, convert_iclus, join_iclus, load_frame_predictions, read_xlsx, sha256_file,
)
from lus.evaluation.iclus import iclus_videos
from lus.train.aggregator import run_folds

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ICLUS = SHARED / "iclus-frame-predictions"


class _Evil:
    """Unpickling this object would call os.system / create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "frame_predictions.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    return path, marker


def test_pickle_refused_without_trust_flag(tmp_path: Path) -> None:
    path, marker = _evil_pickle(tmp_path)
    with pytest.raises(PickleTrustError, match="--trust-pickle"):
        load_frame_predictions(path)
    assert not marker.exists()


def test_wrong_sha_refused_even_with_flag(tmp_path: Path) -> None:
    path, marker = _evil_pickle(tmp_path)
    with pytest.raises(PickleTrustError, match="SHA-256"):
        load_frame_predictions(path, trust_pickle=True)
    assert not marker.exists()


def test_allow_list_blocks_code_even_if_checksum_matched(tmp_path: Path) -> None:
    path, marker = _evil_pickle(tmp_path)
    with pytest.raises(PickleTrustError, match="posix.system|os.system|not one of"):
        load_frame_predictions(path, trust_pickle=True, expected_sha256=sha256_file(path))
    assert not marker.exists()


def test_cli_refuses_without_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _, marker = _evil_pickle(src)
    _write_xlsx(src, pd.DataFrame({"Video": [1], "Score": [0]}),
                pd.DataFrame({"Video": [1], "hospital": ["H"], "patient": ["P"], "filename": ["f"]}))
    code = cli_main(["iclus-convert", "--src", str(src), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "--trust-pickle" in err and "arbitrary code" in err
    code = cli_main(["iclus-convert", "--trust-pickle", "--src", str(src), "--out", str(tmp_path / "out")])
    assert code == 1 and "SHA-256" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out" / "frames.parquet").exists()


def _write_xlsx(folder: Path, annotations: pd.DataFrame, mapping: pd.DataFrame) -> None:
    annotations.to_excel(folder / "video_annotations.xlsx", index=False, engine="openpyxl")
    mapping.to_excel(folder / "video_annotations_to_video_names.xlsx", index=False, engine="openpyxl")


def _fake_preds() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for hosp, pat, fname, n in [("Lucca", "Paziente 1", "convex_a.mat", 4), ("Brescia", "Paziente 1", "convex_b.mat", 3),
                                ("Brescia", "Paziente 2", "linear_c.mat", 2)]:
        for pos in rng.permutation(n):
            rows.append({"hospital": hosp, "patient": pat, "filenames": fname, "frame_pos": int(pos),
                         "ground_truth": int(pos % 4), "scores": list(rng.dirichlet(np.ones(4))), "prediction": 0})
    return pd.DataFrame(rows)


def test_xlsx_read_and_join(tmp_path: Path) -> None:
    ann = pd.DataFrame({"Video": [1, 2, 3, 4], "Score": [2, 0, 3, 1]})
    mapping = pd.DataFrame({"Video": [1, 2, 3, 4], "hospital": ["No Covid Data", "Brescia", "Brescia", "X"],
                            "patient": ["Paziente 1", "Paziente 1", "Paziente 2", "Paziente 9"],
                            "filename": ["convex_a", "convex_b", "linear_c", "convex_norm1"]})
    _write_xlsx(tmp_path, ann, mapping)
    a = read_xlsx(tmp_path / "video_annotations.xlsx")
    m = read_xlsx(tmp_path / "video_annotations_to_video_names.xlsx")
    assert a["Score"].tolist() == [2, 0, 3, 1] and m["filename"].tolist()[-1] == "convex_norm1"
    split = pd.DataFrame({"patient_hash": ["h1"], "hospital": ["No Covid Data"], "patient": ["Paziente 1"],
                          "split": ["train"]})
    frames, videos = join_iclus(_fake_preds(), a, m, split)
    assert len(frames) == 9 and len(videos) == 3  # the annotated video without frames is dropped
    v = videos.set_index("video_id")
    # hospital/patient from the pickle, not from the xlsx
    assert v.loc["convex_a", "hospital"] == "Lucca" and v.loc["convex_a", "hospital_xlsx"] == "No Covid Data"
    assert v.loc["convex_a", "patient_id"] == "Lucca_Paziente_1" and v.loc["convex_a", "video_score"] == 2
    assert v.loc["convex_a", "frame_model_split"] == "train"
    a_frames = frames[frames["video_id"] == "convex_a"]
    assert a_frames["frame_index"].tolist() == [0, 1, 2, 3] and (a_frames["weak_label"] == 2).all()
    np.testing.assert_allclose(frames[["p0", "p1", "p2", "p3"]].sum(1), 1.0)
    with pytest.raises(ValueError, match="no score"):
        join_iclus(_fake_preds(), a, m[m["filename"] != "linear_c"])
    with pytest.raises(FileNotFoundError):
        read_xlsx(tmp_path / "missing.xlsx")


def _fake_videos(n_patients: int = 13) -> pd.DataFrame:
    rows = []
    for p in range(n_patients):
        for j in range(1 + p % 3):
            rows.append({"video_id": f"v{p}_{j}", "patient_id": f"P{p:02d}", "video_score": (p + j) % 4})
    return pd.DataFrame(rows)


def test_folds_deterministic_and_patient_wise() -> None:
    videos = _fake_videos()
    a = make_patient_folds(videos, 5, seed=0)
    b = make_patient_folds(videos.sample(frac=1, random_state=3), 5, seed=0)  # row order does not matter
    assert a == b
    assert make_patient_folds(videos, 5, seed=1) != a
    tests = [p for f in a["folds"] for p in f["test"]]
    assert sorted(tests) == sorted(videos["patient_id"].unique())  # each patient in exactly one test fold
    for f in a["folds"]:
        assert not set(f["train"]) & set(f["test"]) and f["val"] == []
        assert f["train"] == sorted(f["train"]) and f["test"] == sorted(f["test"])
    with pytest.raises(ValueError):
        make_patient_folds(videos, 50)


def test_run_folds_on_fake_data() -> None:
    rng = np.random.default_rng(1)
    videos = _fake_videos()
    rows = []
    for vid, pid, y in videos[["video_id", "patient_id", "video_score"]].itertuples(index=False):
        alpha = np.full(4, 0.5)
        alpha[y] += 2
        for t, p in enumerate(rng.dirichlet(alpha, 15)):
            rows.append({"video_id": vid, "patient_id": pid, "frame_index": t, **{f"p{c}": p[c] for c in range(4)}})
    folds = make_patient_folds(videos, 3, seed=0)
    cfg = paper_config("product")
    tables, fits = run_folds(iclus_videos(pd.DataFrame(rows), videos), folds, {"product": cfg, "min": paper_config("min")})
    assert len(tables) == 3 and sum(len(t) for t in tables) == len(videos)
    assert {"pred_uninorm_product", "pred_uninorm_min", "pred_majority", "agg_min_3"} <= set(tables[0].columns)
    assert fits["min"][0]["method"] == "grid" and fits["product"][0]["method"] == "adam"


def test_paper_config() -> None:
    cfg = paper_config()
    assert (cfg.tnorm, cfg.off_diagonal, cfg.use_sord, cfg.zero_score_gap, cfg.lr, cfg.epochs, cfg.lr_gamma,
            cfg.init_neutral, cfg.earlystop) == ("product", "min", True, 0.5, 0.01, 30, 1.0, 0.0, "last")


# ------------------------------------------------------------------------------------------ real data

needs_iclus = pytest.mark.skipif(not (ICLUS / "frame_predictions.pkl").is_file(),
                                 reason=f"ICLUS frame predictions not found at {ICLUS}")


@pytest.mark.real_data
@needs_iclus
def test_pinned_sha_matches_shared_file() -> None:
    assert sha256_file(ICLUS / "frame_predictions.pkl") == PINNED_SHA256


@pytest.mark.real_data
@needs_iclus
def test_real_conversion_counts_and_sanity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "iclus"
    summary = convert_iclus(ICLUS, out, trust_pickle=True)
    assert summary["counts"] == {"videos": 58, "patients": 27, "hospitals": 6, "frames": 14311}
    assert summary["video_scores"] == {"0": 15, "1": 12, "2": 15, "3": 16}
    assert summary["hospital_name_mismatch_frames"] == 2598
    assert summary["frames_per_hospital"]["Brescia"] == 8885
    assert (out / ".gitignore").read_text().strip().endswith("*")
    frames, videos = iclus.load_iclus(out)
    assert frames["label"].value_counts().sort_index().tolist() == [3939, 2012, 6038, 2322]
    acc = (frames[["p0", "p1", "p2", "p3"]].to_numpy().argmax(1) == frames["label"]).mean()
    assert acc == pytest.approx(0.647, abs=5e-4)
    # pooled baselines (METHODS §2.9)
    from lus.metrics.video import video_metrics
    from lus.data.video_set import VideoSet
    from lus.models.video_baselines import baseline_predictions

    vs = VideoSet.from_frames(frames, dict(zip(videos["video_id"], videos["video_score"])))
    pred = baseline_predictions(vs)
    f1 = {k: round(100 * video_metrics(vs.labels, pred[k])["f1_weighted"], 1)
          for k in ("argmax_mean", "max_argmax", "majority")}
    assert f1 == {"argmax_mean": 53.2, "max_argmax": 46.9, "majority": 54.6}
    # converted once: a second call does not touch the pickle
    monkeypatch.setattr(iclus, "load_frame_predictions", lambda *a, **k: pytest.fail("pickle loaded again"))
    assert convert_iclus(ICLUS, out, trust_pickle=False)["skipped"] is True
    assert json.loads((out / "source.json").read_text())["inputs_sha256"]["frame_predictions.pkl"] == PINNED_SHA256
