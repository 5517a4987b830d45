"""The aggregator's evaluation protocols (METHODS §2.7) and the repeated-seed comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lus.cli import main as cli_main
from lus.config.aggregator import paper_config
from lus.data.folds import PROTOCOLS, protocol_folds
from lus.data.video_set import VideoSet
from lus.evaluation.seeds import seed_comparison
from lus.train.aggregator import run_folds


def _videos(n_patients: int = 12) -> pd.DataFrame:
    rows = []
    for p in range(n_patients):
        for j in range(1 + p % 3):
            rows.append({"video_id": f"v{p}_{j}", "patient_id": f"P{p:02d}", "video_score": (p + j) % 4,
                         "frame_model_split": "test" if p % 4 == 0 else "train"})
    return pd.DataFrame(rows)


def _frames(videos: pd.DataFrame, seed: int = 1, signal: float = 1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for vid, pid, y in videos[["video_id", "patient_id", "video_score"]].itertuples(index=False):
        alpha = np.full(4, 0.5)
        alpha[y] += signal
        for t, p in enumerate(rng.dirichlet(alpha, int(rng.integers(6, 20)))):
            rows.append({"video_id": vid, "patient_id": pid, "frame_index": t, **{f"p{c}": p[c] for c in range(4)}})
    return pd.DataFrame(rows)


def _set(videos: pd.DataFrame, signal: float = 1.5) -> VideoSet:
    return VideoSet.from_frames(_frames(videos, signal=signal), dict(zip(videos["video_id"], videos["video_score"])))


def test_leave_one_out_protocols_hold_out_each_unit_once() -> None:
    videos = _videos()
    lopo = protocol_folds(videos, "lopo")
    assert lopo["group_key"] == "patient_id" and lopo["protocol"] == "lopo"
    assert [f["test"] for f in lopo["folds"]] == [[p] for p in sorted(videos["patient_id"].unique())]
    for f in lopo["folds"]:
        assert f["test"][0] not in f["train"] and len(f["train"]) == videos["patient_id"].nunique() - 1
    lovo = protocol_folds(videos, "lovo")
    assert lovo["group_key"] == "video_id" and len(lovo["folds"]) == len(videos)
    assert sorted(v for f in lovo["folds"] for v in f["test"]) == sorted(videos["video_id"])


def test_lovo_trains_on_the_same_patients_other_videos() -> None:
    """Leave-one-video-out: the held-out video's patient still has videos in training (that is the protocol)."""
    videos = _videos()
    allv = _set(videos)
    folds = protocol_folds(videos, "lovo")
    tables, fits = run_folds(allv, folds, {"product": paper_config("product")})
    assert [t["video_id"].tolist() for t in tables] == [f["test"] for f in folds["folds"]]
    k = next(i for i, f in enumerate(folds["folds"]) if f["test"] == ["v2_0"])   # patient P02 has 3 videos
    assert fits["product"][k]["n_train_videos"] == len(videos) - 1
    assert fits["product"][k]["n_test_videos"] == 1


def test_traintest_uses_the_split_column_and_refuses_bad_values() -> None:
    videos = _videos()
    doc = protocol_folds(videos, "traintest")
    assert len(doc["folds"]) == 1 and doc["group_key"] == "video_id"
    assert doc["folds"][0]["test"] == sorted(videos.loc[videos["frame_model_split"] == "test", "video_id"])
    assert not set(doc["folds"][0]["test"]) & set(doc["folds"][0]["train"])
    bad = videos.assign(frame_model_split=videos["frame_model_split"].where(videos.index != 3, ""))
    with pytest.raises(ValueError, match="'frame_model_split' must be 'train' or 'test'.*v"):
        protocol_folds(bad, "traintest")
    with pytest.raises(ValueError, match="unknown protocol 'loo'"):
        protocol_folds(videos, "loo")
    assert PROTOCOLS == ("kfold", "traintest", "lopo", "lovo")


def test_seed_comparison_counts_and_intervals() -> None:
    videos = _videos(15)
    res = seed_comparison(_set(videos, signal=0.3), list(range(6)), {"product": paper_config("product")}, n_folds=3)
    assert res["seeds"] == list(range(6)) and res["n_videos"] == len(videos)
    methods = list(res["summary"])
    assert "uninorm_product" in methods and "argmax_mean" in methods
    for a in methods:
        s = res["summary"][a]
        eps = 1e-12   # the mean of equal values can differ from them in the last bit
        assert s["ci_low"] - eps <= s["mean"] <= s["ci_high"] + eps
        assert s["pooled_ci_low"] - eps <= s["pooled_mean"] <= s["pooled_ci_high"] + eps
        for b in methods:
            if a != b:   # every seed is a win for one side or a tie
                assert res["wins"][a][b] + res["wins"][b][a] + res["ties"][a][b] == 6
    # training-free baselines see the same videos whatever the folds: pooled metric constant across seeds
    assert len(set(res["per_seed"]["argmax_mean"]["pooled"])) == 1
    # the uninorm is refitted per fold: its pooled metric depends on the fold seed
    assert len(set(res["per_seed"]["uninorm_product"]["pooled"])) > 1
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_comparison(_set(videos), [0], {"product": paper_config("product")})


def test_iclus_table_cli_protocols(tmp_path: Path, capsys) -> None:
    videos = _videos()
    data = tmp_path / "iclus"
    data.mkdir()
    _frames(videos).to_parquet(data / "frames.parquet", index=False)
    videos.to_csv(data / "videos.csv", index=False)
    n_test = int((videos["frame_model_split"] == "test").sum())
    for protocol, n_folds, n_tested in (("traintest", 1, n_test), ("lopo", 12, len(videos)),
                                        ("lovo", len(videos), len(videos))):
        out = tmp_path / protocol
        assert cli_main(["iclus-table", "--data", str(data), "--out", str(out), "--protocol", protocol,
                         "--tnorms", "product"]) in (0, None)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_folds"] == n_folds and metrics["n_videos"] == n_tested
        assert json.loads((out / "folds.json").read_text())["protocol"] == protocol
        assert f"--protocol {protocol}" in (out / "table.md").read_text()
    out = tmp_path / "seeds"
    assert cli_main(["aggregator-seeds", "--iclus", str(data), "--out", str(out), "--seeds", "3",
                     "--n-folds", "3", "--tnorms", "product"]) in (0, None)
    assert "| uninorm_product |" in (out / "seeds.md").read_text()
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [0, 1, 2]


def test_pipeline_protocols_cli(tmp_path: Path, capsys) -> None:
    """`lus aggregator-protocols` on pipeline files: leave-one-patient-out holds each patient out once,
    traintest is the pipeline's fold 0, and the table names the protocol and the data."""
    from lus.data.manifest import MANIFEST_COLUMNS

    videos = _videos()
    frames = _frames(videos)
    frames["fold"] = 0
    frames.to_parquet(tmp_path / "frames.parquet", index=False)
    manifest = videos[["video_id", "patient_id", "video_score"]].assign(path=videos["video_id"] + ".avi")
    manifest = manifest.reindex(columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    patients = sorted(videos["patient_id"].unique())
    (tmp_path / "folds.json").write_text(json.dumps({"folds": [
        {"train": patients[4:], "val": [], "test": patients[:4]},
        {"train": patients[:4], "val": [], "test": patients[4:]}]}))
    common = ["--frames", str(tmp_path / "frames.parquet"), "--folds", str(tmp_path / "folds.json"),
              "--manifest", str(tmp_path / "manifest.csv")]
    assert cli_main(["aggregator-protocols", *common, "--protocol", "lopo", "--out", str(tmp_path / "lopo")]) == 0
    folds = json.loads((tmp_path / "lopo" / "folds.json").read_text())
    assert [f["test"] for f in folds["folds"]] == [[p] for p in patients]
    metrics = json.loads((tmp_path / "lopo" / "metrics.json").read_text())
    assert metrics["n_videos"] == len(videos) and "uninorm_product" in metrics and "majority" in metrics
    table = (tmp_path / "lopo" / "table.md").read_text()
    assert table.startswith("# Pipeline video scores") and "leave-one-patient-out" in table
    assert "Sanity reference" not in table                     # the ICLUS reference values do not apply here
    assert cli_main(["aggregator-protocols", *common, "--protocol", "traintest", "--out", str(tmp_path / "tt")]) == 0
    split = json.loads((tmp_path / "tt" / "folds.json").read_text())["folds"][0]
    fold0_test = set(videos.loc[videos["patient_id"].isin(patients[:4]), "video_id"])
    assert set(split["test"]) == fold0_test and not set(split["train"]) & fold0_test
    assert "fold 0 of the pipeline's folds.json" in (tmp_path / "tt" / "table.md").read_text()
