"""Every YAML config shipped in configs/ validates (keys, types, registry names, loss hyperparameters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.config import load_config
from kdlab.validate import check_components

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    check_components(cfg)
