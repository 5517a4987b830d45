"""Extraction throughput vs the raw OpenCV decode rate of the same videos (the upper limit).

Usage: python benchmarks/bench_extract.py [--root ../shared/data/covid-blues] [--limit 60] [--workers 2]

Raw decode = cv2.VideoCapture.read() of every frame and nothing else, in 1 process and in
``--workers`` processes (the fair limit for the parallel extraction).
Extraction = lus.data.extract.extract_all (decode + grey + sector crop + resize + shard write) with
``--workers`` processes. Both are measured on the same files; extraction runs second so the files
are equally warm in the page cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from concurrent.futures import ProcessPoolExecutor

import cv2

from lus.config.extract import ExtractSection
from lus.data.extract import VideoJob, extract_all


def raw_decode(paths: list[Path]) -> int:
    n = 0
    for path in paths:
        cap = cv2.VideoCapture(str(path))
        while cap.read()[0]:
            n += 1
        cap.release()
    return n


def raw_decode_parallel(paths: list[Path], workers: int) -> int:
    chunks = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(raw_decode, chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/covid-blues")
    parser.add_argument("--limit", type=int, default=0, help="first N videos (0 = all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    paths = sorted(Path(args.root).rglob("*.mp4"))
    if args.limit:
        paths = paths[: args.limit]
    raw_decode(paths[:5])  # warm-up
    t0 = time.perf_counter()
    frames = raw_decode(paths)
    raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw_decode_parallel(paths, args.workers)
    par_s = time.perf_counter() - t0
    cfg = ExtractSection.from_dict({"workers": args.workers})
    jobs = [VideoJob(p.stem, p, None, None) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index, _ = extract_all(jobs, cfg, Path(tmp), progress=False)
        ext_s = time.perf_counter() - t0
    assert int(index["n_decoded"].sum()) == frames
    print(f"videos: {len(paths)}, frames: {frames}")
    print(f"raw OpenCV decode (1 process): {frames / raw_s:8.0f} frames/s ({raw_s:.1f} s)")
    print(f"raw OpenCV decode ({args.workers} processes): {frames / par_s:8.0f} frames/s ({par_s:.1f} s)")
    print(f"extraction ({args.workers} workers):    {frames / ext_s:8.0f} frames/s ({ext_s:.1f} s)"
          f" = {100 * par_s / ext_s:.0f}% of the {args.workers}-process raw decode rate")


if __name__ == "__main__":
    main()
