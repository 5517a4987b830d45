"""Shared entry-point wrapper of the stage modules: argv parsing and user-facing errors."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from lus.config.base import ParamsError
from lus.data.manifest import ManifestError
from lus.io import WriteError

USER_ERRORS = (ParamsError, ManifestError, FileNotFoundError, ValueError, WriteError)


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def add_fold_data_args(parser: argparse.ArgumentParser) -> None:
    """The inputs every per-fold stage reads: extracted frames, patient-wise folds, video manifest."""
    parser.add_argument("--frames", default="data/frames", help="folder of frame shards + index.csv")
    parser.add_argument("--folds", default="data/splits/folds.json", help="patient-wise folds file")
    parser.add_argument("--manifest", default="data/raw/manifest.csv", help="video manifest (video -> patient)")


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse argv, run ``main`` and turn expected user errors into one clear line and exit code 1."""
    args = parser.parse_args()
    try:
        main(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
