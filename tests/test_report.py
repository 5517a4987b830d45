"""The report is a function of the metrics; metrics files hold numbers only; evaluate names missing inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lus.report.tables import build_report
from stages.evaluate import nest


def _metrics(uninorm_f1: float = 0.61) -> dict:
    frame = {"reg_stn": nest({"pooled.regular.accuracy": 0.9, "pooled.drop_k1.accuracy": 0.92,
                              "pooled.avg.accuracy": 0.91})}
    video = {"n_folds": 5, "n_videos": 50,
             "uninorm": {"f1_weighted_mean": uninorm_f1, "f1_weighted_std": 0.1, "f1_weighted_pooled": 0.6},
             "argmax_mean": {"f1_weighted_mean": 0.5, "f1_weighted_std": 0.05}}
    seg = nest({"applicable": 1, "ensemble.dice_bin_mean": 0.8, "ensemble.dice_bin_std": 0.01,
                "unet.dice_bin_mean": 0.7, "unet.dice_bin_std": 0.02})
    cnn = nest({"accuracy_mean": 0.95, "accuracy_std": 0.03, "covid.recall_mean": 0.9, "covid.recall_std": 0.1})
    return {"frame": frame, "video": video, "segmentation": seg, "cnn_lstm": cnn}


def test_report_follows_the_metrics():
    source = {"source": "synthetic", "root": "data/raw/synthetic"}
    a = build_report(_metrics(0.61), source, ["covid", "pneumonia", "healthy"])
    b = build_report(_metrics(0.42), source, ["covid", "pneumonia", "healthy"])
    assert "| uninorm | 61.0 ± 10.0 |" in a and "| uninorm | 42.0 ± 10.0 |" in b
    assert "SYNTHETIC" in a and "61 ± 12 / 70 ± 19 / 60 ± 7" in a  # published numbers beside ours
    assert "| **ours: reg_stn** | 90.0 | 92.0 |" in a
    assert "0.800 ± 0.010" in a and "0.950 ± 0.030" in a and "0.933 (0.133)" in a
    real = build_report(_metrics(), {"source": "covid-blues", "root": "../shared/data/covid-blues"}, ["0", "1"])
    assert "**Data: covid-blues**" in real and "SYNTHETIC" not in real


def test_table2_says_where_the_aggregator_training_probabilities_came_from():
    from lus.report.tables import table2

    video = _metrics()["video"]
    outer, inner = table2({**video, "inner_cross_fit": 0.0}), table2({**video, "inner_cross_fit": 1.0})
    assert "second-order leak" in outer and "inner cross-fitting" not in outer
    assert "inner cross-fitting" in inner and "second-order leak" not in inner
    assert "second-order leak" in table2(video)   # metrics from before the flag existed: the default


def test_segmentation_not_applicable_is_stated():
    m = _metrics()
    m["segmentation"] = {"applicable": 0.0}
    assert "Not applicable: this data source has no segmentation masks." in build_report(m, {"source": "pocus"}, [])


def _leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    else:
        yield path, node


def test_nest_gives_numeric_leaves():
    tree = nest({"a.b.c": 1, "a.d": 2.5, "e": 3})
    assert tree == {"a": {"b": {"c": 1.0}, "d": 2.5}, "e": 3.0}
    assert all(isinstance(v, float) for _, v in _leaves(tree))


def test_evaluate_names_the_missing_input(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "source.json").write_text(json.dumps({"source": "synthetic", "root": "x"}))
    (tmp_path / "raw" / "manifest.csv").write_text("video_id\n")
    proc = subprocess.run([sys.executable, "-m", "stages.evaluate", "--raw", str(tmp_path / "raw"),
                           "--predictions", str(tmp_path / "nope"), "--metrics", str(tmp_path / "m"),
                           "--plots", str(tmp_path / "p")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "frame_metrics.json is missing (made by stage 'predict_frames'" in proc.stderr
    assert not (tmp_path / "m").exists(), "nothing may be written when an input is missing"


@pytest.mark.parametrize("group", ["frame", "video", "segmentation", "cnn_lstm"])
def test_committed_metrics_are_numeric(group):
    from tests.conftest import PROJECT_ROOT

    path = PROJECT_ROOT / "metrics" / f"{group}.json"
    if not path.is_file():
        pytest.skip(f"{path} not produced yet")
    data = json.loads(path.read_text())
    assert list(data) == [group]
    for key, value in _leaves(data):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{key} is not a number: {value!r}"


def test_cnn_lstm_table_shows_per_class_values_from_nested_metrics():
    from lus.report.tables import table_cnn_lstm

    cnn = {"accuracy_mean": 0.8, "accuracy_std": 0.1,
           "covid": {"precision_mean": 0.91, "precision_std": 0.02, "recall_mean": 0.66, "recall_std": 0.3}}
    text = table_cnn_lstm(cnn, ["covid", "pneumonia", "healthy"])
    covid_row = next(line for line in text.splitlines() if line.startswith("| covid"))
    assert "0.910 ± 0.020" in covid_row and "0.660 ± 0.300" in covid_row


def test_severity_tables_say_not_applicable_without_severity_labels():
    from lus.report.tables import NO_SEVERITY, table1, table2

    assert table1({"reg_stn": {"applicable": 0.0}}) == NO_SEVERITY
    assert table2({"applicable": 0.0}) == NO_SEVERITY
