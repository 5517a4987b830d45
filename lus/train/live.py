"""Per-epoch training metrics in DVCLive's format, so ``dvc exp show`` and ``dvc plots`` see them.

Layout of a log folder (DVCLive's own): ``metrics.json`` (the last logged epoch's values and
``"step"``) and ``plots/metrics/<name>.tsv`` (columns ``step``, ``<name>``; one row per epoch, step =
epoch - 1; a ``<prefix>`` such as ``fold_0/`` becomes a sub-folder). dvc.yaml declares
``metrics.json`` as a stage ``metrics:`` output and ``plots/metrics`` as a ``plots:`` output (``x: step``).

Identical runs write identical bytes (the files are DVC outputs): no timestamps (DVCLive adds one only
with ``log_metric(timestamp=True)``), no wall times, no params file, no HTML report, no ``dvc.yaml`` of
its own (``dvcyaml=None``) and no experiment commit (``save_dvc_exp=False``; ``dvc exp run`` records
the experiment itself). Opening the log empties the folder's previous DVCLive files, and
:func:`lus.train.loop.fit` replays the epochs of a resumed checkpoint first, so an interrupted and
resumed run writes the same files as an uninterrupted one. Only rank 0 of a DDP run opens a log.
The per-epoch ``curve.csv`` stays: it is the one-table-per-run file the evaluate stage and the tests
read; this log is the view for DVC's tools. Cost: ~0.3 s to open (DVCLive looks up the DVC repo),
~1 ms per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class EpochLog:
    """A DVCLive ``Live`` in ``directory`` that logs rows of :func:`lus.train.loop.fit`'s history.

    Every call leaves complete files (``metrics.json`` is rewritten after each epoch), so there is
    nothing to close: ``Live.end()`` would only notify DVC Studio and the VS Code extension.
    """

    def __init__(self, directory: str | Path) -> None:
        from dvclive import Live  # imported here: only training stages on rank 0 pay for it

        self.directory = Path(directory)
        self.live = Live(str(self.directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        (self.directory / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # declared even if no epoch ran
        self.live.make_summary()  # metrics.json exists from the start ({} until an epoch is logged)

    def log_epoch(self, row: Mapping[str, Any], prefix: str = "") -> None:
        """Log one history row (``epoch`` 1-based plus float metrics) at step ``epoch - 1``."""
        self.live.step = int(row["epoch"]) - 1
        for name, value in row.items():
            if name != "epoch":
                self.live.log_metric(f"{prefix}{name}", float(value))
        self.live.make_summary()


def open_epoch_log(directory: str | Path | None) -> EpochLog | None:
    """The log of a training stage's ``--live`` folder on rank 0; None without a folder or on other ranks."""
    from lus.train.distributed import dist_env

    return EpochLog(directory) if directory and dist_env().is_main else None


def replay_histories(directory: str | Path | None, histories: Mapping[str, list[Mapping[str, Any]]]) -> None:
    """Log the history rows of several runs (name -> rows, e.g. ``fold_0``) to one log, names ``<name>/...``.

    For stages that train their folds in parallel processes (:mod:`lus.parallel`): one DVCLive log cannot
    be shared between processes, so the parent writes it from the finished histories, in the given order.
    Nothing without a folder or off rank 0; an empty log when no run logged an epoch.
    """
    log = open_epoch_log(directory)
    if log is None:
        return
    for name, rows in histories.items():
        for row in rows:
            log.log_epoch(row, f"{name}/")
