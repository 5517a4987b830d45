"""Extraction throughput vs the raw OpenCV decode rate of the same videos (the upper limit).

Usage (from the project root)::

    python benchmarks/bench_extract.py                       # all covid-blues videos, 2 workers
    python benchmarks/bench_extract.py --limit 60 --rounds 3 # a subset, best of 3 rounds
    python benchmarks/bench_extract.py --root ../shared/data/pocus/videos

Raw decode = ``cv2.VideoCapture.read()`` of every frame and nothing else, per video, in a process
pool of ``--workers`` spawned processes with the same longest-first scheduling as the extraction
(so both pay the same process start-up). It is measured twice: OpenCV's default FFmpeg threading
and one decoder thread per process; the faster one is the reference. Extraction =
``lus.data.extract.extract_all`` (decode, sector detection, crop, grey, resize, shard write with
fsync) into a temporary folder. Rounds are interleaved (raw, raw, extraction, raw, ...) and the best
time of each is kept, which filters out noise from other jobs on a shared machine. CPU time (all
processes, user + system) is reported next to wall time: on a busy machine wall time measures the
other jobs as much as this code, while CPU seconds per frame stay comparable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
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


def raw_decode(paths: list[Path], workers: int, threads: int | None) -> tuple[int, float]:
    start = time.perf_counter()
    if workers <= 1:
        frames = sum(decode_count(str(p), threads) for p in paths)
    else:
        order = sorted(paths, key=lambda p: -p.stat().st_size)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            frames = sum(pool.map(decode_count, [str(p) for p in order], [threads] * len(order)))
    return frames, time.perf_counter() - start


def extraction(paths: list[Path], cfg: ExtractSection) -> tuple[int, float, dict]:
    jobs = [VideoJob(f"v{i:04d}", p) for i, p in enumerate(paths)]
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        start = time.perf_counter()
        result = extract_all(jobs, cfg, Path(tmp), progress=False)
        seconds = time.perf_counter() - start
    return int(result.index["n_decoded"].sum()), seconds, result.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(PROJECT.parent / "shared" / "data" / "covid-blues"),
                        help="folder searched recursively for videos (default: ../shared/data/covid-blues)")
    parser.add_argument("--limit", type=int, default=0, help="first N videos in name order (0 = all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best time counts")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()

    paths = sorted(p for p in Path(args.root).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        raise SystemExit(f"no videos under {args.root}")
    cfg = ExtractSection.from_dict({"workers": args.workers, "height": args.height, "width": args.width})
    decode_count(str(paths[0]), None)  # warm the page cache and the libraries

    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    frames: dict[str, int] = {}
    report: dict = {}
    for _ in range(args.rounds):
        for name, run in ((f"raw decode, {args.workers} processes, default FFmpeg threads",
                           lambda: raw_decode(paths, args.workers, None)),
                          (f"raw decode, {args.workers} processes, 1 FFmpeg thread each",
                           lambda: raw_decode(paths, args.workers, 1)),
                          (f"extraction, workers={args.workers}, {args.height}x{args.width}",
                           lambda: extraction(paths, cfg))):
            cpu0 = cpu_seconds()
            out = run()
            cpu[name] = min(cpu.get(name, float("inf")), cpu_seconds() - cpu0)
            frames[name] = out[0]
            best[name] = min(best.get(name, float("inf")), out[1])
            if len(out) == 3:
                report = out[2]
    single = "raw decode, 1 process, default FFmpeg threads"
    cpu0 = cpu_seconds()
    frames[single], best[single] = raw_decode(paths, 1, None)
    cpu[single] = cpu_seconds() - cpu0

    counts = set(frames.values())
    print(f"videos: {len(paths)} under {args.root}; decoded frames: {sorted(counts)}; rounds: {args.rounds}")
    if len(counts) != 1:
        print("WARNING: frame counts differ between runs")
    print(f"  {'':<58} {'wall frames/s':>14} {'CPU frames/s':>13}")
    for name, seconds in best.items():
        print(f"  {name:<58} {frames[name] / seconds:14.0f} {frames[name] / cpu[name]:13.0f}"
              f"   ({seconds:.1f} s wall, {cpu[name]:.1f} s CPU)")
    raw_names = [n for n in best if n.startswith(f"raw decode, {args.workers} processes")]
    ext_name = next(n for n in best if n.startswith("extraction"))
    raw_wall = min(raw_names, key=lambda n: best[n])
    raw_cpu = min(raw_names, key=lambda n: cpu[n])
    print(f"extraction / best {args.workers}-process raw decode: wall {100 * best[raw_wall] / best[ext_name]:.0f}%, "
          f"CPU {100 * cpu[raw_cpu] / cpu[ext_name]:.0f}%  (crop methods: {report.get('crop_methods')})")
    print("(CPU frames/s = frames per CPU-second over all processes: robust when other jobs share the machine)")


if __name__ == "__main__":
    main()
