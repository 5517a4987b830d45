"""Extraction throughput vs the raw OpenCV decode rate of the same videos (the upper limit).

Usage (from the project root)::

    python benchmarks/bench_extract.py                       # all covid-blues videos, 2 workers
    python benchmarks/bench_extract.py --limit 60 --rounds 5 # a subset, 5 interleaved rounds
    python benchmarks/bench_extract.py --root ../shared/data/pocus/videos

Raw decode = ``cv2.VideoCapture.read()`` of every frame and nothing else, per video, in a process
pool of ``--workers`` spawned processes with the same longest-first scheduling as the extraction
(so both pay the same process start-up). It is measured twice: OpenCV's default FFmpeg threading
and one decoder thread per process; the faster one is the reference. Extraction =
``lus.data.extract.extract_all`` (decode, sector detection, crop, grey, resize, shard write with
fsync) into a temporary folder. Rounds are interleaved (raw, raw, extraction, raw, ...); ratios are
computed within each round (similar machine load) and their median is reported. CPU time (all
processes, user + system) is reported next to wall time: on a busy machine wall time measures the
other jobs as much as this code, while CPU seconds per frame stay comparable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

from lus.config.extract import ExtractSection
from lus.data.extract import VideoJob, extract_all
from lus.data.video import VIDEO_SUFFIXES

PROJECT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def decode_count(path: str, threads: int | None) -> int:
    """Frames decoded by a plain read loop (the raw rate being compared against)."""
    cv2.setNumThreads(1 if threads == 1 else cv2.getNumberOfCPUs())
    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def raw_decode(paths: list[Path], workers: int, threads: int | None) -> tuple[int, float, float, dict]:
    """(frames, wall seconds, CPU seconds, {}) of a plain read loop over ``paths``."""
    start, cpu0 = time.perf_counter(), cpu_seconds()
    if workers <= 1:
        frames = sum(decode_count(str(p), threads) for p in paths)
    else:
        order = sorted(paths, key=lambda p: -p.stat().st_size)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            frames = sum(pool.map(decode_count, [str(p) for p in order], [threads] * len(order)))
    return frames, time.perf_counter() - start, cpu_seconds() - cpu0, {}


def extraction(paths: list[Path], cfg: ExtractSection) -> tuple[int, float, float, dict]:
    """(frames, wall seconds, CPU seconds, report) of extract_all (deleting the shards not counted)."""
    jobs = [VideoJob(f"v{i:04d}", p) for i, p in enumerate(paths)]
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        start, cpu0 = time.perf_counter(), cpu_seconds()
        result = extract_all(jobs, cfg, Path(tmp), progress=False)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return int(result.index["n_decoded"].sum()), seconds, cpu, result.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(PROJECT.parent / "shared" / "data" / "covid-blues"),
                        help="folder searched recursively for videos (default: ../shared/data/covid-blues)")
    parser.add_argument("--limit", type=int, default=0, help="first N videos in name order (0 = all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (ratios per round, median)")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    import pandas  # noqa: F401  (extract_all uses it; imported here so its import is not timed)

    paths = sorted(p for p in Path(args.root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        raise SystemExit(f"no videos under {args.root}")
    cfg = ExtractSection.from_dict({"workers": args.workers, "height": args.height, "width": args.width})
    decode_count(str(paths[0]), None)  # warm the page cache and the libraries

    names = {"raw_default": f"raw decode, {args.workers} processes, default FFmpeg threads",
             "raw_1": f"raw decode, {args.workers} processes, 1 FFmpeg thread each",
             "extract": f"extraction, workers={args.workers}, {args.height}x{args.width}"}
    runs = {"raw_default": lambda: raw_decode(paths, args.workers, None),
            "raw_1": lambda: raw_decode(paths, args.workers, 1),
            "extract": lambda: extraction(paths, cfg)}
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    frames: dict[str, int] = {}
    report: dict = {}
    for _ in range(args.rounds):  # interleaved, so each round's runs see similar machine load
        for key, run in runs.items():
            frames[key], seconds, cpu_s, rep = run()
            wall[key].append(seconds)
            cpu[key].append(cpu_s)
            report = rep or report
    n_single, single_s, single_cpu, _ = raw_decode(paths, 1, None)

    print(f"videos: {len(paths)} under {args.root}; decoded frames: {sorted(set(frames.values()))}; "
          f"rounds: {args.rounds}")
    if len(set(frames.values())) != 1 or n_single != frames["extract"]:
        print("WARNING: frame counts differ between runs")
    n = frames["extract"]
    print(f"  {'best of rounds':<58} {'wall frames/s':>14} {'CPU frames/s':>13}")
    for key, name in names.items():
        print(f"  {name:<58} {n / min(wall[key]):14.0f} {n / min(cpu[key]):13.0f}")
    print(f"  {'raw decode, 1 process, default FFmpeg threads':<58} {n / single_s:14.0f} {n / single_cpu:13.0f}")

    def ratios(times: dict[str, list[float]], raw_keys: tuple[str, ...]) -> list[float]:
        return [min(times[k][r] for k in raw_keys) / times["extract"][r] for r in range(args.rounds)]

    def show(label: str, values: list[float]) -> None:
        print(f"  {label:<58} median {100 * statistics.median(values):5.1f}%   rounds: "
              + ", ".join(f"{100 * v:.1f}%" for v in values))

    print(f"extraction rate / raw {args.workers}-process decode rate (same round):")
    show("wall, vs the faster raw decode of the round", ratios(wall, ("raw_default", "raw_1")))
    show("wall, vs raw decode with 1 FFmpeg thread (same config)", ratios(wall, ("raw_1",)))
    show("CPU, vs the more CPU-efficient raw decode", ratios(cpu, ("raw_default", "raw_1")))
    print(f"crop methods: {report.get('crop_methods')}. CPU frames/s = frames per CPU-second over all "
          "processes; on a shared machine it is the comparable figure, wall time also measures other jobs.")


if __name__ == "__main__":
    main()
