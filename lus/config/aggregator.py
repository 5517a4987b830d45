"""Params section ``aggregator``: the uninorm video-score aggregator (METHODS.md §2).

Read by the ``train_aggregator`` stage only (plus ``base.seed``). Defaults are the paper's settings
(Roy et al. 2020, Table 2): product t-norm, off-diagonal min, SORD targets with zero-score gap 0.5,
full-batch Adam lr 0.01 for 30 steps with a constant learning rate, neutral elements initialised
to 0, final parameters kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lus.config.base import ParamsError, Section, bounded, choice, listof
from lus.labels import N_SCORES as N_CLASSES

TNORMS = ("product", "lukasiewicz", "min")
OFF_DIAGONAL_RULES = ("min", "mean", "max")
EARLYSTOP_RULES = ("last", "train_loss", "train_acc")


@dataclass(frozen=True)
class AggregatorSection(Section):
    NAME = "aggregator"

    tnorm: str = choice("product", TNORMS, "t-norm/t-conorm pair: product, lukasiewicz or min (Goedel: min/max)")
    off_diagonal: str = choice("min", OFF_DIAGONAL_RULES,
                               "value where one input is above and one below e: min (paper), mean or max")
    use_sord: bool = True
    sord_multiplier: float = bounded(2.0, 0.0, 100.0, "m in phi(y,i) = m (r_y - r_i)^2")
    zero_score_gap: float = bounded(0.5, 0.0, 10.0, "g: position of score 0 is -g (0 = evenly spaced)")
    loss: str = choice("ce", ("ce", "kl"), "soft cross-entropy (paper) or KL(q || softmax(o)) (same gradient)")
    rebalance_scores: bool = False
    # Scalar (same for every class) or one value per class (4 values), each in [0, 1].
    init_neutral: float | list[float] = bounded(0.0, 0.0, 1.0, "initial neutral element(s)")
    lr: float = bounded(0.01, 1e-8, 10.0, "Adam learning rate")
    lr_gamma: float = bounded(1.0, 0.0, 1.0, "MultiStepLR factor (1 = constant learning rate, as in the paper)")
    lr_milestones: list[int] = listof([15, 20, 25], doc="MultiStepLR milestones (epochs)")
    epochs: int = bounded(30, 0, 100000, "number of full-batch Adam steps")
    earlystop: str = choice("last", EARLYSTOP_RULES,
                            "which parameters to keep: last, lowest train loss or best train accuracy")
    # tnorm=min: the output selects one input value, so gradients w.r.t. e vanish; 'grid' chooses e per
    # class by coordinate-wise grid search of the training loss on the training videos, 'none' keeps
    # init_neutral (then e=0 means max over frames, e=1 min over frames).
    min_fit: str = choice("grid", ("grid", "none"), "how to choose e when tnorm=min")
    min_grid_points: int = bounded(101, 2, 10001, "grid points in [0, 1] for min_fit: grid")
    # Where the training videos' frame probabilities come from: 'outer' = the pipeline's out-of-fold table
    # (models of the other folds, which saw this fold's test patients: a second-order leak); 'inner' = the
    # models of stage train_frame_inner, which saw neither (pairwise cross-fitting, K(K-1)/2 extra models).
    cross_fit: str = choice("outer", ("outer", "inner"), "source of the training videos' frame probabilities")

    def validate(self) -> None:
        if isinstance(self.init_neutral, list) and len(self.init_neutral) != N_CLASSES:
            raise ParamsError(f"params key 'aggregator.init_neutral': expected a number or a list of {N_CLASSES} "
                              f"numbers (one per class), got {self.init_neutral!r}")
        if any(m < 0 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(set(self.lr_milestones)):
            raise ParamsError("params key 'aggregator.lr_milestones': expected increasing non-negative epochs, "
                              f"got {self.lr_milestones!r}")

    def neutral_init(self) -> list[float]:
        """``init_neutral`` as one value per class."""
        if isinstance(self.init_neutral, list):
            return [float(v) for v in self.init_neutral]
        return [float(self.init_neutral)] * N_CLASSES


# Exact keys of this section, for the ``params:`` list of the train_aggregator stage in dvc.yaml.
PARAM_KEYS = tuple(f"aggregator.{f.name}" for f in dataclasses.fields(AggregatorSection))


def paper_config(tnorm: str = "product") -> AggregatorSection:
    """The paper's Table 2 settings (SORD, gap 0.5, lr 0.01, 30 epochs, constant lr, init 0, last)."""
    return dataclasses.replace(AggregatorSection(), tnorm=tnorm, off_diagonal="min", use_sord=True,
                               zero_score_gap=0.5, sord_multiplier=2.0, loss="ce", rebalance_scores=False,
                               init_neutral=0.0, lr=0.01, lr_gamma=1.0, lr_milestones=[15, 20, 25], epochs=30,
                               earlystop="last")
