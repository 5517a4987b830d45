"""Determinism: the same seed gives the same numbers and the same files, and every model records the seed
and library versions it was made with (lus.runtime.provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lus.io import write_torch
from lus.runtime import provenance
from tests.helpers import make_tiny_repo, run_cmd


def test_write_torch_is_byte_identical_for_identical_weights(tmp_path):
    """torch.save to a path names the inner archive after the (random temporary) file name; write_torch
    must not, or DVC would see a changed model.pt after every identical rerun."""
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    write_torch(tmp_path / "a" / "model.pt", state)
    write_torch(tmp_path / "b" / "other_name.pt", state)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "other_name.pt").read_bytes()
    back = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert torch.equal(back["w"], state["w"]) and [p.name for p in (tmp_path / "a").iterdir()] == ["model.pt"]


def test_provenance_records_seed_versions_and_world_size(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = provenance(7, torch.device("cpu"))
    assert info["seed"] == 7 and info["torch"] == torch.__version__ and info["world_size"] == 1
    assert {"python", "numpy", "torchvision", "pandas", "scikit_learn", "opencv", "lus", "cpu_threads"} <= set(info)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert provenance(7)["world_size"] == 2


# --------------------------------------------------------------------------------------- whole pipeline
@pytest.fixture(scope="module")
def second_run(tmp_path_factory) -> Path:
    """A second, independent copy of the tiny pipeline (same seed), run from scratch."""
    repo = make_tiny_repo(tmp_path_factory.mktemp("proj_again"))
    run_cmd(["dvc", "repro"], repo)
    return repo


def _files(repo: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.glob(pattern))


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_models(tiny_repo, second_run):
    metrics = _files(tiny_repo, "metrics/*.json")
    assert metrics and metrics == _files(second_run, "metrics/*.json")
    for rel in metrics:
        assert (tiny_repo / rel).read_text() == (second_run / rel).read_text(), f"{rel} differs between two runs"
    # every trained model, bit for bit (frame models, segmentation, CNN-LSTM), and the stage tables
    weights = _files(tiny_repo, "models/**/model.pt")
    assert len(weights) >= 6 and weights == _files(second_run, "models/**/model.pt")
    tables = (_files(tiny_repo, "models/aggregator/*.csv") + _files(tiny_repo, "models/cnn_lstm/*/predictions.csv")
              + ["data/splits/folds.json", "data/frames/index.csv", "data/raw/manifest.csv"])
    for rel in weights + tables:
        assert (tiny_repo / rel).read_bytes() == (second_run / rel).read_bytes(), f"{rel} differs between two runs"
    pd.testing.assert_frame_equal(pd.read_parquet(tiny_repo / "data/predictions/frames.parquet"),
                                  pd.read_parquet(second_run / "data/predictions/frames.parquet"))
    # every output of every stage (not only the weights: meta.json, curve.csv, checkpoints hold no timings),
    # hence DVC records the same hashes in both runs and retraining on unchanged inputs reruns nothing downstream
    lock_a, lock_b = (yaml.safe_load((r / "dvc.lock").read_text())["stages"] for r in (tiny_repo, second_run))
    assert lock_a.keys() == lock_b.keys()
    differing = [f"{stage}: {a['path']}" for stage in lock_a
                 for a, b in zip(lock_a[stage].get("outs", []), lock_b[stage].get("outs", [])) if a != b]
    assert not differing, f"outputs differ between two identical runs: {differing}"


@pytest.mark.slow
def test_every_model_records_seed_and_versions(tiny_repo):
    seed = yaml.safe_load((tiny_repo / "params.yaml").read_text())["base"]["seed"]
    metas = {}
    for k in (0, 1):
        metas[f"frame fold {k}"] = (tiny_repo / f"models/frame/fold_{k}/meta.json", seed + k)
        metas[f"cnn_lstm fold {k}"] = (tiny_repo / f"models/cnn_lstm/fold_{k}/meta.json", seed + k)
        metas[f"aggregator fold {k}"] = (tiny_repo / f"models/aggregator/fold_{k}.json", seed)
    for arch in ("unet", "deeplabv3plus"):
        metas[f"segmentation {arch}"] = (tiny_repo / f"models/segmentation/{arch}/meta.json", seed)
    metas["segmentation ensemble"] = (tiny_repo / "models/segmentation_ensemble/meta.json", seed)
    for name, (path, expected_seed) in metas.items():
        prov = json.loads(path.read_text()).get("provenance")
        assert prov, f"{name}: no provenance in {path}"
        assert prov["seed"] == expected_seed, f"{name}: seed {prov['seed']} != {expected_seed}"
        assert prov["torch"] == torch.__version__ and prov["world_size"] == 1, name
        assert {"python", "numpy", "torchvision", "lus", "cpu_threads"} <= set(prov), name
