"""DVC stage ``prepare``: one validated manifest of the configured data source -> data/raw/.

``synthetic`` renders the built-in dataset into data/raw/synthetic/ (deterministic from base.seed);
the real sources are read in place under ``data.root`` and only the manifest is written, so no
licensed video is ever copied into the project.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lus.config.base import load_section
from lus.config.data import BaseSection, DataSection
from lus.data.manifest import validate_manifest
from lus.data.sources.registry import import_real_source
from lus.io import atomic_dir, write_csv, write_json
from stages._cli import run, stage_parser


def main(args: argparse.Namespace) -> None:
    seed = load_section(BaseSection, args.params).seed
    data = load_section(DataSection, args.params)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        if data.source == "synthetic":
            from lus.config.synthetic import SyntheticSection
            from lus.data.sources.synthetic import generate

            cfg = load_section(SyntheticSection, args.params)
            rows = generate(cfg, seed=seed, out_dir=tmp / "synthetic")
            manifest = validate_manifest(rows, tmp / "synthetic", source="synthetic generator")
            root = (out / "synthetic").as_posix()
        else:
            root_path = Path(data.root)
            manifest = import_real_source(data.source, root_path, data.manifest)
            # Keep the root as the user wrote it (relative to the project) so runs stay portable.
            root = data.root if not root_path.is_absolute() else os.path.normpath(data.root)
        write_csv(tmp / "manifest.csv", manifest)
        write_json(tmp / "source.json", {"source": data.source, "root": root})
    n_pat = manifest["patient_id"].nunique()
    print(f"prepare: {len(manifest)} videos from {n_pat} patients (source={data.source}, root={root})")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/raw")
    return parser


if __name__ == "__main__":
    run(main, build_parser())
