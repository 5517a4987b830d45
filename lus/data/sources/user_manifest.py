"""A user's own videos, described by a CSV in the manifest schema (``lus/data/manifest.py``).

The CSV is returned as written (all cells as strings, header names stripped), *not* reindexed to
``MANIFEST_COLUMNS``: :func:`lus.data.manifest.validate_manifest` must see unknown or misspelt
columns to report them, and it checks types, label ranges, paths inside the data root and
duplicate ids with file/row/column in the message.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lus.data.manifest import ManifestError


def load(path: Path) -> pd.DataFrame:
    """Read the user's manifest CSV at ``path`` (a folder means ``<folder>/manifest.csv``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"manifest CSV not found: {path} (set data.root and data.manifest; "
                                "data.manifest is relative to data.root)")
    if path.suffix.lower() != ".csv":
        raise ManifestError(f"{path}: expected a .csv file (comma-separated, one row per video), got '{path.suffix}'")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the file is empty; expected a header row and one row per video") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and ";" in df.columns[0]:
        raise ManifestError(f"{path}: the header looks semicolon-separated ('{df.columns[0][:60]}'); "
                            "save the file with commas as separators")
    return df
