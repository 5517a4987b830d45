"""2-process DDP: stages/train_frame.py runs unchanged under `torchrun --nproc_per_node 2` (gloo on CPU) and
keeps the single-process contract; only rank 0 writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from lus.config.frame_model import FrameModelSection
from lus.data.frame_dataset import write_toy_shards
from lus.models.frame_models import build_frame_model
from lus.models.frame_models import model_spec
from tests.helpers import PROJECT_ROOT, pipeline_env

# torchrun starts this in every process: the stage module, unchanged, except that ranks other than 0 get
# their own --out and --live folders, so the test can see whether they wrote anything.
RANK_WRAPPER = """
import os, runpy, sys
args = sys.argv[1:]
if os.environ["RANK"] != "0":
    for flag in ("--out", "--live"):
        args[args.index(flag) + 1] += "_rank" + os.environ["RANK"]
sys.argv = ["stages.train_frame", *args]
runpy.run_module("stages.train_frame", run_name="__main__", alter_sys=True)
"""

FRAME = {"arch": "reg_stn", "epochs": 2, "milestones": [1], "batch_size": 16, "input_size": 48, "crop_size": 32,
         "width": 0.25, "num_threads": 1}


def test_train_frame_under_torchrun_keeps_the_contract(tmp_path):
    import stages.train_frame as stage

    paths = write_toy_shards(tmp_path / "toy", n_patients=8, videos_per_patient=2, frames_per_video=16, size=48)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "frame_model": FRAME}))
    common = ["--params", str(params), "--fold", "0", "--frames", str(paths["frames"]), "--folds", str(paths["folds"]),
              "--manifest", str(paths["manifest"]), "--no-progress"]

    stage.main(stage.build_parser().parse_args([*common, "--out", str(tmp_path / "single"),
                                                "--live", str(tmp_path / "live_1")]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--no-python", sys.executable, "-c", RANK_WRAPPER, *common, "--out", str(tmp_path / "ddp"),
                           "--live", str(tmp_path / "live_2")],
                          cwd=PROJECT_ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "ddp_rank1").exists() and not (tmp_path / "live_2_rank1").exists(), "rank 1 wrote files"
    single, ddp = tmp_path / "single" / "fold_0", tmp_path / "ddp" / "fold_0"
    tsvs = [sorted(p.name for p in (tmp_path / d / "plots" / "metrics" / "fold_0").iterdir()) for d in ("live_1", "live_2")]
    assert tsvs[0] == tsvs[1] and "train_loss.tsv" in tsvs[1]     # the DVCLive log, from rank 0 only
    epoch_lines = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == FRAME["epochs"], proc.stderr   # logged by rank 0 only

    # same files, same meta keys, same curve columns as one process; no temporary files left
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir()) == \
        ["checkpoint.pt", "curve.csv", "meta.json", "model.pt"]
    meta_1, meta_2 = (json.loads((d / "meta.json").read_text()) for d in (single, ddp))
    assert meta_1.keys() == meta_2.keys()
    assert meta_2["provenance"]["world_size"] == 2 and meta_1["provenance"]["world_size"] == 1
    assert meta_2["n_train_frames"] == meta_1["n_train_frames"] and meta_2["last_epoch"] == FRAME["epochs"]
    curve_1, curve_2 = pd.read_csv(single / "curve.csv"), pd.read_csv(ddp / "curve.csv")
    assert list(curve_1.columns) == list(curve_2.columns) and len(curve_2) == FRAME["epochs"]
    assert curve_2["val_accuracy"].between(0, 1).all() and curve_2["train_loss"].notna().all()
    # the logged loss is the mean over both ranks' batches: with the same initial weights and the same global
    # batches it matches one process's up to BatchNorm-per-half-batch and dropout noise (a loss summed over
    # ranks, or averaged over one rank's batch count only, is twice as large)
    assert curve_2["train_loss"].iloc[0] == pytest.approx(curve_1["train_loss"].iloc[0], rel=0.1)
    assert curve_2["lr"].tolist() == curve_1["lr"].tolist()

    # the DDP model is a plain state dict (no "module." prefix) that loads into the architecture
    state = torch.load(ddp / "model.pt", weights_only=True)
    assert state.keys() == torch.load(single / "model.pt", weights_only=True).keys()
    model = build_frame_model(model_spec(FrameModelSection.from_dict(FRAME)))
    model.load_state_dict(state)
    ckpt = torch.load(ddp / "checkpoint.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["epoch"] == FRAME["epochs"]   # both ranks' RNG states, for resume

