"""Speed of the uninorm aggregator (vectorised balanced-tree reduction), CPU.

    .venv/bin/python benchmarks/bench_aggregator.py [--repeats 20] [--json out.json]

Reports the time to aggregate one 1,000-frame video (plan building included, forward only, and
forward + backward), the throughput in videos/s for a batch of ICLUS-like videos (38-590 frames),
one full-batch training step on 58 such videos, and the naive recursive Python reference for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np
import torch

from lus.models.uninorm import aggregate, build_plan, reference_aggregate, single_thread, video_loss


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(repeats: int = 20, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    dt = torch.float64
    res: dict[str, float] = {"torch_threads_used": 1.0}
    x1000 = torch.tensor(rng.dirichlet(np.full(4, 0.5), 1000), dtype=dt)
    e = torch.tensor([0.07, 0.12, 0.16, 0.09], dtype=dt)
    with single_thread():
        with torch.no_grad():
            res["ms_1000_frames_forward_incl_plan"] = _median_ms(lambda: aggregate(x1000, build_plan([1000]), e), repeats)
            plan1000 = build_plan([1000])
            res["ms_1000_frames_forward_cached_plan"] = _median_ms(lambda: aggregate(x1000, plan1000, e), repeats)
            res["ms_build_plan_1000"] = _median_ms(lambda: build_plan([1000]), repeats)

        def fwd_bwd() -> None:
            p = e.clone().requires_grad_(True)
            aggregate(x1000, plan1000, p).sum().backward()

        res["ms_1000_frames_forward_backward"] = _median_ms(fwd_bwd, repeats)

        lengths = rng.integers(38, 591, 256)
        xb = torch.tensor(rng.dirichlet(np.full(4, 0.5), int(lengths.sum())), dtype=dt)
        with torch.no_grad():
            ms = _median_ms(lambda: aggregate(xb, build_plan(lengths), e), max(3, repeats // 4))
        res["batch_videos"] = float(len(lengths))
        res["batch_frames"] = float(lengths.sum())
        res["ms_batch_forward"] = ms
        res["videos_per_s"] = len(lengths) / (ms / 1e3)
        res["frames_per_s"] = float(lengths.sum()) / (ms / 1e3)

        lengths58 = rng.integers(38, 591, 58)
        x58 = torch.tensor(rng.dirichlet(np.full(4, 0.5), int(lengths58.sum())), dtype=dt)
        plan58 = build_plan(lengths58)
        q = torch.softmax(torch.randn(58, 4, dtype=dt), 1)
        param = torch.nn.Parameter(torch.zeros(4, dtype=dt))
        opt = torch.optim.Adam([param], lr=0.01)

        def step() -> None:
            opt.zero_grad()
            video_loss(aggregate(x58, plan58, param), q).sum().backward()
            opt.step()

        res["ms_train_step_58_videos"] = _median_ms(step, repeats)
    row = x1000[:, 0].tolist()
    start = time.perf_counter()
    reference_aggregate(row, 0.07)
    res["ms_naive_python_reference_1000_frames_one_class"] = 1e3 * (time.perf_counter() - start)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    res = run(args.repeats)
    for k, v in res.items():
        print(f"{k:50s} {v:12.3f}")
    if args.json:
        from lus.io import write_json

        write_json(args.json, res)


if __name__ == "__main__":
    main()
