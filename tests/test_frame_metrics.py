"""Frame metrics: drop-K transition filter, annotator agreement filters, flat metric dict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lus.metrics.frame import (
    agreement_keep_mask, classification_metrics, confusion_rows, frame_metrics, setting_masks, transition_keep_mask,
)


def test_drop_k_removes_k_frames_each_side_of_each_boundary():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
    #             0  1  2  3  4  5  6  7  8  9 10 11 ; boundaries b = 4 and b = 10
    assert transition_keep_mask(y, 1).tolist() == [1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1]
    assert transition_keep_mask(y, 3).tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert transition_keep_mask(np.array([2, 2, 2]), 7).all()
    # boundary near the start is clipped
    assert transition_keep_mask(np.array([0, 1, 1, 1, 1]), 2).tolist() == [0, 0, 0, 1, 1]


def test_agreement_masks():
    labels = np.array([0, 1, 2, 3])
    ann = np.array([[0, 1, 2, 3],
                    [0, 1, 2, 2],
                    [0, 1, 1, 2],
                    [0, 0, 1, 2]])
    # agreement counts: 4, 3, 2, 1
    assert agreement_keep_mask(labels, ann, 3).tolist() == [True, True, False, False]
    assert agreement_keep_mask(labels, ann, None).tolist() == [True, False, False, False]


def _table():
    rows = []
    # video a: score 1, labels 0 0 1 1 1 1, predictions all 1
    for i, y in enumerate([0, 0, 1, 1, 1, 1]):
        rows.append(("a", 0, i, y, 1, 1))
    # video b: score 3, labels 3 3 2 2, predictions 3 3 3 2
    for i, (y, p) in enumerate([(3, 3), (3, 3), (2, 3), (2, 2)]):
        rows.append(("b", 1, i, y, 3, p))
    df = pd.DataFrame(rows, columns=["video_id", "fold", "frame_index", "label", "weak_label", "pred"])
    probs = np.eye(4)[df.pop("pred").to_numpy()]
    for c in range(4):
        df[f"p{c}"] = probs[:, c]
    return df


def test_setting_masks_on_hand_made_sequences():
    df = _table()
    ann = {"a": np.array([[0, 0, 1, 1, 1, 1]] * 3 + [[0, 1, 1, 1, 1, 0]]),
           "b": np.array([[3, 3, 2, 2]] * 2 + [[3, 2, 3, 2]] * 2)}
    m = setting_masks(df, ann)
    assert m["regular"].all()
    assert m["drop_k1"].tolist() == [1, 0, 0, 1, 1, 1] + [1, 0, 0, 1]
    assert m["video_ann"].tolist() == [0, 0, 1, 1, 1, 1] + [1, 1, 0, 0]
    assert m["a3"].tolist() == [1, 1, 1, 1, 1, 1] + [1, 0, 0, 1]
    assert m["a4"].tolist() == [1, 0, 1, 1, 1, 0] + [1, 0, 0, 1]


def test_frame_metrics_keys_and_values():
    df = _table()
    out = frame_metrics(df)
    assert out["pooled.regular.accuracy"] == pytest.approx(7 / 10)
    assert out["pooled.regular.n"] == 10
    assert out["fold0.regular.accuracy"] == pytest.approx(4 / 6)
    assert out["fold1.regular.accuracy"] == pytest.approx(3 / 4)
    assert out["pooled.drop_k1.accuracy"] == pytest.approx(5 / 6)
    assert out["pooled.video_ann.accuracy"] == pytest.approx(6 / 6)
    assert "pooled.a3.accuracy" not in out  # no annotators given
    assert out["weak_label.pooled.accuracy"] == pytest.approx(9 / 10)
    assert out["pooled.confusion.0_1"] == 2 and out["pooled.confusion.2_3"] == 1
    assert out["pooled.regular.recall_0"] == 0.0 and out["pooled.regular.recall_3"] == 1.0
    assert all(isinstance(v, float) for v in out.values())
    # unlabelled frames are ignored
    df.loc[0, "label"] = -1
    assert frame_metrics(df)["pooled.regular.n"] == 9


def test_classification_metrics_micro_f1_is_accuracy():
    from sklearn.metrics import f1_score

    y = np.array([0, 1, 2, 3, 3, 2, 1])
    p = np.array([0, 2, 2, 3, 1, 2, 1])
    res = classification_metrics(y, p)
    assert res["accuracy"] == pytest.approx(f1_score(y, p, average="micro"))
    assert res["f1_weighted"] == pytest.approx(f1_score(y, p, average="weighted"))


def test_confusion_rows_fall_back_to_weak_labels():
    df = _table()
    rows = confusion_rows(df)
    assert list(rows.columns) == ["actual", "predicted"] and len(rows) == 10
    df["label"] = -1
    rows = confusion_rows(df)
    assert rows["actual"].tolist() == [1] * 6 + [3] * 4
