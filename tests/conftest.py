"""Shared test fixtures. Tests run on CPU, offline, and never need ../shared/data (they skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# One torch thread: the test models are tiny, and several threads on a busy 2-core machine spin
# against each other (measured: 7x slower under load).
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """The project copied into a temporary git repo with `dvc repro` run once on presets/tiny.yaml.

    Shared by every test of the session that needs a finished pipeline: treat it as read-only (copy it
    with ``tests.helpers.copy_repo`` to change anything)."""
    from tests.helpers import make_tiny_repo, run_cmd

    repo = make_tiny_repo(tmp_path_factory.mktemp("proj"))
    run_cmd(["dvc", "repro"], repo)
    return repo
