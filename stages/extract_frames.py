"""DVC stage ``extract_frames``: every manifest video -> one grey, sector-cropped shard per video.

Reads data/raw/manifest.csv and data/raw/source.json (``root``: the folder the manifest paths are
relative to; a relative root is taken from the current directory, the project root under DVC).
Writes data/frames/<video_id>.npz, data/frames/index.csv and data/frames/report.json. The folder is
built under a temporary name and swapped in at the end, so a failed or killed run leaves the
previous data/frames untouched and no partial output. Params: section ``extract`` only
(extraction is deterministic, so ``base.seed`` is not read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python stages/extract_frames.py): make `stages` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.config.base import load_section  # noqa: E402
from lus.config.extract import ExtractSection  # noqa: E402
from lus.data.extract import extract_all, jobs_from_manifest  # noqa: E402
from lus.io import atomic_dir, read_json, write_csv, write_json  # noqa: E402

# lus.data.manifest and stages._cli import pandas; they are imported where used (main, the entry
# point) because the spawned extraction workers re-import this module, and pandas would add about
# a second to each worker's start-up.


def data_root(raw: Path) -> Path:
    """The data root recorded by the prepare stage in ``source.json``."""
    source = read_json(raw / "source.json")
    if not isinstance(source, dict) or not str(source.get("root", "")).strip():
        raise ValueError(f"{raw / 'source.json'}: expected {{\"source\": ..., \"root\": ...}} with a non-empty root")
    root = Path(source["root"])
    if not root.is_dir():
        raise FileNotFoundError(f"data root '{root}' from {raw / 'source.json'} is not a folder "
                                f"(relative roots are taken from the current directory {Path.cwd()})")
    return root


def main(args: argparse.Namespace) -> None:
    from lus.data.manifest import read_manifest

    cfg = load_section(ExtractSection, args.params)
    raw = Path(args.raw)
    manifest_path = raw / "manifest.csv"
    manifest = read_manifest(manifest_path)
    jobs = jobs_from_manifest(manifest, data_root(raw), source=str(manifest_path))
    with atomic_dir(args.out) as tmp:
        result = extract_all(jobs, cfg, tmp, progress=not args.no_progress)
        write_csv(tmp / "index.csv", result.index)
        write_json(tmp / "report.json", result.report)
    rep = result.report
    print(f"extract_frames: {rep['extracted']}/{rep['videos']} videos, {rep['frames_kept']} frames kept of "
          f"{rep['frames_decoded']} decoded in {result.seconds:.1f} s ({rep['skipped_count']} skipped; "
          f"crop: {rep['crop_methods']}) -> {args.out}")


def build_parser() -> argparse.ArgumentParser:
    from stages._cli import stage_parser

    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw", help="folder with manifest.csv and source.json")
    parser.add_argument("--out", default="data/frames", help="output folder (replaced atomically)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


if __name__ == "__main__":
    from stages._cli import run

    run(main, build_parser())
