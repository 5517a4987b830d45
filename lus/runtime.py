"""Seeding, device choice and provenance shared by every stage.

One call of :func:`seed_everything` at the top of each stage seeds python, numpy and torch; the
DataLoader helpers below seed worker processes and samplers from it, so a rerun with the same seed
on the same hardware gives the same numbers. :func:`provenance` records the seed, library versions
and device next to each model.
"""

from __future__ import annotations

import os
import platform
import random
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def torch_generator(seed: int):
    import torch

    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: derive numpy/python seeds from torch's per-worker seed."""
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def resolve_device(name: str = "auto") -> "Any":
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was requested but CUDA is not available; use device: auto or cpu")
    return torch.device(name)


def _installed_version(*dists: str) -> str:
    """Version of the first installed distribution among ``dists``, read from its metadata.

    Why not ``module.__version__``: importing scikit-learn or torchvision only to read a version costs
    1-2 s per stage, which is most of a small stage's run time (e.g. ``train_aggregator``).
    """
    from importlib import metadata

    for name in dists:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def provenance(seed: int, device: Any | None = None) -> dict[str, Any]:
    """Seed, library versions and hardware, stored with every model and metrics file."""
    import torch

    import lus

    info: dict[str, Any] = {
        "seed": seed,
        "lus": lus.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _installed_version("torchvision"),
        "numpy": np.__version__,
        "pandas": _installed_version("pandas"),
        "scikit_learn": _installed_version("scikit-learn"),
        "opencv": _installed_version("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                                     "opencv-contrib-python-headless"),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        # processes of a torchrun/DDP run (1 = single process): results depend on it
        "world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
    }
    if device is not None:
        info["device"] = str(device)
        if getattr(device, "type", "") == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info
