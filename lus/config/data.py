"""Params sections owned by the data stages: ``base``, ``data``, ``split``."""

from __future__ import annotations

from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof

SOURCES = ("synthetic", "covid-blues", "pocus", "manifest")


@dataclass(frozen=True)
class BaseSection(Section):
    """Shared by every stage on purpose: changing the seed reruns everything."""

    NAME = "base"
    seed: int = bounded(0, 0, 2**31 - 1, "global seed for python, numpy, torch and the split")


@dataclass(frozen=True)
class DataSection(Section):
    NAME = "data"
    source: str = choice("synthetic", SOURCES, "which importer builds the manifest")
    root: str = "data/raw/synthetic"
    # For source=manifest: the user's CSV, relative to ``root`` (paths inside it are relative to root too).
    manifest: str = "manifest.csv"


@dataclass(frozen=True)
class SplitSection(Section):
    NAME = "split"
    # The fold ids double as the ``foreach`` list of the per-fold stages in dvc.yaml, so their
    # number is the number of folds.
    folds: list[int] = listof([0, 1, 2, 3, 4])
    val_fraction: float = bounded(0.2, 0.05, 0.5, "share of each fold's training patients kept for model selection")
    stratify_by: str = choice("auto", ("auto", "video_score", "diagnosis", "none"),
                              "label used to balance folds; auto = diagnosis if known, else video_score")
    # A user's folds file (same format as data/splits/folds.json) that takes precedence; '' = none.
    override: str = ""

    def validate(self) -> None:
        if len(self.folds) < 2:
            raise ParamsError("params key 'split.folds': need at least 2 folds, e.g. [0, 1, 2, 3, 4]")
        if self.folds != list(range(len(self.folds))):
            raise ParamsError(f"params key 'split.folds': expected consecutive ids 0..k-1, got {self.folds}")
