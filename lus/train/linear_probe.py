"""Linear probe: logistic regression on frozen features, regularisation chosen on validation items.

The transfer baseline of every result table (see :mod:`lus.config.baselines`). Features are standardised
with the training items' mean and std; one multinomial L2 logistic regression (lbfgs) is fitted per
value of ``C`` on the training items, the value with the best validation score is kept (ties: the
smaller ``C``, i.e. the stronger regularisation), and that fit predicts the test items. Without
validation items the middle of the grid is used and the choice is recorded as such.

With fewer training items than feature dimensions (video tasks: tens of videos, thousands of features)
the standardised features are first rotated onto the span of the training items (an SVD basis). The
L2-regularised solution lies in that span (representer theorem) and the rotation keeps L2 norms, so the
classifier is the same, only a few hundred times cheaper to fit.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ProbeFit:
    """A fitted probe: ``predict_proba(x)`` gives (N, n_classes) probabilities over *all* task classes."""

    n_classes: int
    c: float
    val_scores: dict[float, float] = field(default_factory=dict)
    constant: int | None = None          # set when the training items have a single class
    _mean: np.ndarray | None = None
    _scale: np.ndarray | None = None
    _basis: np.ndarray | None = None       # (r, D) orthonormal rows, or None = no projection
    _model: object | None = None

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self._mean) / self._scale
        return z if self._basis is None else z @ self._basis.T

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        out = np.zeros((len(x), self.n_classes))
        if self.constant is not None:
            out[:, self.constant] = 1.0
            return out
        probs = self._model.predict_proba(self.transform(x))
        out[:, self._model.classes_.astype(int)] = probs
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(1)


def _fit_path(z: np.ndarray, y: np.ndarray, grid: Sequence[float], max_iter: int) -> Iterator[tuple[float, object]]:
    """One logistic regression per C of the ascending ``grid``, each started from the previous solution
    (warm start along the regularisation path: the same optima, far fewer solver iterations)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    model = LogisticRegression(C=grid[0], max_iter=max_iter, warm_start=True)
    for c in grid:
        model.set_params(C=c)
        # One BLAS thread: these are small matrices, and OpenBLAS threads spinning against other work on a
        # 2-core machine made each fit 50x slower (measured: 30 s vs 0.6 s for 5 frame-task fits).
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # A probe that has not fully converged is still a valid (slightly more regularised) baseline;
            # the iteration budget is a param.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(z, y)
        yield c, copy.deepcopy(model)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
              c_grid: Sequence[float], score: Callable[[np.ndarray, np.ndarray], float],
              max_iter: int = 500) -> ProbeFit:
    """Fit on the training items for every C, keep the one with the best ``score(y_val, predicted)``."""
    x_train = np.asarray(x_train, np.float64)
    y_train = np.asarray(y_train, np.int64)
    if len(y_train) == 0:
        raise ValueError("linear probe: no training items")
    present = np.unique(y_train)
    if len(present) == 1:
        return ProbeFit(n_classes=n_classes, c=0.0, constant=int(present[0]))  # c = 0: no fit
    mean = x_train.mean(0)
    scale = x_train.std(0)
    scale[scale < 1e-12] = 1.0  # constant feature: leave it at zero after centring
    z = (x_train - mean) / scale
    basis = None
    if len(z) < z.shape[1]:
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        basis = vt[s > s.max() * 1e-10]
        z = z @ basis.T
    grid = sorted(float(c) for c in c_grid)
    if len(y_val) == 0:
        grid = grid[: len(grid) // 2 + 1]  # no validation items: the middle of the grid
    best: ProbeFit | None = None
    scores: dict[float, float] = {}
    for c, model in _fit_path(z, y_train, grid, max_iter):
        fit = ProbeFit(n_classes=n_classes, c=c, _mean=mean, _scale=scale, _basis=basis, _model=model)
        if len(y_val) == 0:
            best = fit
            continue
        scores[c] = float(score(np.asarray(y_val, np.int64), fit.predict(x_val)))
        if best is None or scores[c] > scores[best.c]:
            best = fit
    best.val_scores = scores
    return best
