"""Chance levels of a classification task, from the training labels of the same fold.

Two references, both computed on the fold's *test* items with nothing but the *training* labels:

- ``chance_prior``: always predict the most frequent training class (ties: the lowest class index);
- ``chance_random``: guess each test item's class at random with the training class frequencies. Its
  expected accuracy has a closed form (:func:`expected_random_accuracy`); weighted F1 and the other
  metrics do not, so callers average them over many seeded draws (:func:`random_guesses`,
  :func:`mean_of_trees`).

A model whose score is at or below these has learned nothing usable from the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def class_frequencies(train_labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Share of each class 0..n_classes-1 among the labelled (>= 0) training items."""
    y = np.asarray(train_labels, np.int64)
    y = y[y >= 0]
    if len(y) == 0:
        raise ValueError("chance level: no labelled training items")
    if y.max() >= n_classes:
        raise ValueError(f"chance level: label {int(y.max())} outside 0..{n_classes - 1}")
    return np.bincount(y, minlength=n_classes) / len(y)


def majority_class(train_labels: Sequence[int] | np.ndarray, n_classes: int) -> int:
    """The most frequent training class (lowest index on ties)."""
    return int(np.argmax(class_frequencies(train_labels, n_classes)))


def expected_random_accuracy(train_labels: Sequence[int] | np.ndarray, test_labels: Sequence[int] | np.ndarray,
                             n_classes: int) -> float:
    """E[accuracy] of guessing with the training frequencies p: sum_c q_c p_c, q = test frequencies."""
    p = class_frequencies(train_labels, n_classes)
    q = class_frequencies(test_labels, n_classes)
    return float(np.dot(p, q))


def random_guesses(train_labels: Sequence[int] | np.ndarray, n_test: int, n_classes: int, draws: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(draws, n_test) class indices drawn with the training frequencies."""
    p = class_frequencies(train_labels, n_classes)
    return rng.choice(n_classes, size=(int(draws), int(n_test)), p=p)


def mean_of_trees(trees: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Leaf-wise mean of nested dicts of numbers with the same keys (e.g. one metric summary per draw)."""
    if not trees:
        raise ValueError("mean_of_trees: nothing to average")
    out: dict[str, Any] = {}
    for key, value in trees[0].items():
        if isinstance(value, Mapping):
            out[key] = mean_of_trees([t[key] for t in trees])
        else:
            out[key] = float(np.mean([float(t[key]) for t in trees]))
    return out
