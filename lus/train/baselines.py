"""Chance levels and the linear probe of one classification task, on the pipeline's own folds.

A task is a set of items (frames, videos) with a class label, a feature vector and a patient. For every
fold, with the fold's ``train`` / ``val`` / ``test`` patients:

- ``chance_prior``: the most frequent training class, predicted for every test unit;
- ``chance_random``: guesses drawn with the training class frequencies, metrics averaged over draws;
- ``linear_probe``: :func:`lus.train.linear_probe.fit_probe` on the training items, ``C`` chosen on
  the validation items, applied to the test items.

With ``unit`` given (e.g. patient-level COVID detection from video items), labels are constant within a
unit, chance is computed over units, and the probe's item probabilities are averaged per unit before the
argmax. A ``summarise`` callable turns ``{fold: (y_true, y_pred)}`` into the task's metric dict, the same
function the task's real models are summarised with, so every row of a table is computed alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lus.metrics.chance import majority_class, mean_of_trees, random_guesses
from lus.train.linear_probe import fit_probe

Summarise = Callable[[Mapping[int, tuple[np.ndarray, np.ndarray]]], dict[str, Any]]
METHODS = ("chance_prior", "chance_random", "linear_probe")


@dataclass
class Task:
    """Items of one task: ``y`` class index (-1 = unlabelled), ``x`` (N, D) features, ``patient`` per item,
    optional ``unit`` per item (evaluation unit; default: the item itself)."""

    name: str
    classes: list[str]
    y: np.ndarray
    x: np.ndarray
    patient: np.ndarray
    unit: np.ndarray | None = None


def _units(task: Task, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit ids, their labels) of ``rows``, units in first-appearance order."""
    if task.unit is None:
        return rows, task.y[rows]
    ids, first = np.unique(task.unit[rows], return_index=True)
    order = np.argsort(first)
    labels = task.y[rows][first[order]]
    return ids[order], labels


def _unit_predictions(task: Task, rows: np.ndarray, probs: np.ndarray, unit_ids: np.ndarray) -> np.ndarray:
    if task.unit is None:
        return probs.argmax(1)
    units = task.unit[rows]
    return np.array([probs[units == u].mean(0).argmax() for u in unit_ids])


def task_baselines(task: Task, folds: Sequence[Mapping[str, Sequence[str]]], summarise: Summarise, *,
                   c_grid: Sequence[float], score: Callable[[np.ndarray, np.ndarray], float], draws: int,
                   seed: int, max_iter: int = 500, max_train: int | None = None) -> dict[str, dict[str, Any]]:
    """``{method: metrics}`` for :data:`METHODS`; the probe's entry also holds ``C_fold<k>``."""
    n_classes = len(task.classes)
    labelled = task.y >= 0
    rng = np.random.default_rng(seed)
    truth: dict[int, np.ndarray] = {}
    prior: dict[int, np.ndarray] = {}
    probe: dict[int, np.ndarray] = {}
    guesses: dict[int, np.ndarray] = {}
    chosen: dict[str, float] = {}
    for k, fold in enumerate(folds):
        part = {name: np.flatnonzero(labelled & np.isin(task.patient, [str(p) for p in fold[name]]))
                for name in ("train", "val", "test")}
        if len(part["test"]) == 0 or len(part["train"]) == 0:
            continue
        _, train_units_y = _units(task, part["train"])
        test_units, test_y = _units(task, part["test"])
        truth[k] = test_y
        prior[k] = np.full(len(test_y), majority_class(train_units_y, n_classes))
        guesses[k] = random_guesses(train_units_y, len(test_y), n_classes, draws, rng)
        train_rows = part["train"]
        if max_train is not None and len(train_rows) > max_train:  # evenly spread, deterministic
            train_rows = train_rows[np.round(np.linspace(0, len(train_rows) - 1, max_train)).astype(int)]
        fit = fit_probe(task.x[train_rows], task.y[train_rows], task.x[part["val"]], task.y[part["val"]],
                        n_classes, c_grid, score, max_iter)
        probe[k] = _unit_predictions(task, part["test"], fit.predict_proba(task.x[part["test"]]), test_units)
        chosen[f"C_fold{k}"] = fit.c
    if not truth:
        raise ValueError(f"baselines, task {task.name}: no fold has labelled training and test items")
    folds_used = sorted(truth)
    result = {
        "chance_prior": summarise({k: (truth[k], prior[k]) for k in folds_used}),
        "chance_random": mean_of_trees([summarise({k: (truth[k], guesses[k][d]) for k in folds_used})
                                        for d in range(draws)]),
        "linear_probe": summarise({k: (truth[k], probe[k]) for k in folds_used}) | chosen,
    }
    return result
