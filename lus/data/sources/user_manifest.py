"""A user's own videos, described by a CSV in the manifest schema (see lus/data/manifest.py).

Paths in the CSV are relative to ``data.root``; validation (types, label ranges, paths inside the
root, duplicate ids) happens in :func:`lus.data.manifest.validate_manifest`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lus.data.manifest import ManifestError


def load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"manifest CSV not found: {path} (set data.root and data.manifest)")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from exc
