"""Shared fixtures: an isolated teacher-output cache and a tiny, fast run config on bundled digits."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path_factory.mktemp("teacher_cache")))


@pytest.fixture
def tiny_run() -> dict[str, Any]:
    """A run config dict on scikit-learn's digits: an MLP with dropout, 4 epochs, a few seconds."""
    return {
        "data": {"name": "digits", "val_size": 200, "seed": 0},
        "model": {"name": "mlp", "width": 32, "depth": 1, "dropout": 0.2},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"epochs": 4, "batch_size": 64, "seed": 3, "progress": False},
    }
