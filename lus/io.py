"""Atomic file output and small JSON helpers.

Every output of every stage goes through these functions so that an interrupted run never leaves
a half-written file behind: data is written to a temporary file in the same directory, flushed,
fsynced and then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class WriteError(RuntimeError):
    """An output could not be written (disk full, permissions, a folder in the way); names the file.

    Distinct from OSError so that code skipping unreadable *inputs* (``extract.on_error: skip``)
    never swallows it; stages report it as one ``error:`` line.
    """


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` if the block succeeds.

    ``suffix`` defaults to the target's suffix, since some writers (np.savez, cv2.imwrite,
    pandas.to_parquet) choose the format by extension. ``durable=False`` skips the fsync before the
    rename (still atomic for readers); the caller then fsyncs later with :func:`fsync_file`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            fsync_file(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_torch(target: str | Path, obj: Any) -> None:
    """``torch.save`` atomically, byte-identical for identical content.

    Saving to a path names the archive's inner folder after the file, here a random temporary name,
    so the same weights would give different bytes (and DVC hashes) on every run; a file handle
    gives the fixed inner name ``archive``.
    """
    import torch

    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected JSON file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def write_csv(target: str | Path, frame: "Any", **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, **kwargs)


def write_parquet(target: str | Path, frame: "Any") -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npz(target: str | Path, durable: bool = True, **arrays: np.ndarray) -> None:
    """Uncompressed ``.npz`` (loading speed matters more than disk for frame shards); ``durable``
    as in :func:`atomic_path`."""
    with atomic_path(target, suffix=".npz", durable=durable) as tmp:
        np.savez(tmp, **arrays)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in place of ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
