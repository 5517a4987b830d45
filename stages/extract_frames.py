"""DVC stage ``extract_frames``: every manifest video -> one grey, sector-cropped shard per video.

Writes data/frames/<video_id>.npz, data/frames/index.csv and data/frames/report.json. The whole
folder is built under a temporary name and swapped in at the end, so a failed or killed run never
leaves a partial frame set behind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lus.config.base import load_section
from lus.config.extract import ExtractSection
from lus.data.extract import extract_all, jobs_from_manifest
from lus.data.manifest import read_manifest
from lus.io import atomic_dir, read_json, write_csv, write_json
from stages._cli import run, stage_parser


def main(args: argparse.Namespace) -> None:
    cfg = load_section(ExtractSection, args.params)
    raw = Path(args.raw)
    source = read_json(raw / "source.json")
    manifest = read_manifest(raw / "manifest.csv")
    jobs = jobs_from_manifest(manifest, Path(source["root"]))
    start = time.perf_counter()
    with atomic_dir(args.out) as tmp:
        index, skipped = extract_all(jobs, cfg, tmp, progress=not args.no_progress)
        write_csv(tmp / "index.csv", index)
        seconds = time.perf_counter() - start
        write_json(tmp / "report.json", {
            "videos": len(jobs), "extracted": len(index), "skipped": skipped,
            "frames_decoded": int(index["n_decoded"].sum()), "frames_kept": int(index["n_frames"].sum()),
            "seconds": round(seconds, 2),
        })
    print(f"extract_frames: {len(index)}/{len(jobs)} videos, {int(index['n_frames'].sum())} frames "
          f"in {seconds:.1f} s ({len(skipped)} skipped)")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw", help="folder with manifest.csv and source.json")
    parser.add_argument("--out", default="data/frames")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


if __name__ == "__main__":
    run(main, build_parser())
