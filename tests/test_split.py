import json

import numpy as np
import pandas as pd
import pytest

from lus.data.folds import SplitError, check_folds, make_folds


def _videos(n_patients=20, videos_per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        diag = ["covid", "pneumonia", "healthy"][p % 3]
        for v in range(videos_per_patient):
            rows.append({"video_id": f"p{p:02d}_v{v}", "patient_id": f"h{p % 2}_p{p:02d}", "diagnosis": diag,
                         "video_score": int(rng.integers(0, 4))})
    return pd.DataFrame(rows)


def test_no_leakage_and_every_patient_tested_once():
    videos = _videos()
    doc = make_folds(videos, 5, 0.2, seed=0)
    seen = []
    for fold in doc["folds"]:
        tr, va, te = map(set, (fold["train"], fold["val"], fold["test"]))
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == set(videos["patient_id"])
        assert va, "each fold needs validation patients"
        seen += fold["test"]
    assert sorted(seen) == sorted(set(videos["patient_id"]))


def test_stratified_by_diagnosis():
    videos = _videos(30)
    doc = make_folds(videos, 5, 0.2, seed=1)
    assert doc["stratify_by"] == "diagnosis"
    for fold in doc["folds"]:
        test_diag = videos[videos.patient_id.isin(fold["test"])].diagnosis
        assert set(test_diag) == {"covid", "pneumonia", "healthy"}


def test_deterministic_and_seed_dependent():
    videos = _videos()
    a = make_folds(videos, 5, 0.2, seed=3)
    b = make_folds(videos.sample(frac=1, random_state=7), 5, 0.2, seed=3)  # row order must not matter
    c = make_folds(videos, 5, 0.2, seed=4)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


def test_too_few_patients():
    with pytest.raises(SplitError, match="cannot make 5 patient-wise folds from 3"):
        make_folds(_videos(3), 5, 0.2, seed=0)


def test_user_split_that_leaks_or_misses_is_refused():
    videos = _videos(10)
    doc = make_folds(videos, 2, 0.2, seed=0)
    leaky = json.loads(json.dumps(doc))
    leaky["folds"][0]["train"].append(leaky["folds"][0]["test"][0])
    with pytest.raises(SplitError, match="fold 0 leaks patient"):
        check_folds(leaky, videos, "user.json")
    missing = json.loads(json.dumps(doc))
    missing["folds"][1]["train"].remove(missing["folds"][1]["train"][0])
    with pytest.raises(SplitError, match="fold 1 misses patient"):
        check_folds(missing, videos, "user.json")
    with pytest.raises(SplitError, match="has 2 folds but params split.folds lists 5"):
        check_folds(doc, videos, "user.json", n_folds=5)
    unknown = json.loads(json.dumps(doc))
    unknown["folds"][0]["test"].append("ghost")
    with pytest.raises(SplitError, match="not in the data: ghost"):
        check_folds(unknown, videos, "user.json")


def test_unstratified_split_is_patient_wise_seeded_and_balanced():
    """stratify_by none: sklearn's GroupKFold with shuffle; folds must depend on the seed and stay balanced."""
    videos = _videos(20)
    docs = {seed: make_folds(videos, 5, 0.2, seed=seed, stratify_by="none") for seed in range(4)}
    for doc in docs.values():
        assert doc["stratify_by"] == doc["stratify_by_used"] == "none"
        assert doc["stratified"] is False and doc["fallbacks"] == []
        sizes = sorted(len(f["test"]) for f in doc["folds"])
        assert sizes == [4] * 5                      # 20 patients of 3 videos each: 4 test patients per fold
        tested = sorted(p for f in doc["folds"] for p in f["test"])
        assert tested == sorted(set(videos["patient_id"]))
    # shuffle=True with random_state: a different seed gives different folds (plain GroupKFold ignores it)
    assert len({json.dumps(d["folds"]) for d in docs.values()}) == 4


def test_fallback_to_unstratified_split_is_recorded_and_logged(caplog):
    """Every class has fewer videos than folds: StratifiedGroupKFold refuses, the split says so."""
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(6)], "patient_id": [f"p{i}" for i in range(6)],
                           "diagnosis": ["covid", "covid", "pneumonia", "pneumonia", "healthy", "healthy"],
                           "video_score": [0, 1, 2, 3, 0, 1]})
    with caplog.at_level("WARNING", logger="lus.data.folds"):
        doc = make_folds(videos, 3, 0.5, seed=0, stratify_by="diagnosis")
    assert doc["stratify_by"] == "diagnosis" and doc["stratify_by_used"] == "none" and doc["stratified"] is False
    assert doc["fallbacks"][0].startswith("test partitions not stratified by diagnosis: n_splits=3")
    assert any("not stratified by diagnosis" in r.getMessage() for r in caplog.records)
    assert sorted(p for f in doc["folds"] for p in f["test"]) == sorted(videos["patient_id"])
    # a stratifiable table records no fallback
    ok = make_folds(_videos(30), 5, 0.2, seed=1)
    assert ok["stratified"] is True and ok["fallbacks"] == [] and ok["stratify_by_used"] == "diagnosis"


def test_split_stage_prints_the_fallback(tmp_path, capsys):
    import stages.split as stage
    from lus.io import write_csv

    n = 6
    manifest = pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "path": [f"v{i}.avi" for i in range(n)],
                             "patient_id": [f"p{i}" for i in range(n)], "hospital": "h", "probe": "convex",
                             "fps": 10.0, "n_frames": 5, "video_score": [0, 1, 2, 3, 0, 1],
                             "diagnosis": ["covid", "covid", "pneumonia", "pneumonia", "healthy", "healthy"],
                             "covid_positive": "", "frame_labels": "", "masks": ""})
    write_csv(tmp_path / "manifest.csv", manifest)
    write_csv(tmp_path / "index.csv", pd.DataFrame({"video_id": manifest["video_id"]}))
    (tmp_path / "params.yaml").write_text("base: {seed: 0}\nsplit: {folds: [0, 1, 2], val_fraction: 0.5, "
                                          "stratify_by: diagnosis}\n")
    (tmp_path / "user").mkdir()
    stage.main(stage.build_parser().parse_args([
        "--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "manifest.csv"), "--index",
        str(tmp_path / "index.csv"), "--out", str(tmp_path / "folds.json"), "--user-dir", str(tmp_path / "user")]))
    doc = json.loads((tmp_path / "folds.json").read_text())
    assert doc["stratified"] is False and doc["fallbacks"]
    assert "NOT fully stratified by diagnosis" in capsys.readouterr().out
