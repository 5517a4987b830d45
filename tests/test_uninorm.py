"""Uninorm aggregator: operator identities, tree reduction, SORD, training and the train_aggregator stage."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lus.config.aggregator import PARAM_KEYS, AggregatorSection
from lus.config.base import ParamsError
from lus.data.video_set import VideoSet
from lus.models.losses import sord_targets
from lus.models.uninorm import (
    aggregate, build_plan, class_weights, predict, reference_aggregate, reference_uninorm, uninorm,
)
from lus.train.aggregator import fit_aggregator

ROOT = Path(__file__).resolve().parents[1]
TNORMS = ("product", "lukasiewicz", "min")
RULES = ("min", "mean", "max")
D = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


# ---------------------------------------------------------------------------------------------- operator

@pytest.mark.parametrize("tnorm", TNORMS)
@pytest.mark.parametrize("rule", RULES)
def test_neutral_element_is_neutral(tnorm: str, rule: str) -> None:
    rng = np.random.default_rng(1)
    for e in (0.0, 0.05, 0.3, 0.5, 0.77, 1.0):
        a = torch.tensor(rng.uniform(0, 1, 200), dtype=D)
        a = torch.cat([a, t(0.0, 1.0, e)])
        ee = torch.full_like(a, e)
        assert torch.allclose(uninorm(a, ee, e, tnorm, rule), a, atol=1e-9)
        assert torch.allclose(uninorm(ee, a, e, tnorm, rule), a, atol=1e-9)


@pytest.mark.parametrize("tnorm", TNORMS)
@pytest.mark.parametrize("rule", RULES)
def test_commutative_and_in_unit_interval(tnorm: str, rule: str) -> None:
    rng = np.random.default_rng(2)
    a = torch.tensor(rng.uniform(0, 1, 1000), dtype=D)
    b = torch.tensor(rng.uniform(0, 1, 1000), dtype=D)
    e = torch.tensor(rng.uniform(0, 1, 1000), dtype=D)
    u = uninorm(a, b, e, tnorm, rule)
    assert torch.equal(u, uninorm(b, a, e, tnorm, rule))
    assert (u >= 0).all() and (u <= 1).all()


# hand-computed: e = 0.5; both low (0.2, 0.4) -> e*T(0.4, 0.8); both high (0.6, 0.8) -> e + (1-e)*S(0.2, 0.6)
HAND = {
    "product": (0.5 * 0.32, 0.5 + 0.5 * 0.68),
    "lukasiewicz": (0.5 * 0.2, 0.5 + 0.5 * 0.8),
    "min": (0.2, 0.8),
}


@pytest.mark.parametrize("tnorm", TNORMS)
def test_tnorm_and_tconorm_values(tnorm: str) -> None:
    low, high = HAND[tnorm]
    assert float(uninorm(t(0.2), t(0.4), 0.5, tnorm)) == pytest.approx(low, abs=1e-12)
    assert float(uninorm(t(0.6), t(0.8), 0.5, tnorm)) == pytest.approx(high, abs=1e-12)
    # e = 1: pure t-norm; e = 0: pure t-conorm
    a, b = 0.3, 0.9
    tn = {"product": a * b, "lukasiewicz": max(0.0, a + b - 1), "min": min(a, b)}[tnorm]
    sn = {"product": a + b - a * b, "lukasiewicz": min(1.0, a + b), "min": max(a, b)}[tnorm]
    assert float(uninorm(t(a), t(b), 1.0, tnorm)) == pytest.approx(tn, abs=1e-12)
    assert float(uninorm(t(a), t(b), 0.0, tnorm)) == pytest.approx(sn, abs=1e-12)
    # ties at e: both regions give e
    assert float(uninorm(t(0.5), t(0.5), 0.5, tnorm)) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("rule,expected", [("min", 0.2), ("mean", 0.5), ("max", 0.8)])
@pytest.mark.parametrize("tnorm", TNORMS)
def test_off_diagonal_rules(tnorm: str, rule: str, expected: float) -> None:
    assert float(uninorm(t(0.2), t(0.8), 0.5, tnorm, rule)) == pytest.approx(expected)
    assert float(uninorm(t(0.8), t(0.2), 0.5, tnorm, rule)) == pytest.approx(expected)
    assert reference_uninorm(0.2, 0.8, 0.5, tnorm, rule) == pytest.approx(expected)


def test_unknown_operator_names_raise() -> None:
    with pytest.raises(ValueError):
        uninorm(t(0.2), t(0.3), 0.5, "drastic")
    with pytest.raises(ValueError):
        uninorm(t(0.2), t(0.8), 0.5, "product", "median")


# ---------------------------------------------------------------------------------------------- reduction

@pytest.mark.parametrize("tnorm", TNORMS)
@pytest.mark.parametrize("rule", RULES)
def test_vectorised_reduction_matches_naive_recursion(tnorm: str, rule: str) -> None:
    rng = np.random.default_rng(3)
    lengths = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100, 257] + rng.integers(1, 200, 6).tolist()
    videos = [rng.dirichlet(np.full(4, 0.4), size=n) for n in lengths]
    # put some values exactly on e and exact zeros / ones to exercise ties
    e = np.array([0.0, 0.2, 0.55, 1.0]) if tnorm != "min" else rng.uniform(0, 1, 4)
    videos[3][1, 1] = e[1]
    videos[5][0] = [1.0, 0.0, 0.0, 0.0]
    o = aggregate(torch.tensor(np.concatenate(videos)), build_plan(lengths), torch.tensor(e), tnorm, rule).numpy()
    ref = np.array([[reference_aggregate(v[:, c], e[c], tnorm, rule) for c in range(4)] for v in videos])
    np.testing.assert_allclose(o, ref, rtol=0, atol=1e-12)


def test_tree_shape_is_floor_split() -> None:
    # OD=mean is not associative, so the split point matters: T=3 must be U(x0, U(x1, x2)).
    x, e = [0.9, 0.1, 0.7], 0.5
    u = lambda a, b: reference_uninorm(a, b, e, "product", "mean")  # noqa: E731
    expected = u(x[0], u(x[1], x[2]))
    o = aggregate(torch.tensor(np.tile(np.array(x)[:, None], (1, 4))), build_plan([3]), torch.full((4,), e, dtype=D),
                  "product", "mean")
    assert float(o[0, 0]) == pytest.approx(expected)
    assert expected != pytest.approx(u(u(x[0], x[1]), x[2]))


def test_product_at_zero_is_noisy_or() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, (13, 4))
    o = aggregate(torch.tensor(p), build_plan([13]), torch.zeros(4, dtype=D), "product").numpy()[0]
    np.testing.assert_allclose(o, 1 - np.prod(1 - p, axis=0), atol=1e-12)


def test_plan_rejects_empty_videos() -> None:
    with pytest.raises(ValueError):
        build_plan([3, 0])
    with pytest.raises(ValueError):
        build_plan([])


def test_thousand_frame_video_aggregates_in_milliseconds(monkeypatch) -> None:
    """Speed comes from the plan, not from a fast machine: one vectorised uninorm call per tree level
    (ceil(log2 1000) = 10 calls for a 1000-frame video, each combining every pair of that level, 999 in
    all), never one Python call per pair, and the result equals the naive recursion."""
    module = sys.modules[aggregate.__module__]
    calls: list[int] = []
    real = module.uninorm

    def counting(a, b, *args, **kwargs):
        calls.append(a.numel())
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(module, "uninorm", counting)
    probs = np.random.default_rng(5).dirichlet(np.ones(4), 1000)
    e = torch.full((4,), 0.2, dtype=D)
    plan = build_plan([1000])
    assert len(plan.levels) == 11          # 10 levels of pairs + the leaves
    with torch.no_grad():
        o = aggregate(torch.tensor(probs), plan, e).numpy()[0]
    assert len(calls) == 10 and sum(calls) == 4 * 999     # 4 class rows per call
    np.testing.assert_allclose(o, [reference_aggregate(probs[:, c], 0.2) for c in range(4)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("tnorm", TNORMS)
@pytest.mark.parametrize("rule", RULES)
def test_gradients_are_finite(tnorm: str, rule: str) -> None:
    rng = np.random.default_rng(6)
    lengths = [1, 2, 5, 40]
    x = rng.dirichlet(np.full(4, 0.3), sum(lengths))
    x[:3] = [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]
    for e0 in ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 1e-9, 1 - 1e-9], [x[5, 0], 0.3, 0.0, 1.0]):
        e = torch.tensor(e0, dtype=D, requires_grad=True)
        o = aggregate(torch.tensor(x), build_plan(lengths), e, tnorm, rule)
        loss = -torch.log_softmax(o, 1)[:, 1].sum()
        loss.backward()
        assert torch.isfinite(o).all() and torch.isfinite(e.grad).all(), (tnorm, rule, e0, e.grad)


# ---------------------------------------------------------------------------------------------- targets

def test_sord_targets_match_methods() -> None:
    q = sord_targets([0, 1, 2, 3], zero_gap=0.5, dtype=D).numpy()
    np.testing.assert_allclose(q[0], [0.989, 0.011, 0.0, 0.0], atol=5e-4)
    np.testing.assert_allclose(q[1], [0.0097, 0.872, 0.118, 0.0003], atol=5e-4)
    # y = 2, 3 as in METHODS §1.3 (differences from the gap are below 4e-4)
    np.testing.assert_allclose(q[2], [0.0003, 0.107, 0.787, 0.107], atol=1e-3)
    np.testing.assert_allclose(q[3], [0.0, 0.0003, 0.119, 0.880], atol=1e-3)
    np.testing.assert_allclose(q.sum(1), 1.0)
    q0 = sord_targets([0, 1, 2, 3], zero_gap=0.0, dtype=D).numpy()  # evenly spaced: exactly the §1.3 table
    np.testing.assert_allclose(q0, [[.880, .119, .0003, 0], [.107, .787, .107, .0003],
                                    [.0003, .107, .787, .107], [0, .0003, .119, .880]], atol=1e-3)


def test_class_weights_formula() -> None:
    # n = [2, 1, 4, 2]: w0 = 7/2, wk = 4/n_k
    np.testing.assert_allclose(class_weights([0, 0, 1, 2, 2, 2, 2, 3, 3]), [3.5, 4.0, 1.0, 2.0])


# ---------------------------------------------------------------------------------------------- training

def _toy_videos(n: int = 40, seed: int = 0) -> VideoSet:
    """Frame probabilities that are noisy around the video score, plus a few strong frames of other classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    lengths = rng.integers(20, 80, n)
    probs = []
    for y, T in zip(labels, lengths):
        alpha = np.full(4, 0.6)
        alpha[y] += 1.5
        probs.append(rng.dirichlet(alpha, T))
    return VideoSet([f"v{i:03d}" for i in range(n)], [f"p{i // 2:03d}" for i in range(n)], labels, lengths,
                    np.concatenate(probs))


def test_training_reduces_loss_and_clamps() -> None:
    videos = _toy_videos()
    cfg = AggregatorSection(epochs=40, lr=0.05)
    fit = fit_aggregator(videos, cfg)
    assert fit.method == "adam" and len(fit.curve) == 41
    assert fit.curve[-1]["loss"] < fit.curve[0]["loss"]
    assert all(0.0 <= v <= 1.0 for v in fit.neutral)
    assert fit.neutral != fit.init_neutral
    again = fit_aggregator(videos, cfg)
    assert again.neutral == fit.neutral and again.curve == fit.curve  # deterministic


def test_earlystop_rules() -> None:
    videos = _toy_videos()
    curve = fit_aggregator(videos, AggregatorSection(epochs=20, lr=0.2)).curve
    best_loss = fit_aggregator(videos, AggregatorSection(epochs=20, lr=0.2, earlystop="train_loss"))
    assert best_loss.train_loss == min(c["loss"] for c in curve)
    assert best_loss.neutral == [curve[best_loss.selected_epoch][f"neutral_{c}"] for c in range(4)]
    best_acc = fit_aggregator(videos, AggregatorSection(epochs=20, lr=0.2, earlystop="train_acc"))
    assert best_acc.train_accuracy == max(c["accuracy"] for c in curve)


def test_per_class_init_and_lr_schedule() -> None:
    videos = _toy_videos(12)
    fit = fit_aggregator(videos, AggregatorSection(init_neutral=[0.1, 0.2, 0.3, 0.4], epochs=4, lr=0.01,
                                                   lr_gamma=0.5, lr_milestones=[2]))
    assert fit.curve[0]["neutral_3"] == pytest.approx(0.4)
    assert [c["lr"] for c in fit.curve] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.005])


def test_kl_matches_ce_and_rebalancing_changes_the_fit() -> None:
    videos = _toy_videos(17)  # unbalanced scores
    ce = fit_aggregator(videos, AggregatorSection(epochs=10))
    kl = fit_aggregator(videos, AggregatorSection(epochs=10, loss="kl"))
    np.testing.assert_allclose(kl.neutral, ce.neutral, atol=1e-9)  # same gradient
    balanced = fit_aggregator(videos, AggregatorSection(epochs=10, rebalance_scores=True))
    assert balanced.neutral != ce.neutral
    onehot = fit_aggregator(videos, AggregatorSection(epochs=10, use_sord=False))
    assert onehot.neutral != ce.neutral


def test_off_diagonal_rule_is_used_in_training() -> None:
    videos = _toy_videos(12)
    fits = {r: fit_aggregator(videos, AggregatorSection(epochs=5, init_neutral=0.3, off_diagonal=r)) for r in RULES}
    assert len({tuple(f.neutral) for f in fits.values()}) == 3


def test_min_tnorm_grid_fit_differs_from_product(caplog: pytest.LogCaptureFixture) -> None:
    videos = _toy_videos()
    with caplog.at_level(logging.WARNING, logger="lus.models.uninorm"):
        grid = fit_aggregator(videos, AggregatorSection(tnorm="min"))
    assert any("tnorm=min" in r.message for r in caplog.records)
    fixed = fit_aggregator(videos, AggregatorSection(tnorm="min", min_fit="none"))
    product = fit_aggregator(videos, AggregatorSection())
    assert grid.method == "grid" and fixed.method == "fixed"
    assert fixed.neutral == [0.0] * 4
    assert grid.neutral != fixed.neutral
    assert grid.train_loss < fixed.train_loss
    o_grid, _ = predict(videos, grid.neutral, "min")
    o_fixed, _ = predict(videos, fixed.neutral, "min")
    o_prod, _ = predict(videos, product.neutral, "product")
    assert not np.allclose(o_grid, o_prod) and not np.allclose(o_grid, o_fixed)
    np.testing.assert_allclose(o_fixed, np.maximum.reduceat(videos.probs, videos.offsets, axis=0))  # e=0: max


def test_videoset_orders_frames_by_index() -> None:
    frames = pd.DataFrame({"video_id": ["b", "a", "a", "a", "b"], "patient_id": ["q", "p", "p", "p", "q"],
                           "frame_index": [1, 2, 0, 1, 0],
                           "p0": [0.1, 0.2, 0.0, 0.1, 0.9], "p1": [0.9, 0.8, 1.0, 0.9, 0.1], "p2": 0.0, "p3": 0.0})
    vs = VideoSet.from_frames(frames, {"a": 1, "b": 0})
    assert vs.video_ids == ["a", "b"] and vs.lengths.tolist() == [3, 2] and vs.labels.tolist() == [1, 0]
    np.testing.assert_allclose(vs.probs[:, 0], [0.0, 0.1, 0.2, 0.9, 0.1])
    with pytest.raises(ValueError, match="repeated"):
        VideoSet.from_frames(pd.concat([frames, frames.iloc[:1]]), None)


def test_params_section_validation() -> None:
    assert "aggregator.tnorm" in PARAM_KEYS and "aggregator.NAME" not in PARAM_KEYS
    with pytest.raises(ParamsError, match="aggregator.tnorm"):
        AggregatorSection.from_dict({"tnorm": "drastic"})
    with pytest.raises(ParamsError, match="init_neutral"):
        AggregatorSection.from_dict({"init_neutral": [0.1, 0.2]})
    with pytest.raises(ParamsError, match="init_neutral"):
        AggregatorSection.from_dict({"init_neutral": 1.5})
    assert AggregatorSection.from_dict({"init_neutral": [0, 0.1, 0.2, 0.3]}).neutral_init() == [0, 0.1, 0.2, 0.3]


# ---------------------------------------------------------------------------------------------- stage

def _write_fake_inputs(tmp: Path, tnorm: str = "product") -> dict[str, Path]:
    rng = np.random.default_rng(7)
    n_patients, rows, man = 10, [], []
    for p in range(n_patients):
        for j in range(2):
            vid, y = f"vid_{p}_{j}", (p + j) % 4
            T = int(rng.integers(5, 40))
            alpha = np.full(4, 0.5)
            alpha[y] += 2.0
            probs = rng.dirichlet(alpha, T)
            order = rng.permutation(T)  # rows not in temporal order on disk
            for t_ in order:
                rows.append({"video_id": vid, "patient_id": f"pat{p}", "fold": p % 5, "frame_index": int(t_) * 2,
                             "label": -1, "weak_label": y, **{f"p{c}": probs[t_, c] for c in range(4)}})
            score = "" if (p, j) == (9, 1) else y  # one unlabelled video
            man.append({"video_id": vid, "path": f"videos/{vid}.avi", "patient_id": f"pat{p}", "hospital": "h",
                        "probe": "convex", "fps": 20, "n_frames": T, "video_score": score, "diagnosis": "",
                        "covid_positive": "", "frame_labels": "", "masks": ""})
    paths = {"frames": tmp / "frames.parquet", "folds": tmp / "folds.json", "manifest": tmp / "manifest.csv",
             "params": tmp / "params.yaml", "out": tmp / "models" / "aggregator"}
    pd.DataFrame(rows).to_parquet(paths["frames"], index=False)
    pd.DataFrame(man).to_csv(paths["manifest"], index=False)
    folds = [{"train": [f"pat{p}" for p in range(n_patients) if p % 5 not in (k, (k + 1) % 5)],
              "val": [f"pat{p}" for p in range(n_patients) if p % 5 == (k + 1) % 5],
              "test": [f"pat{p}" for p in range(n_patients) if p % 5 == k]} for k in range(5)]
    paths["folds"].write_text(json.dumps({"seed": 0, "group_key": "patient_id", "folds": folds}))
    paths["params"].write_text(f"base:\n  seed: 3\naggregator:\n  tnorm: {tnorm}\n  epochs: 5\n"
                               "other_section:\n  ignored: 1\n")
    return paths


def _args(paths: dict[str, Path], fold: int) -> list[str]:
    return ["--fold", str(fold), "--params", str(paths["params"]), "--frames", str(paths["frames"]),
            "--folds", str(paths["folds"]), "--manifest", str(paths["manifest"]), "--out", str(paths["out"])]


def _stage(paths: dict[str, Path], fold: int) -> None:
    """Run the stage in-process (a subprocess costs seconds of imports; one test covers the entry point)."""
    from stages.train_aggregator import build_parser, main

    main(build_parser().parse_args(_args(paths, fold)))


def test_train_aggregator_stage_end_to_end(tmp_path: Path) -> None:
    from lus.metrics.video import summarize_folds

    paths = _write_fake_inputs(tmp_path)
    _stage(paths, 4)
    out = paths["out"]
    model = json.loads((out / "fold_4.json").read_text())
    assert len(model["neutral"]) == 4 and len(model["curve"]) == 6
    assert model["params"]["base"]["seed"] == 3 and model["params"]["aggregator"]["epochs"] == 5
    assert model["data"]["n_test_videos"] == 4 and model["data"]["n_test_unlabelled"] == 1
    assert model["data"]["n_train_videos"] == 16 and model["provenance"]["seed"] == 3
    pred = pd.read_csv(out / "fold_4_predictions.csv")
    assert set(pred["patient_id"]) == {"pat4", "pat9"} and (pred["fold"] == 4).all()
    for col in ("pred_uninorm", "pred_argmax_mean", "pred_max_argmax", "pred_majority", "pred_threshold_count_5",
                "pred_threshold_count_10", "pred_threshold_count_15", "agg_0", "agg_3", "label", "video_id"):
        assert col in pred.columns
    assert (pred.loc[pred["video_id"] == "vid_9_1", "label"] == -1).all()
    metrics = json.loads((out / "fold_4_metrics.json").read_text())
    assert metrics["n_videos"] == 3 and 0 <= metrics["uninorm"]["f1_weighted"] <= 1
    _assert_numbers_only(metrics)
    # the same call twice gives identical files (determinism)
    first = (out / "fold_4_predictions.csv").read_text()
    _stage(paths, 4)
    assert (out / "fold_4_predictions.csv").read_text() == first
    # all folds -> summary
    for k in range(4):
        _stage(paths, k)
    summary = summarize_folds([pd.read_csv(out / f"fold_{k}_predictions.csv") for k in range(5)])
    assert summary["n_folds"] == 5 and summary["n_videos"] == 19


def test_train_aggregator_stage_min_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _write_fake_inputs(tmp_path, tnorm="min")
    with caplog.at_level(logging.WARNING):
        _stage(paths, 0)
    assert any("tnorm=min" in r.message for r in caplog.records)
    assert json.loads((paths["out"] / "fold_0.json").read_text())["fit"]["method"] == "grid"
    # entry point: user errors become one line and exit code 1
    res = subprocess.run([sys.executable, "-m", "stages.train_aggregator", *_args(paths, 7)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "error:" in res.stderr and "out of range" in res.stderr
    paths["params"].write_text("base:\n  seed: 0\naggregator:\n  tnorm: drastic\n")
    with pytest.raises(ParamsError, match="aggregator.tnorm"):
        _stage(paths, 0)


def _assert_numbers_only(obj) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _assert_numbers_only(v)
    else:
        assert isinstance(obj, (int, float)) and not isinstance(obj, bool), obj


def test_single_tensor_adam_is_bit_identical_to_torch_adam_with_multisteplr() -> None:
    """The aggregator's own Adam (no TorchDynamo import) must reproduce torch.optim.Adam + MultiStepLR exactly."""
    from lus.train.aggregator import SingleTensorAdam

    target = torch.tensor([0.7, 0.1, 0.4, 0.9], dtype=torch.float64)
    start = torch.tensor([0.0, 0.5, 0.2, 1.0], dtype=torch.float64)
    ref = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([ref], lr=0.05)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 12, 12], gamma=0.5)
    ours = start.clone().requires_grad_(True)
    mine = SingleTensorAdam(ours, 0.05, [5, 12, 12], 0.5)
    for _ in range(30):
        for p in (ref, ours):
            p.grad = None
            (((p - target) ** 3).abs().sum() + p.prod()).backward()
        opt.step()
        sched.step()
        mine.step()
        assert torch.equal(ref.detach(), ours.detach())
        assert mine.lr == opt.param_groups[0]["lr"]
    assert mine.lr == 0.05 * 0.5 ** 3
