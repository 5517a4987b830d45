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
