"""PNG versions of the pipeline's plots (DVC's HTML plots need the internet to draw; PNGs do not)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lus.io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_png(rows: pd.DataFrame, classes: Sequence[str], title: str, path: Path) -> None:
    """Confusion matrix (counts, row-normalised colour) from ``actual,predicted`` rows of class indices/names."""
    index = {str(c): i for i, c in enumerate(classes)}
    actual = rows["actual"].astype(str).map(index).to_numpy()
    pred = rows["predicted"].astype(str).map(index).to_numpy()
    k = len(classes)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (actual, pred), 1)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * k + 1.5, 1.2 * k + 1))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def per_fold_bars_png(table: pd.DataFrame, value: str, title: str, path: Path) -> None:
    """Grouped bars: one group per fold, one bar per method (``fold, method, <value>`` rows)."""
    pivot = table.pivot(index="fold", columns="method", values=value)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(pivot)), 3.2))
    pivot.plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(value)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def curves_png(curves: Mapping[str, pd.DataFrame], columns: Sequence[str], title: str, path: Path) -> None:
    """Training curves of several runs (e.g. folds): one panel per column, one line per run."""
    cols = [c for c in columns if any(c in df.columns for df in curves.values())]
    if not cols:
        return
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3), squeeze=False)
    for ax, col in zip(axes[0], cols):
        for name, df in curves.items():
            if col in df.columns:
                ax.plot(df["epoch"], df[col], marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(col, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
