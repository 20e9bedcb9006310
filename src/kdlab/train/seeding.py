"""Seeds, deterministic mode and RNG state capture for exact resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Global RNG state as tensors/ints only (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": torch.tensor(_python_state_ints(), dtype=torch.int64),
    }


def _python_state_ints() -> list[int]:
    version, internal, gauss = random.getstate()
    return [version, *internal]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    ints = [int(v) for v in state["python"].tolist()]
    random.setstate((ints[0], tuple(ints[1:]), None))
