"""Peak memory of frame extraction for a video and for the same video 10x longer.

Usage (from the project root)::

    python benchmarks/bench_memory.py                                  # first covid-blues video
    python benchmarks/bench_memory.py --video path/to/clip.mp4 --repeat 10

The long video is the clip played ``--repeat`` times, written with OpenCV (MJPG) to a temporary folder.
Each extraction runs in a fresh process that reports its own peak resident set size (ru_maxrss), so
the two measurements do not share an allocator history. Extraction streams: a decoded frame is cropped
and downscaled at once, so the peak should not grow with the video length beyond the small output
array (height x width bytes per kept frame).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_predict import write_clip  # same folder: benchmarks/ is on sys.path when run as a script

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO_DIR = PROJECT.parent / "shared" / "data" / "covid-blues" / "lus_videos"


def child(video: str, out_dir: str) -> None:
    """Run one extraction and print its peak RSS (this process only) as JSON."""
    from lus.config.extract import ExtractSection
    from lus.data.extract import VideoJob, extract_video

    row = extract_video(VideoJob("bench", Path(video)), ExtractSection(), Path(out_dir), threads=1)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": int(row["n_frames"]), "peak_mib": peak_mib}))


def measure(video: Path, out_dir: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(video), str(out_dir)], capture_output=True,
                          text=True, cwd=PROJECT)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="a video (default: first covid-blues video)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    video = args.video or min(DEFAULT_VIDEO_DIR.glob("*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        long_video = Path(tmp) / "long.avi"
        write_clip(video, long_video, 1, 1)
        short = measure(long_video, Path(tmp))  # re-encoded once too, so both use the same codec
        write_clip(video, long_video, args.repeat, 1)
        long = measure(long_video, Path(tmp))
    print(f"extraction peak RSS: {short['peak_mib']:.0f} MiB for {short['frames']} frames, "
          f"{long['peak_mib']:.0f} MiB for {long['frames']} frames ({args.repeat}x longer; "
          f"ratio {long['peak_mib'] / short['peak_mib']:.2f})")


if __name__ == "__main__":
    main()
