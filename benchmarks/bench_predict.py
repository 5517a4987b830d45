"""Peak memory of ``lus predict`` on a video and on a 10x longer one: it must not grow with length.

Usage (from the project root, after ``dvc repro export`` or with any export folder)::

    python benchmarks/bench_predict.py                         # a synthetic video of the run, x10
    python benchmarks/bench_predict.py --video clip.mp4 --repeat 20 --model models/export

The two test videos are written by this script from the same source clip: its frames once, and the
same frames ``--repeat`` times over, both enlarged ``--scale`` times (so that holding the whole video
would cost hundreds of MB and be obvious) and encoded identically (Motion-JPEG AVI). Each prediction
runs in a fresh Python process (all outputs: annotated video, segmentation video when the export
has segmentation models, CSV, JSON), which reports its own peak resident set size
(``ru_maxrss``); the imports (torch, OpenCV, smp) are most of it. Without ``--model`` and without
``models/export``, the run's models are exported into a temporary folder first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

PROJECT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys
from lus.cli import main
rc = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""

# The same process minus the prediction: imports and model loading, the floor of every run.
BASELINE = """
import resource, sys
import lus.cli, lus.predict.run
from lus.export.bundle import load_bundle
load_bundle(sys.argv[1])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kb(stdout: str) -> int:
    return next(int(line.split()[1]) for line in stdout.splitlines() if line.startswith("PEAK_RSS_KB"))


def baseline_rss(model: Path) -> float:
    """Peak RSS in MB of importing lus predict and loading the export, without predicting."""
    proc = subprocess.run([sys.executable, "-c", BASELINE, str(model)], cwd=PROJECT, capture_output=True, text=True,
                          check=True)
    return _peak_kb(proc.stdout) / 1024.0


def write_clip(source: Path, target: Path, repeat: int, scale: int) -> int:
    """``source``'s frames ``repeat`` times in a row, enlarged ``scale`` times, as MJPG AVI; returns the frame count."""
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    cap.release()
    if not frames:
        raise SystemExit(f"no frames decoded from {source}")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
    for _ in range(repeat):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return len(frames) * repeat


def peak_rss_of_predict(video: Path, model: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``lus predict`` in a fresh process."""
    cmd = [sys.executable, "-c", CHILD, "predict", str(video), "--model", str(model), "--out", str(out),
           "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"lus predict failed on {video}:\n{proc.stderr[-3000:]}")
    return _peak_kb(proc.stdout) / 1024.0, seconds


def ensure_model(model: Path | None, tmp: Path) -> Path:
    if model is not None:
        return model
    if (PROJECT / "models/export/manifest.json").is_file():
        return PROJECT / "models/export"
    from lus.config.base import load_section
    from lus.config.data import BaseSection, SplitSection
    from lus.config.segmentation import SegmentationSection
    from lus.export.package import export_models

    params = PROJECT / "params.yaml"
    seg = load_section(SegmentationSection, params)
    export_models(frame_dir=PROJECT / "models/frame", aggregator_dir=PROJECT / "models/aggregator",
                  segmentation_dir=PROJECT / "models/segmentation", raw_dir=PROJECT / "data/raw",
                  frames_report=PROJECT / "data/frames/report.json", metrics_dir=PROJECT / "metrics",
                  out_dir=tmp / "export", seed=load_section(BaseSection, params).seed,
                  folds=load_section(SplitSection, params).folds, seg_archs=seg.archs, seg_boost=seg.boost,
                  cnn_lstm_dir=PROJECT / "models/cnn_lstm")
    return tmp / "export"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="source clip (default: a synthetic video of the run)")
    parser.add_argument("--model", type=Path, default=None, help="export folder (default: models/export)")
    parser.add_argument("--repeat", type=int, default=10, help="length factor of the long video (default 10)")
    parser.add_argument("--scale", type=int, default=3, help="enlargement of the frames (default 3)")
    args, extra = parser.parse_known_args()
    source = args.video or next(iter(sorted((PROJECT / "data/raw/synthetic/videos").glob("*.avi"))), None)
    if source is None:
        raise SystemExit("no --video given and no synthetic video under data/raw/synthetic/videos (dvc repro prepare)")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp_name:
        tmp = Path(tmp_name)
        model = ensure_model(args.model, tmp)
        rows = []
        for name, repeat in (("short", 1), ("long", args.repeat)):
            clip = tmp / f"{name}.avi"
            n = write_clip(source, clip, repeat, args.scale)
            mb, seconds = peak_rss_of_predict(clip, model, tmp / f"out_{name}", *extra)
            rows.append((name, n, mb, seconds))
        h, w = cv2.VideoCapture(str(tmp / "short.avi")).read()[1].shape[:2]
        print(f"lus predict peak RSS ({w}x{h} frames, model {model}):")
        print(f"  imports + loading the models, no prediction: {baseline_rss(model):7.1f} MB")
        for name, n, mb, seconds in rows:
            print(f"  {name:5s} {n:6d} frames: peak RSS {mb:7.1f} MB, {seconds:6.1f} s ({n / seconds:5.1f} frames/s)")
        growth = rows[1][2] - rows[0][2]
        frame_mb = w * h * 3 / 2**20
        print(f"  growth {growth:+.1f} MB for {rows[1][1] - rows[0][1]} more frames "
              f"(holding them would take {frame_mb * (rows[1][1] - rows[0][1]):.0f} MB)")


if __name__ == "__main__":
    main()
