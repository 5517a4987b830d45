"""The generic training loop: learning, exact resume, sampling, epoch selection and outputs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lus.train.loop import (
    TrainConfig, class_balanced_weights, epoch_indices, fit, split_batches,
)
from lus.train.distributed import DistEnv
from lus.train.live import EpochLog


class Blobs:
    """Four Gaussian blobs in 8-d; ``get_batch`` adds per-batch noise from the global torch RNG.

    ``seed`` fixes the blob centres (the task), ``draw`` the points: a validation set is the same task
    with another draw, so it never contains a training point.
    """

    def __init__(self, n: int = 240, seed: int = 0, draw: str = "train") -> None:
        centres = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed)) * 2.0
        g = torch.Generator().manual_seed(1000 * seed + {"train": 1, "val": 2}[draw])
        self.y = torch.arange(n) % 4
        self.x = centres[self.y] + torch.randn(n, 8, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def get_batch(self, idx: torch.Tensor):
        x = self.x[idx]
        return x + 0.1 * torch.randn_like(x), self.y[idx]


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))


def loss_fn(model, batch):
    x, y = batch
    loss = F.cross_entropy(model(x), y)
    return loss, {"ce": loss.detach()}


def accuracy(model, data: Blobs) -> float:
    return float((model(data.x).argmax(1) == data.y).float().mean())


CFG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, weight_decay=1e-4, scheduler="multistep", milestones=[2],
                  sampler="balanced", seed=3, progress=False, select_metric="acc")


def test_learns_and_writes_outputs(tmp_path):
    data, val = Blobs(240, 0), Blobs(80, 0, "val")
    model = make_model()
    res = fit(model, data, loss_fn, tmp_path, CFG, labels=data.y.numpy(),
              evaluate_fn=lambda m: {"acc": accuracy(m, val)})
    assert not (torch.cdist(val.x, data.x) < 1e-6).any()  # held-out points, not the training ones
    assert accuracy(model.eval(), val) > 0.8  # chance is 0.25
    assert res.epochs_run == 4 and 1 <= res.best_epoch <= 4
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert list(curve["epoch"]) == [1, 2, 3, 4]
    assert {"lr", "train_loss", "train_ce", "val_acc"} <= set(curve.columns) and "time_s" not in curve.columns
    assert curve["lr"].iloc[2] == pytest.approx(1e-3)  # milestone 2, gamma 0.1
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["best_epoch"] == res.best_epoch


@pytest.mark.parametrize("extra", [{}, {"scheduler": "warmup_cosine", "warmup_epochs": 1.5, "ema_decay": 0.9}],
                         ids=["multistep", "warmup_cosine_ema"])
def test_resume_after_interrupt_is_bitwise_identical(tmp_path, extra):
    data = Blobs(200, 1)
    cfg = TrainConfig(**{**CFG.to_dict(), "select_metric": "score", **extra})
    ref_model = make_model()
    fit(ref_model, data, loss_fn, tmp_path / "ref", cfg, labels=data.y.numpy(), restore_best=False,
        log=EpochLog(tmp_path / "ref_live"))

    class Interrupt(Exception):
        pass

    def stop_at_2(epoch, _row):
        if epoch == 2:
            raise Interrupt

    model = make_model()
    with pytest.raises(Interrupt):
        fit(model, data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy(), on_epoch_end=stop_at_2,
            log=EpochLog(tmp_path / "run_live"))
    torch.manual_seed(12345)  # a different process state before resuming must not matter
    model2 = make_model()
    res = fit(model2, data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy(), restore_best=False,
              log=EpochLog(tmp_path / "run_live"))
    assert res.resumed_from == 2 and res.epochs_run == 4
    for k, v in ref_model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    assert _tree(tmp_path / "run_live") == _tree(tmp_path / "ref_live")   # the DVCLive log too, byte for byte
    # a finished checkpoint is not retrained
    res2 = fit(make_model(), data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy())
    assert res2.resumed_from == 4 and len(res2.history) == 4


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_epoch_log_is_dvclive_format_without_timings(tmp_path):
    """Per-epoch rows in DVCLive's layout (metrics.json + plots/metrics/<name>.tsv), the same numbers as
    curve.csv, nothing that changes between identical runs; reopening a log starts it afresh."""
    data, val = Blobs(120, 0), Blobs(40, 0, "val")
    runs = []
    for name in ("a", "b"):
        fit(make_model(), data, loss_fn, tmp_path / name, CFG, labels=data.y.numpy(),
            evaluate_fn=lambda m: {"acc": accuracy(m, val)}, log=EpochLog(tmp_path / name / "live"),
            log_prefix="fold_0/")
        runs.append(_tree(tmp_path / name / "live"))
    assert runs[0] == runs[1]                                      # byte-identical reruns
    curve = pd.read_csv(tmp_path / "a" / "curve.csv")
    assert sorted(runs[0]) == ["metrics.json"] + sorted(f"plots/metrics/fold_0/{c}.tsv" for c in curve.columns
                                                        if c != "epoch")
    for column in ("train_loss", "val_acc", "lr"):
        tsv = pd.read_csv(tmp_path / "a" / "live" / "plots" / "metrics" / "fold_0" / f"{column}.tsv", sep="\t")
        assert list(tsv.columns) == ["step", column]                # no timestamp column
        assert tsv["step"].tolist() == [0, 1, 2, 3]
        assert tsv[column].tolist() == curve[column].tolist()
    summary = json.loads(runs[0]["metrics.json"])
    assert summary["step"] == 3 and summary["fold_0"]["val_acc"] == curve["val_acc"].iloc[-1]
    EpochLog(tmp_path / "a" / "live")                              # a new run's log replaces the old files
    assert _tree(tmp_path / "a" / "live") == {"metrics.json": b"{}\n"}


def test_checkpoint_every_n_resumes_exactly_from_the_last_written_epoch(tmp_path):
    data = Blobs(200, 1)
    cfg = TrainConfig(**{**CFG.to_dict(), "select_metric": "score", "epochs": 5})
    ref_model = make_model()
    fit(ref_model, data, loss_fn, tmp_path / "ref", cfg, labels=data.y.numpy(), restore_best=False)

    class Interrupt(Exception):
        pass

    written = []

    def stop_at_3(epoch, _row):
        written.append(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"]
                       if (tmp_path / "run" / "checkpoint.pt").is_file() else 0)
        if epoch == 3:
            raise Interrupt

    every2 = TrainConfig(**{**cfg.to_dict(), "checkpoint_every": 2})
    with pytest.raises(Interrupt):
        fit(make_model(), data, loss_fn, tmp_path / "run", every2, labels=data.y.numpy(), on_epoch_end=stop_at_3)
    assert written == [0, 2, 2]  # epochs 2 (and later 4) and the last one are written, not 1 or 3
    assert len(pd.read_csv(tmp_path / "run" / "curve.csv")) == 3  # the curve still grows every epoch
    model2 = make_model()
    res = fit(model2, data, loss_fn, tmp_path / "run", every2, labels=data.y.numpy(), restore_best=False)
    assert res.resumed_from == 2 and res.epochs_run == 5 and len(res.history) == 5
    for k, v in ref_model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 5  # final one written
    # checkpoint_every is not part of the checkpoint's identity: the plain config resumes it too
    assert fit(make_model(), data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy()).resumed_from == 5


def test_checkpoint_every_zero_writes_no_checkpoint(tmp_path):
    data, val = Blobs(120, 0), Blobs(40, 0, "val")
    cfg = TrainConfig(**{**CFG.to_dict(), "checkpoint_every": 0})
    model = make_model()
    res = fit(model, data, loss_fn, tmp_path, cfg, labels=data.y.numpy(), evaluate_fn=lambda m: {"acc": accuracy(m, val)})
    assert not (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "model.pt").is_file() and len(pd.read_csv(tmp_path / "curve.csv")) == 4
    assert res.resumed_from == 0 and res.epochs_run == 4
    with pytest.raises(ValueError):
        TrainConfig(checkpoint_every=-1)


def test_changed_fingerprint_restarts(tmp_path):
    data = Blobs(64, 2)
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 1})
    fit(make_model(), data, loss_fn, tmp_path, cfg, labels=data.y.numpy(), fingerprint={"fold": 0})
    with pytest.warns(UserWarning, match="starting afresh"):
        res = fit(make_model(), data, loss_fn, tmp_path, cfg, labels=data.y.numpy(), fingerprint={"fold": 1})
    assert res.resumed_from == 0


def test_selection_uses_only_evaluate_fn_and_picks_best(tmp_path):
    data = Blobs(64, 3)
    scores = iter([0.2, 0.9, 0.5, 0.9])
    seen = []

    def evaluate_fn(model):
        seen.append(model.training)
        return {"acc": next(scores)}

    res = fit(make_model(), data, loss_fn, tmp_path, CFG, labels=data.y.numpy(), evaluate_fn=evaluate_fn)
    assert res.best_epoch == 2 and res.best_score == pytest.approx(0.9)  # tie keeps the earlier epoch
    assert seen == [False] * 4  # eval mode


def test_early_stopping(tmp_path):
    data = Blobs(64, 3)
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 10, "patience": 2})
    scores = iter([0.5, 0.4, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    res = fit(make_model(), data, loss_fn, tmp_path, cfg, labels=data.y.numpy(),
              evaluate_fn=lambda m: {"acc": next(scores)})
    assert res.epochs_run == 3 and res.best_epoch == 1


def test_balanced_weights_and_sampling():
    y = [0] * 90 + [1] * 10 + [-1] * 5
    w = class_balanced_weights(y)
    assert w[0].item() == pytest.approx(100 / 90) and w[95].item() == pytest.approx(100 / 10) and w[-1] == 0
    cfg = TrainConfig(sampler="balanced", seed=0, batch_size=10)
    idx = epoch_indices(len(y), 0, cfg, w)
    assert len(idx) == len(y) and (idx < 100).all()
    big = torch.cat([epoch_indices(len(y), e, cfg, w) for e in range(40)])
    share1 = (torch.as_tensor(y)[big] == 1).float().mean().item()
    assert 0.4 < share1 < 0.6
    assert torch.equal(epoch_indices(len(y), 3, cfg, w), epoch_indices(len(y), 3, cfg, w))
    assert not torch.equal(epoch_indices(len(y), 3, cfg, w), epoch_indices(len(y), 4, cfg, w))


def test_distributed_sharding_partitions_each_batch():
    order = torch.arange(37)
    single = split_batches(order, 8, True, DistEnv())
    parts = [split_batches(order, 8, True, DistEnv(rank=r, world_size=2)) for r in range(2)]
    assert len(single) == len(parts[0]) == len(parts[1]) == 4
    for b, p0, p1 in zip(single, *parts):
        assert sorted(torch.cat([p0, p1]).tolist()) == sorted(b.tolist()) and len(p0) == len(p1) == 4
    assert len(split_batches(order, 8, False, DistEnv())) == 5


def test_map_style_dataset_path(tmp_path):
    data = Blobs(64, 4)
    items = [(data.x[i], data.y[i]) for i in range(len(data))]
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 1, "sampler": "shuffle"})
    res = fit(make_model(), items, loss_fn, tmp_path, cfg)
    assert res.epochs_run == 1 and res.best_score is None


def test_warmup_cosine_factor_by_hand():
    from lus.train.loop import warmup_cosine_factor

    # 10 steps, 2 of warm-up from 0.1: 0.1, 0.55, then cosine from 1 down to 0 at step 10
    assert warmup_cosine_factor(0, 10, 2) == pytest.approx(0.1)
    assert warmup_cosine_factor(1, 10, 2) == pytest.approx(0.55)
    assert warmup_cosine_factor(2, 10, 2) == pytest.approx(1.0)
    assert warmup_cosine_factor(6, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine_factor(10, 10, 2, final_ratio=0.2) == pytest.approx(0.2)


def test_weight_ema_averages_floats_and_copies_counters():
    from lus.train.loop import WeightEMA

    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # step 0: decay min(0.5, 1/10) = 0.1 -> 0.1 * 0 + 0.9 * 1
    assert ema.state["0.weight"].item() == pytest.approx(0.9)
    assert ema.state["1.num_batches_tracked"].item() == 7
    ema.update(model)  # step 1: decay min(0.5, 2/11) -> 0.9 * 2/11 + 1 * 9/11
    assert ema.state["0.weight"].item() == pytest.approx(0.9 * 2 / 11 + 9 / 11)


def test_weight_ema_fused_update_equals_the_per_tensor_formula_and_follows_the_module():
    """The fused (foreach) update on cached tensors gives bit for bit avg * d + live * (1 - d) per tensor, keeps
    following the module after in-place updates and load_state_dict, and restarts its cache after loading."""
    from lus.train.loop import WeightEMA

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    ema = WeightEMA(model, decay=0.9)
    ref = {k: v.clone() for k, v in ema.state.items()}
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))          # in place, as optimisers do
        if step == 2:
            model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})   # in-place copies too
        d = ema.decay_at(step)
        ema.update(model)
        for k, v in model.state_dict().items():
            ref[k] = ref[k].mul(d).add(v, alpha=1.0 - d) if ref[k].is_floating_point() else v.clone()
        assert all(torch.equal(ema.state[k], ref[k]) for k in ref), step
    ema.load_state_dict(ema.state_dict())            # new tensors: the cache is rebuilt, not reused
    ema.update(model)
    assert not torch.equal(ema.state["0.weight"], ref["0.weight"])   # it moved towards the live weights


def test_warmup_cosine_lr_per_step_in_fit(tmp_path):
    data = Blobs(64, 4)   # 64 items / batch 16 = 4 steps per epoch
    cfg = TrainConfig(**{**CFG.to_dict(), "scheduler": "warmup_cosine", "warmup_epochs": 1.0, "epochs": 3})
    model = make_model()
    fit(model, data, loss_fn, tmp_path, cfg, labels=data.y.numpy())
    lrs = list(pd.read_csv(tmp_path / "curve.csv")["lr"])   # lr at the start of each epoch
    assert lrs[0] == pytest.approx(1e-3)                     # warmup_start 0.1 x lr 1e-2
    assert lrs[1] == pytest.approx(1e-2)                     # warm-up done after 4 steps
    assert lrs[2] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


def test_ema_weights_are_evaluated_saved_and_resumed(tmp_path):
    data, val = Blobs(200, 1), Blobs(80, 1, "val")
    cfg = TrainConfig(**{**CFG.to_dict(), "ema_decay": 0.9, "scheduler": "warmup_cosine", "warmup_epochs": 0.5})
    seen = []

    def evaluate_fn(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"acc": accuracy(m, val)}

    ref = make_model()
    res = fit(ref, data, loss_fn, tmp_path / "ref", cfg, labels=data.y.numpy(), evaluate_fn=evaluate_fn)
    ckpt = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    ema_state = ckpt["ema"]["state"]
    # validation saw the EMA weights (not the raw ones), model.pt and the returned model are the best EMA weights
    assert all(torch.equal(seen[-1][k], ema_state[k]) for k in ema_state)
    assert any(not torch.equal(ckpt["model"][k], ema_state[k]) for k in ema_state)
    best = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)
    assert all(torch.equal(best[k], seen[res.best_epoch - 1][k]) for k in best)
    assert all(torch.equal(best[k], v) for k, v in ref.state_dict().items())
    assert accuracy(ref.eval(), val) > 0.8

    class Interrupt(Exception):
        pass

    def stop_at_2(epoch, _row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(make_model(), data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy(),
            evaluate_fn=lambda m: {"acc": accuracy(m, val)}, on_epoch_end=stop_at_2)
    model2 = make_model()
    res2 = fit(model2, data, loss_fn, tmp_path / "run", cfg, labels=data.y.numpy(),
               evaluate_fn=lambda m: {"acc": accuracy(m, val)})
    assert res2.resumed_from == 2
    for k, v in ref.state_dict().items():   # resumed EMA run ends bit-identical
        assert torch.equal(v, model2.state_dict()[k]), k


def test_bad_schedule_settings_rejected():
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="onecycle")
