"""Generic, resumable, DDP-ready epoch loop used by every training stage (frames, segmentation, CNN-LSTM).

API
---
::

    from lus.train.loop import TrainConfig, fit, unwrap

    cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-4, weight_decay=1e-4,
                      scheduler="multistep", milestones=[20], gamma=0.1,
                      sampler="balanced", seed=0, select_metric="accuracy")

    def loss_fn(model, batch):                 # batch already on the device
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        return loss, {"ce": loss.detach()}     # logs: name -> float/0-d tensor (averaged per epoch)

    def evaluate_fn(model):                    # unwrapped model, eval mode, inside torch.no_grad()
        return {"accuracy": ...}               # VALIDATION patients only; never the test fold

    result = fit(model, dataset, loss_fn, out_dir, cfg, labels=train_labels,
                 evaluate_fn=evaluate_fn, fingerprint={"fold": 0, "params": ...})
    result.best_epoch, result.best_score, result.history   # model now holds the best weights

Dataset protocol
    ``len(dataset)`` items addressed by integer index. Fast path: ``dataset.get_batch(idx: LongTensor)``
    returns one batch (in-memory data, augmentation on whole tensors). Otherwise ``dataset[i]`` items are
    collated with ``collate_fn`` (torch ``default_collate``), optionally in ``num_workers`` DataLoader
    workers. A batch is any nest of tensors / tuples / lists / dicts; tensors are moved to the device.

Sampling (one epoch = ``len(dataset)`` draws, or ``steps_per_epoch * batch_size``)
    ``balanced``: weighted sampling with replacement, weight of item i = N / n_{label_i} (``labels``
    required; items with a negative label are never drawn); ``shuffle``: permutations without
    replacement; ``sequential``. Or pass ``sample_fn(epoch, generator) -> LongTensor`` for a custom
    scheme. The epoch's index order comes from a generator seeded by ``(seed, epoch)`` only, so it
    does not depend on what happened before (needed for exact resume). ``drop_last`` drops the
    incomplete last batch.

Optimiser and schedule
    ``optimizer`` adam | adamw | sgd (momentum), ``lr``, ``weight_decay``; ``scheduler`` none |
    multistep (``milestones``, ``gamma``) | cosine (T_max = epochs), both stepped once per epoch |
    warmup_cosine: stepped after every batch, linear warm-up from ``lr * warmup_start`` to ``lr`` over
    ``warmup_epochs`` (may be fractional), then half a cosine down to ``lr * final_lr_ratio`` at the end of
    the last epoch (short CPU schedules: no lr cliff, no large early steps that upset BatchNorm). Pass
    ``make_optimizer(params) -> Optimizer`` to override (the scheduler is still built from the config).

Weight averaging
    ``ema_decay`` > 0 keeps an exponential moving average of every floating-point entry of the state dict
    (parameters and BatchNorm running statistics), updated after each optimiser step with decay
    ``min(ema_decay, (1 + k) / (10 + k))`` at step k (short warm-up so early epochs are not dominated by
    the random init). Validation, epoch selection, ``model.pt`` and the weights left in ``model`` then use
    the averaged weights; training continues on the raw ones. Smooths the epoch-to-epoch jumps of
    validation accuracy seen with a high learning rate and small batches.

Epoch selection
    ``evaluate_fn(model) -> dict`` runs after every epoch (rank 0; the result is broadcast);
    ``select_metric`` / ``select_mode`` (max|min) pick the best epoch, ties keep the earlier one.
    Without ``evaluate_fn`` the last epoch is selected. ``patience`` > 0 stops early after that
    many epochs without improvement.

Outputs in ``out_dir`` (rank 0 only, all atomic)
    ``checkpoint.pt`` after every ``checkpoint_every``-th epoch and after the last one (default: every epoch):
    model, optimiser, scheduler, EMA weights, completed epochs, best weights and score, history,
    python/numpy/torch(/cuda) RNG states of every rank, config and fingerprint. Loadable with
    ``torch.load(..., weights_only=True)``. ``checkpoint_every=0`` writes no checkpoint at all (runs of a
    few seconds, where ~4 copies of the weights per epoch cost more than a rerun; nothing to resume from).
    ``curve.csv``: one row per epoch (``epoch, lr, train_loss, train_<log>, val_<metric>``; the epoch time
    is only logged, so a rerun with the same inputs writes byte-identical files and DVC need not rerun what
    depends on them). At the end ``model.pt`` (state dict of the selected epoch; ``best_name``) and
    optionally ``last_name`` (last epoch weights).
    Optionally, in its own folder: ``log`` gets the same rows in DVCLive's format for ``dvc exp show`` /
    ``dvc plots`` (``lus.train.live``; DVCLive writes in place, and a resumed run rebuilds the log).

Resume
    With ``resume=True`` (default) an existing checkpoint whose config and ``fingerprint`` match is
    continued from the next epoch; on the same hardware and thread count the final weights equal
    those of an uninterrupted run bit for bit (RNG states and sampler order are restored). A
    mismatching checkpoint is ignored with a warning; a finished one only rewrites the outputs.
    Under DVC declare ``checkpoint.pt`` with ``persist: true`` so it survives until the rerun, and
    pass ``resume=not checkpoint_finished(path)``: DVC reruns a finished stage only because a
    dependency changed, which the fingerprint may not capture (e.g. code).

Distributed (torchrun)
    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` are read from the environment; the process group is
    started (gloo on CPU, nccl on CUDA) and the model wrapped in ``DistributedDataParallel``. All ranks
    draw the same global batches and each takes ``batch[rank::world_size]`` (DistributedSampler-
    equivalent sharding; ``batch_size`` is the *global* batch and must be divisible by the world
    size; the incomplete last batch is always dropped). ``loss_fn`` receives the DDP wrapper; use
    :func:`unwrap` to reach model attributes. Only rank 0 writes files.

Device: ``device="auto"`` = CUDA (``cuda:<LOCAL_RANK>``) when present, else CPU. Seeding: the loop calls
``lus.runtime.seed_everything(seed + rank)`` at the start (so build the model before or after, both
are reproducible); thread count is the caller's business (``torch.set_num_threads``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from lus.io import write_csv, write_torch
from lus.runtime import seed_everything, torch_generator, worker_init_fn
from lus.train.distributed import (
    DistEnv, all_reduce_sum, barrier, device_for, dist_env, gather_objects, init_distributed,
)
from lus.train.live import EpochLog

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, Any]]"]
EvalFn = Callable[[nn.Module], Mapping[str, float]]
SampleFn = Callable[[int, torch.Generator], torch.Tensor]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "multistep", "cosine", "warmup_cosine")
SAMPLERS = ("balanced", "shuffle", "sequential")
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """Plain settings of :func:`fit` (a stage maps its params section onto these)."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0        # warmup_cosine: linear warm-up length in epochs
    warmup_start: float = 0.1         # warmup_cosine: lr factor at the first step
    final_lr_ratio: float = 0.0       # warmup_cosine: lr factor at the end of training
    ema_decay: float = 0.0            # 0 -> no weight averaging
    sampler: str = "shuffle"
    steps_per_epoch: int = 0          # 0 -> len(dataset) draws per epoch
    drop_last: bool = True
    grad_clip_norm: float = 0.0       # 0 -> no clipping
    select_metric: str = "score"
    select_mode: str = "max"
    patience: int = 0                 # 0 -> no early stopping
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    checkpoint_name: str = "checkpoint.pt"
    checkpoint_every: int = 1         # write checkpoint.pt every n epochs and at the end; 0 -> never
    curve_name: str = "curve.csv"
    best_name: str = "model.pt"
    last_name: str = ""               # "" -> last weights only inside the checkpoint

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer '{self.optimizer}' unknown; expected one of: {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler '{self.scheduler}' unknown; expected one of: {', '.join(SCHEDULERS)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler '{self.sampler}' unknown; expected one of: {', '.join(SAMPLERS)}")
        if self.select_mode not in ("max", "min"):
            raise ValueError("select_mode must be 'max' or 'min'")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0 (0 = no checkpoint)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must lie in [0, 1)")
        if self.warmup_epochs < 0 or not 0.0 < self.warmup_start <= 1.0 or self.final_lr_ratio < 0:
            raise ValueError("warmup_epochs must be >= 0, warmup_start in (0, 1], final_lr_ratio >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class FitResult:
    best_epoch: int                   # 1-based epoch whose weights were selected
    best_score: float | None          # value of select_metric there (None without evaluate_fn)
    epochs_run: int                   # completed epochs (< epochs after early stopping)
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    last_state: dict[str, torch.Tensor] = field(default_factory=dict)
    resumed_from: int = 0             # completed epochs found in the checkpoint (0 = fresh start)


# ----------------------------------------------------------------------------------------------- helpers
def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if hasattr(model, "module") and isinstance(
        model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a nested batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def class_balanced_weights(labels: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-item sampling weight N / n_class (N = items with a label >= 0); negative labels get 0."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    valid = y >= 0
    if not bool(valid.any()):
        raise ValueError("class-balanced sampling needs at least one item with a label >= 0")
    counts = torch.bincount(y[valid])
    w = torch.zeros(len(y), dtype=torch.double)
    w[valid] = valid.sum().double() / counts[y[valid]].double()
    return w


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch_generator((seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1))


def epoch_indices(n: int, epoch: int, config: TrainConfig, weights: torch.Tensor | None = None,
                  sample_fn: SampleFn | None = None) -> torch.Tensor:
    """Global item order of one (0-based) epoch; depends only on (seed, epoch)."""
    gen = _epoch_generator(config.seed, epoch)
    if sample_fn is not None:
        return torch.as_tensor(sample_fn(epoch, gen), dtype=torch.long)
    draws = config.steps_per_epoch * config.batch_size if config.steps_per_epoch else n
    if config.sampler == "balanced":
        if weights is None:
            raise ValueError("sampler 'balanced' needs labels")
        return torch.multinomial(weights, draws, replacement=True, generator=gen)
    reps = math.ceil(draws / n)
    if config.sampler == "shuffle":
        return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:draws]
    return torch.arange(n).repeat(reps)[:draws]


def split_batches(indices: torch.Tensor, batch_size: int, drop_last: bool, env: DistEnv) -> list[torch.Tensor]:
    """Cut the global order into batches and keep this rank's share of each."""
    n_full = len(indices) // batch_size
    batches = [indices[i * batch_size:(i + 1) * batch_size] for i in range(n_full)]
    if not drop_last and not env.distributed and len(indices) % batch_size:
        batches.append(indices[n_full * batch_size:])
    if env.distributed:
        batches = [b[env.rank::env.world_size] for b in batches]
    return batches


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, warmup_start: float = 0.1,
                         final_ratio: float = 0.0) -> float:
    """lr factor after ``step`` optimiser steps: linear warm-up, then half a cosine to ``final_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int = 1):
    """The lr schedule; ``warmup_cosine`` is stepped per batch (``steps_per_epoch`` batches), the others per epoch."""
    if config.scheduler == "warmup_cosine":
        total = max(1, config.epochs * steps_per_epoch)
        warm = int(round(config.warmup_epochs * steps_per_epoch))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: warmup_cosine_factor(
            k, total, warm, config.warmup_start, config.final_lr_ratio))
    if config.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors / plain tuples so the checkpoint loads with ``weights_only=True``."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
        "numpy_meta": [int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    pos, has_gauss, gauss = state["numpy_meta"]
    np.random.set_state(("MT19937", state["numpy_key"].numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class WeightEMA:
    """Exponential moving average of a module's floating-point state (parameters and BN buffers).

    Integer entries (``num_batches_tracked``) are copied. ``decay_at(k) = min(decay, (1 + k) / (10 + k))``.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.state = _clone_state(module)
        self._pairs: tuple[int, list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _tensors(self, module: nn.Module):
        """(averages, live floats, (average, live) integer pairs), built once per module: the live tensors
        share storage with the module's parameters and buffers, which training updates in place (also
        ``load_state_dict``), so the lists stay valid and the per-step ``state_dict()`` call is saved."""
        if self._pairs is None or self._pairs[0] != id(module):
            avgs, lives, ints = [], [], []
            for k, v in module.state_dict().items():
                if self.state[k].is_floating_point():
                    avgs.append(self.state[k])
                    lives.append(v.detach())
                else:
                    ints.append((self.state[k], v))
            self._pairs = (id(module), avgs, lives, ints)
        return self._pairs[1:]

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.decay_at(self.steps)
        avgs, lives, ints = self._tensors(module)
        for avg, live in ints:
            avg.copy_(live)
        # one fused call per op instead of two per tensor (~200 tensors): the same elementwise arithmetic,
        # so bit-identical to the per-tensor loop, at a fraction of its Python overhead per training step
        torch._foreach_mul_(avgs, d)
        torch._foreach_add_(avgs, lives, alpha=1.0 - d)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": torch.tensor(self.steps), "state": self.state}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.steps = int(saved["steps"])
        self.state = {k: v.detach().clone() for k, v in saved["state"].items()}
        self._pairs = None


def _evaluate_weights(model: nn.Module, state: Mapping[str, torch.Tensor] | None):
    """Context: ``model`` temporarily holds ``state`` (the EMA weights) and gets its own back afterwards."""
    import contextlib

    @contextlib.contextmanager
    def swap():
        if state is None:
            yield
            return
        own = _clone_state(model)
        model.load_state_dict(state)
        try:
            yield
        finally:
            model.load_state_dict(own)

    return swap()


def _to_float(v: Any) -> float:
    return float(v.detach().item()) if isinstance(v, torch.Tensor) else float(v)


def _better(score: float, best: float | None, mode: str) -> bool:
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return not math.isnan(score)
    return score > best if mode == "max" else score < best


def _save_torch(obj: Any, path: Path) -> None:
    write_torch(path, obj)  # byte-identical files for identical weights (DVC hashes stay stable)


def _write_curve(path: Path, history: list[dict[str, float]]) -> None:
    import pandas as pd

    write_csv(path, pd.DataFrame(history))


def _collate_loader(dataset: Any, batches: list[torch.Tensor], config: TrainConfig, epoch: int,
                    collate_fn: Callable | None) -> Iterable[Any]:
    if hasattr(dataset, "get_batch"):
        return (dataset.get_batch(b) for b in batches)
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.collate import default_collate

    return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=config.num_workers,
                      collate_fn=collate_fn or default_collate, worker_init_fn=worker_init_fn,
                      generator=_epoch_generator(config.seed + 1, epoch))


# ----------------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, dataset: Any, loss_fn: LossFn, out_dir: str | Path, config: TrainConfig, *,
        labels: Sequence[int] | np.ndarray | None = None, evaluate_fn: EvalFn | None = None,
        sample_fn: SampleFn | None = None, fingerprint: Mapping[str, Any] | None = None, resume: bool = True,
        make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        collate_fn: Callable | None = None, restore_best: bool = True,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        log: EpochLog | None = None, log_prefix: str = "") -> FitResult:
    """Train ``model`` on ``dataset`` with ``loss_fn``; see the module docstring for the contract.

    ``on_epoch_end(epoch, row)`` is called after the checkpoint of 1-based ``epoch`` is written (tests
    use it to simulate an interruption). ``log`` (rank 0; :class:`lus.train.live.EpochLog`) receives
    every history row, names prefixed by ``log_prefix``; the epochs of a resumed checkpoint are logged
    first. Returns a :class:`FitResult`; with ``restore_best`` the model holds the selected weights afterwards.
    """
    env = dist_env()
    device = device_for(env, config.device)
    init_distributed(env, device)
    if env.distributed and config.batch_size % env.world_size:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by WORLD_SIZE {env.world_size}")
    seed_everything(config.seed + env.rank)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / config.checkpoint_name
    n = len(dataset)
    if n == 0:
        raise ValueError("fit: the training dataset is empty")
    weights = None
    if sample_fn is None and config.sampler == "balanced":
        if labels is None or len(labels) != n:
            raise ValueError("sampler 'balanced' needs one label per dataset item")
        weights = class_balanced_weights(labels)

    model.to(device)
    optimizer = make_optimizer(model.parameters()) if make_optimizer else build_optimizer(model.parameters(), config)
    draws = config.steps_per_epoch * config.batch_size if config.steps_per_epoch else n
    drop = config.drop_last or env.distributed
    batches_per_epoch = draws // config.batch_size + (0 if drop or draws % config.batch_size == 0 else 1)
    per_step = config.scheduler == "warmup_cosine"
    scheduler = build_scheduler(optimizer, config, max(1, batches_per_epoch))
    ema = WeightEMA(model, config.ema_decay) if config.ema_decay > 0 else None
    identity = json.dumps({"config": {k: v for k, v in config.to_dict().items()
                                      if k not in ("progress", "device", "num_workers", "checkpoint_every")},
                           "fingerprint": fingerprint or {}}, sort_keys=True, default=str)

    start_epoch, history, best_state, best_score, best_epoch, stopped = 0, [], None, None, 0, False
    resumed_from = 0
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("identity") != identity:
            warnings.warn(f"{ckpt_path}: checkpoint belongs to other settings or data; starting afresh", stacklevel=2)
        else:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            start_epoch = resumed_from = int(ckpt["epoch"])
            history = [dict(r) for r in ckpt["history"]]
            best_state = ckpt["best_model"]
            best_score = ckpt["best_score"]
            best_epoch = int(ckpt["best_epoch"])
            stopped = bool(ckpt["stopped"])
            rng = ckpt["rng"]
            if len(rng) == env.world_size:
                _set_rng_state(rng[env.rank])
            else:
                warnings.warn("checkpoint was written with another world size; RNG streams restart", stacklevel=2)

    log = log if env.is_main else None
    if log is not None:  # a resumed run logs the same rows as an uninterrupted one
        for past in history:
            log.log_epoch(past, log_prefix)

    train_model: nn.Module = model
    if env.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    from tqdm.auto import tqdm

    epoch = start_epoch
    while epoch < config.epochs and not stopped:
        t0 = time.perf_counter()
        batches = split_batches(epoch_indices(n, epoch, config, weights, sample_fn), config.batch_size,
                                config.drop_last or env.distributed, env)
        if not batches:
            raise ValueError(f"fit: {n} items give no batch of size {config.batch_size} (drop_last); "
                             "lower batch_size")
        train_model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not (config.progress and env.is_main), mininterval=1.0, file=sys.stderr)
        for batch in _collate_loader(dataset, batches, config, epoch, collate_fn):
            batch = to_device(batch, device)
            loss, logs = loss_fn(train_model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            if per_step:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            sums["loss"] = sums.get("loss", 0.0) + _to_float(loss)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + _to_float(v)
            n_batches += 1
            bar.update(1)
            if n_batches % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4f}")
        bar.close()
        if not per_step:
            scheduler.step()
        keys = sorted(sums)
        totals = all_reduce_sum([sums[k] for k in keys] + [float(n_batches)], device)
        row: dict[str, float] = {"epoch": epoch + 1, "lr": lr}
        row.update({f"train_{k}": totals[i] / max(totals[-1], 1.0) for i, k in enumerate(keys)})

        metrics: Mapping[str, float] | None = None
        if evaluate_fn is not None:
            if env.is_main:
                model.eval()
                with torch.no_grad(), _evaluate_weights(model, ema.state if ema is not None else None):
                    metrics = {k: _to_float(v) for k, v in evaluate_fn(model).items()}
                model.train()
            metrics = _broadcast(metrics)
            row.update({f"val_{k}": v for k, v in metrics.items()})
        if metrics is not None:
            if config.select_metric not in metrics:
                raise KeyError(f"evaluate_fn returned {sorted(metrics)}; select_metric "
                               f"'{config.select_metric}' is not among them")
            score = float(metrics[config.select_metric])
            improved = _better(score, best_score, config.select_mode)
        else:
            score, improved = None, True
        if improved:
            best_state = ({k: v.clone() for k, v in ema.state.items()} if ema is not None else _clone_state(model))
            best_score, best_epoch = score, epoch + 1
        epoch += 1
        seconds = time.perf_counter() - t0  # logged, not stored: identical reruns must write identical files
        history.append(row)
        if config.patience > 0 and metrics is not None and epoch - best_epoch >= config.patience:
            stopped = True

        every = config.checkpoint_every
        write_ckpt = every > 0 and (epoch % every == 0 or stopped or epoch >= config.epochs)
        rng_all = gather_objects(_rng_state()) if write_ckpt else None
        if env.is_main and write_ckpt:
            _save_torch({
                "format": CHECKPOINT_FORMAT, "identity": identity, "epoch": epoch, "stopped": stopped,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_model": best_state, "best_score": best_score,
                "best_epoch": best_epoch, "history": history, "rng": rng_all,
                **({"ema": ema.state_dict()} if ema is not None else {}),
            }, ckpt_path)
        if env.is_main:
            _write_curve(out_dir / config.curve_name, history)
            if log is not None:
                log.log_epoch(row, log_prefix)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",))
            print(f"epoch {epoch}/{config.epochs}: {shown}, time_s {seconds:.4g}", file=sys.stderr, flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    last_state = {k: v.clone() for k, v in ema.state.items()} if ema is not None else _clone_state(model)
    if best_state is None:  # resumed from a finished checkpoint without any epoch (cannot happen) - be safe
        best_state, best_epoch = last_state, epoch
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _save_torch(best_state, out_dir / config.best_name)
        if config.last_name:
            _save_torch(last_state, out_dir / config.last_name)
        if history:
            _write_curve(out_dir / config.curve_name, history)
    barrier()
    if restore_best:
        model.load_state_dict(best_state)
    return FitResult(best_epoch=best_epoch, best_score=best_score, epochs_run=epoch, history=history,
                     best_state=best_state, last_state=last_state, resumed_from=resumed_from)


def checkpoint_finished(path: str | Path) -> bool:
    """True if ``path`` holds a checkpoint of a run that completed (all epochs, or stopped early).

    Stages run by DVC use it to tell an *interrupted* run (resume) from a finished one that DVC wants
    redone because a dependency changed (start afresh).
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg = json.loads(ckpt["identity"])["config"]
        return bool(ckpt["stopped"]) or int(ckpt["epoch"]) >= int(cfg["epochs"])
    except Exception:  # unreadable / foreign file: not a resumable run
        return True


def _broadcast(obj: Any) -> Any:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
