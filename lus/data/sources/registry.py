"""Build the video manifest from the configured data source (``data.source``).

Each importer returns raw manifest rows; :func:`build_manifest` validates them against the schema
in :mod:`lus.data.manifest` so every source obeys the same contract.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lus.data.manifest import ManifestError, validate_manifest


def import_real_source(source: str, root: Path, manifest_name: str = "manifest.csv") -> pd.DataFrame:
    """Rows of a source that is read in place (never copied): covid-blues, pocus or a user CSV."""
    if not root.is_dir():
        raise FileNotFoundError(f"data.root '{root}' is not a folder (data.source={source})")
    if source == "covid-blues":
        from lus.data.sources import covid_blues

        rows, name = covid_blues.load(root), f"covid-blues importer ({root})"
    elif source == "pocus":
        from lus.data.sources import pocus

        rows, name = pocus.load(root), f"pocus importer ({root})"
    elif source == "manifest":
        from lus.data.sources import user_manifest

        path = root / manifest_name
        rows, name = user_manifest.load(path), str(path)
    else:
        raise ManifestError(f"data.source '{source}' is not read in place; expected covid-blues, pocus or manifest")
    return validate_manifest(rows, root, source=name)
