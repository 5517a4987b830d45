"""Video metrics, fold summaries and the training-free baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from lus.metrics.video import METRICS, fold_metrics, summarize_folds, video_metrics
from lus.data.video_set import VideoSet
from lus.models.video_baselines import BASELINES, baseline_predictions


def test_video_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 4, 30)
        p = np.where(rng.random(30) < 0.5, y, rng.integers(0, 4, 30))
        m = video_metrics(y, p)
        assert m["f1_weighted"] == pytest.approx(f1_score(y, p, average="weighted", zero_division=0))
        assert m["precision_weighted"] == pytest.approx(precision_score(y, p, average="weighted", zero_division=0))
        assert m["recall_weighted"] == pytest.approx(recall_score(y, p, average="weighted", zero_division=0))
        assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert m["covid_accuracy"] == pytest.approx(accuracy_score(y > 0, p > 0))


def test_weighted_prf_equals_sklearn_exactly_with_absent_classes() -> None:
    """The numpy version replaces sklearn in the stages (import time): same value to the last bit, also when a
    class is never predicted, only predicted, or absent from both arrays."""
    from lus.metrics.classification import weighted_prf

    rng = np.random.default_rng(1)
    cases = [([0, 0, 1, 3], [0, 3, 3, 3]), ([2, 2, 2], [0, 1, 2]), ([1], [1])]
    cases += [(rng.integers(0, 3, n), rng.integers(0, 4, n)) for n in (5, 12, 40) for _ in range(10)]
    for y, p in cases:
        ours = weighted_prf(y, p)
        theirs = tuple(s(y, p, average="weighted", zero_division=0) for s in (precision_score, recall_score, f1_score))
        assert ours == theirs, (y, p)
    with pytest.raises(ValueError, match="class indices"):
        weighted_prf([0, -1], [0, 0])


def test_video_metrics_hand_values() -> None:
    # y = [0, 0, 1, 3], p = [0, 1, 1, 2]: class 0 P=1 R=.5 F=2/3; class 1 P=.5 R=1 F=2/3; class 3 P=R=F=0
    m = video_metrics([0, 0, 1, 3], [0, 1, 1, 2])
    assert m["recall_weighted"] == pytest.approx(0.5)
    assert m["precision_weighted"] == pytest.approx((2 * 1 + 0.5) / 4)
    assert m["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 / 3) / 4)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["covid_accuracy"] == pytest.approx(0.75)  # 0/0, 0/1 wrong, 1/1, 3/2
    with pytest.raises(ValueError):
        video_metrics([], [])


def _fold_frames(seed: int = 1) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for k, n in enumerate([7, 9, 8]):
        y = rng.integers(0, 4, n)
        frames.append(pd.DataFrame({"video_id": [f"v{k}_{i}" for i in range(n)], "fold": k, "label": y,
                                    "pred_uninorm": np.where(rng.random(n) < .6, y, rng.integers(0, 4, n)),
                                    "pred_argmax_mean": rng.integers(0, 4, n), "agg_0": rng.random(n)}))
    return frames


def test_summarize_folds_mean_std_pooled() -> None:
    frames = _fold_frames()
    s = summarize_folds(frames)
    assert s["n_folds"] == 3 and s["n_videos"] == 24
    assert set(k for k in s if isinstance(s[k], dict)) == {"uninorm", "argmax_mean"}
    for method in ("uninorm", "argmax_mean"):
        per = [video_metrics(f["label"], f[f"pred_{method}"]) for f in frames]
        pooled = pd.concat(frames)
        for metric in METRICS:
            vals = np.array([p[metric] for p in per])
            assert s[method][f"{metric}_mean"] == pytest.approx(vals.mean())
            assert s[method][f"{metric}_std"] == pytest.approx(vals.std(ddof=0))
            assert s[method][f"{metric}_fold1"] == pytest.approx(per[1][metric])
        assert s[method]["f1_weighted_pooled"] == pytest.approx(
            f1_score(pooled["label"], pooled[f"pred_{method}"], average="weighted", zero_division=0))
    # flat numbers only (dvc metrics diff)
    for v in s.values():
        assert isinstance(v, (int, float)) or all(isinstance(x, float) for x in v.values())


def test_summarize_folds_mapping_and_unlabelled() -> None:
    frames = _fold_frames()
    extra = frames[2].copy()
    extra.loc[len(extra)] = {"video_id": "x", "fold": 2, "label": -1, "pred_uninorm": 3, "pred_argmax_mean": 3,
                             "agg_0": 0.5}
    s = summarize_folds({10: frames[0], 11: frames[1], 12: extra})
    ref = summarize_folds(frames)
    assert s["n_videos"] == 24
    assert s["uninorm"]["f1_weighted_fold12"] == pytest.approx(ref["uninorm"]["f1_weighted_fold2"])
    assert s["uninorm"]["f1_weighted_mean"] == pytest.approx(ref["uninorm"]["f1_weighted_mean"])
    with pytest.raises(ValueError):
        summarize_folds([frames[0].iloc[:0]])


def test_fold_metrics_layout() -> None:
    m = fold_metrics(_fold_frames()[0])
    assert m["n_videos"] == 7 and set(m["uninorm"]) == set(METRICS)
    assert fold_metrics(_fold_frames()[0].iloc[:0]) == {"n_videos": 0}


def _videos(*frame_probs: list[list[float]]) -> VideoSet:
    probs = [np.asarray(p, dtype=float) for p in frame_probs]
    n = len(probs)
    return VideoSet([f"v{i}" for i in range(n)], ["p"] * n, [0] * n, [len(p) for p in probs], np.concatenate(probs))


def test_baselines_hand_examples() -> None:
    c0, c1, c2, c3 = np.eye(4)
    soft2 = [0.3, 0.0, 0.35, 0.35]   # argmax 2 (tie 2/3 -> lower class)
    v_a = [c0] * 6 + [c1] * 3 + [c3] * 1          # 10 frames: 60% 0, 30% 1, 10% 3
    v_b = [c1] * 2 + [c2] * 2                     # majority tie 1/2 -> 2
    v_c = [soft2, soft2, [0.5, 0.5, 0, 0]]        # frame argmax 2, 2, 0; mean [.367, .167, .233, .233]
    v_d = [c0] * 19 + [c3]                        # 5% of frames are 3
    out = baseline_predictions(_videos(v_a, v_b, v_c, v_d))
    assert set(out) == set(BASELINES)
    assert out["argmax_mean"].tolist() == [0, 1, 0, 0]
    assert out["max_argmax"].tolist() == [3, 2, 2, 3]
    assert out["majority"].tolist() == [0, 2, 2, 0]
    assert out["threshold_count_5"].tolist() == [3, 2, 2, 3]
    assert out["threshold_count_10"].tolist() == [3, 2, 2, 0]
    assert out["threshold_count_15"].tolist() == [1, 2, 2, 0]


def test_baselines_single_frame_and_empty() -> None:
    out = baseline_predictions(_videos([[0.1, 0.2, 0.6, 0.1]]))
    assert all(v.tolist() == [2] for v in out.values())
    empty = VideoSet([], [], [], [], np.zeros((0, 4)))
    assert all(len(v) == 0 for v in baseline_predictions(empty).values())
